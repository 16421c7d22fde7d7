package import Crypto
package import Foundation
import Ledger
package import PortalCore
package import Storage

/// Records that describe a person are stored encrypted under that subject's own key (DESIGN 4.1), so that
/// erasing the subject (deleting its `subject_keys` row) leaves them unreadable.
///
/// A subject is found by `lookup`: HMAC-SHA256, under the vault's `subject-lookup` purpose key (stored
/// sealed, so a master-key rotation does not change it), of the organization
/// and the normalized subject id (trimmed, lowercased). A sealed value is stored as
/// `{"$subject": lookup, "$sealed": base64(nonce || AES-256-GCM(canonical JSON) || tag)}`, bound by its
/// associated data to the organization, integration, entity and record.
package struct SubjectSealing: Sendable {
    package let vault: CredentialVault

    package init(vault: CredentialVault) {
        self.vault = vault
    }

    /// The subject's lookup; `db` must be a write transaction the first time the process needs the key
    /// (on a database that has none yet, it is made then).
    package func lookup(organizationID: UUID, subjectID: String, in db: Transaction) async throws -> String {
        Self.lookup(organizationID: organizationID, subjectID: subjectID, key: try await vault.purposeKey("subject-lookup", in: db))
    }

    /// The lookup of `subjectID` under `key`.
    static func lookup(organizationID: UUID, subjectID: String, key: SymmetricKey) -> String {
        let normalized = subjectID.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        let message = Array("\(organizationID.uuidString.lowercased())\n\(normalized)".utf8)
        return Hex.encode(HMAC<SHA256>.authenticationCode(for: message, using: key))
    }

    package static func aad(organizationID: UUID, integrationID: UUID, entity: String, recordID: String) -> [UInt8] {
        Array("portal.subject-record|\(organizationID.uuidString.lowercased())|\(integrationID.uuidString.lowercased())|\(entity)|\(recordID)".utf8)
    }

    /// The subject a stored value is sealed for, if it is sealed.
    package static func subject(of stored: JSONValue?) -> String? {
        guard case .object(let m)? = stored, m.count == 2, let lookup = m["$subject"]?.stringValue, m["$sealed"] != nil else { return nil }
        return lookup
    }

    /// The subjects' keys, created for those that have none when `create` (a write transaction).
    package func keys(organizationID: UUID, lookups: Set<String>, create: Bool, in db: Transaction, at now: Date) async throws -> [String: SymmetricKey] {
        guard !lookups.isEmpty else { return [:] }
        let store = SubjectKeyStore(db)
        var rows = try await store.find(organizationID: organizationID, lookups: Array(lookups))
        let missing = lookups.subtracting(rows.keys)
        if create, !missing.isEmpty {
            let fresh = missing.sorted().map { lookup in (lookup, SymmetricKey(size: .bits256)) }
            let sealed = try await vault.seal(
                fresh.map { ($0.1.withUnsafeBytes { Data($0) }, VaultContext.subjectKey($0.0)) }, organizationID: organizationID, in: db
            )
            try await store.insert(zip(fresh, sealed).map { pair, sealedKey in
                var salt = [UInt8](repeating: 0, count: 32)
                for i in salt.indices { salt[i] = UInt8.random(in: 0...255) }
                return SubjectKeyRecord(organizationID: organizationID, lookup: pair.0, salt: salt, sealedKey: sealedKey, createdAt: now)
            })
            // Another transaction may have created some meanwhile: the stored rows are the keys.
            rows.merge(try await store.find(organizationID: organizationID, lookups: Array(missing))) { $1 }
        }
        var keys: [String: SymmetricKey] = [:]
        for (lookup, row) in rows {
            let raw = try await vault.open(row.sealedKey, organizationID: organizationID, context: VaultContext.subjectKey(lookup), in: db)
            keys[lookup] = SymmetricKey(data: raw)
        }
        return keys
    }

    package static func seal(_ value: JSONValue, lookup: String, key: SymmetricKey, aad: [UInt8]) throws -> JSONValue {
        let box = try AES.GCM.seal(Array(value.sortedText.utf8), using: key, authenticating: aad)
        guard let combined = box.combined else { throw PortalError(.crypto, "cannot encrypt a subject's record") }
        return ["$subject": .string(lookup), "$sealed": .string(combined.base64EncodedString())]
    }

    /// The plaintext of a stored value: itself when not sealed, `{"$erased": true}` when its subject's key is
    /// gone (erased) or it does not open.
    package static func open(_ stored: JSONValue, keys: [String: SymmetricKey], aad: [UInt8]) -> JSONValue {
        guard let lookup = subject(of: stored) else { return stored }
        guard let key = keys[lookup], let text = stored.objectValue?["$sealed"]?.stringValue, let combined = Data(base64Encoded: text),
              let box = try? AES.GCM.SealedBox(combined: combined), let plain = try? AES.GCM.open(box, using: key, authenticating: aad),
              let value = try? JSONValue.parse(plain)
        else { return ["$erased": true] }
        return value
    }

    /// The subject's ledger commitment (DESIGN 4.1): HMAC-SHA256 under the subject's random salt of the
    /// normalized subject id, hex. Unlinkable once the salt is erased.
    package static func commitment(salt: [UInt8], subjectID: String) -> String {
        let normalized = subjectID.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        return Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(normalized.utf8), using: SymmetricKey(data: salt)))
    }

    /// The commitments of the given subjects, creating their keys and salts when they have none (a write
    /// transaction); erased subjects get none (their lookups are suppressed).
    package func commitments(organizationID: UUID, subjectIDs: [String], in db: Transaction, at now: Date) async throws -> [String: String] {
        let key = try await vault.purposeKey("subject-lookup", in: db)
        let lookups = Dictionary(subjectIDs.map { (Self.lookup(organizationID: organizationID, subjectID: $0, key: key), $0) }, uniquingKeysWith: { a, _ in a })
        let erased = try await SubjectKeyStore(db).erased(organizationID: organizationID, lookups: Array(lookups.keys))
        let live = Set(lookups.keys).subtracting(erased)
        _ = try await keys(organizationID: organizationID, lookups: live, create: true, in: db, at: now)
        let rows = try await SubjectKeyStore(db).find(organizationID: organizationID, lookups: Array(live))
        var out: [String: String] = [:]
        for (lookup, row) in rows { if let subject = lookups[lookup] { out[subject] = Self.commitment(salt: row.salt, subjectID: subject) } }
        return out
    }
}
