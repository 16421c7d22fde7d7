public import Crypto
public import Foundation
public import PortalCore
public import SQLKit
import Storage
public import Ledger
import Synchronization

/// Envelope encryption of secrets (DESIGN section 6): AES-256-GCM under a per-organization data key,
/// which is stored only wrapped (AES-256-GCM) by master keys.
///
/// A sealed value is a JSON object `{"v":1,"alg":"A256GCM","kid":"<data key id>","ct":"<base64>"}`,
/// where `ct` is nonce || ciphertext || tag. The associated data binds the ciphertext to its organization
/// and to the row it belongs to, so a ciphertext copied into another row or organization fails to open.
/// Unwrapped data keys are cached in memory; plaintext never reaches storage or logs.
public final class CredentialVault: SecretSealer {
    private let ring: MasterKeyRing
    private let clock: any WallClock
    private let ids: IdentifierGenerator
    private let cache = Mutex<[UUID: SymmetricKey]>([:])
    /// Purpose keys opened from `purpose_keys`, by label.
    private let purposeKeys = Mutex<[String: SymmetricKey]>([:])
    /// Each organization's newest data key as last read by ``learnNewestKey(organizationID:in:)``, and
    /// when: lets a hot path seal without a query (``sealWithKnownKey(_:organizationID:context:)``).
    private let newest = Mutex<[UUID: (id: UUID, key: SymmetricKey, at: Date)]>([:])
    /// How long a remembered newest key is used before storage is asked again.
    static let newestKeySeconds: TimeInterval = 60

    public init(ring: MasterKeyRing, clock: any WallClock = SystemWallClock(), ids: IdentifierGenerator = .shared) {
        self.ring = ring
        self.clock = clock
        self.ids = ids
    }

    /// A key for keyed hashes whose values may change with the master key (such as source addresses
    /// hashed within one minute), derived from the active master key and `label`, so it never leaves the
    /// process and differs per purpose. What must stay findable uses ``purposeKey(_:in:)``.
    public func derivedKey(_ label: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: ring.active.key, info: Data("portal.derived.\(label)".utf8), outputByteCount: 32)
    }

    /// A key for keyed hashes that must stay the same across master-key rotations (the subject lookup),
    /// stored sealed in `purpose_keys` under the platform's data key, which rotations re-wrap.
    ///
    /// Made on first use, in `db`, which must then be a write transaction. It starts as the key earlier
    /// releases derived from the active master key (``derivedKey(_:)``), so lookups computed before it was
    /// stored keep finding their rows; from then on it no longer depends on the master key.
    public func purposeKey(_ label: String, in db: any SQLDatabase) async throws -> SymmetricKey {
        if let cached = purposeKeys.withLock({ $0[label] }) { return cached }
        let store = PurposeKeyStore(db)
        let context = "purpose-key:\(label)"
        if try await store.find(label: label) == nil {
            let initial = derivedKey(label).withUnsafeBytes { Data($0) }
            let sealed = try await seal(initial, organizationID: Organization.platformID, context: context, in: db)
            try await store.insertIfAbsent(label: label, sealed: sealed, at: clock.now())
        }
        guard let envelope = try await store.find(label: label) else { throw PortalError(.storage, "the purpose key '\(label)' was not stored") }
        let key = SymmetricKey(data: try await open(envelope, organizationID: Organization.platformID, context: context, in: db))
        purposeKeys.withLock { $0[label] = key }
        return key
    }

    /// The id of the master key that wraps new data keys.
    public var activeMasterKeyID: String { ring.active.id }

    /// Encrypts `plaintext` for `organizationID` and the row named by `context`.
    ///
    /// Creates the organization's data key on first use, so `db` must be a write transaction then.
    public func seal(_ plaintext: Data, organizationID: UUID, context: String, in db: any SQLDatabase) async throws -> JSONValue {
        let (keyID, key) = try await dataKey(for: organizationID, in: db)
        do {
            let box = try AES.GCM.seal(plaintext, using: key, authenticating: Self.aad(organizationID, context))
            guard let combined = box.combined else { throw PortalError(.crypto, "cannot encrypt the value") }
            return [
                "v": 1, "alg": "A256GCM", "kid": .string(keyID.uuidString.lowercased()),
                "ct": .string(combined.base64EncodedString()),
            ]
        } catch let error as PortalError {
            throw error
        } catch {
            throw PortalError(.crypto, "cannot encrypt the value")
        }
    }

    /// Remembers the organization's newest data key for ``sealWithKnownKey(_:organizationID:context:)``.
    ///
    /// `db` must be a read transaction: it sees committed keys only, whereas a write transaction could
    /// show a key it created itself and may still roll back (values sealed under it would be lost).
    public func learnNewestKey(organizationID: UUID, in db: any SQLDatabase) async throws {
        guard let record = try await DataKeyStore(db).newest(organizationID: organizationID) else { return }
        let key = try cachedKey(record)
        let now = clock.now()
        newest.withLock { $0[organizationID] = (record.id, key, now) }
    }

    /// Encrypts `plaintext` with the organization's data key if ``learnNewestKey(organizationID:in:)`` read
    /// it within the last minute, without a query; nil otherwise (then ``seal(_:organizationID:context:in:)``
    /// is needed). A key made newer meanwhile is picked up within that minute; values sealed under the
    /// previous one stay readable, as every data key is kept.
    public func sealWithKnownKey(_ plaintext: Data, organizationID: UUID, context: String) -> JSONValue? {
        let now = clock.now()
        guard let known = newest.withLock({ $0[organizationID] }), now.timeIntervalSince(known.at) < Self.newestKeySeconds, now >= known.at,
              let combined = try? AES.GCM.seal(plaintext, using: known.key, authenticating: Self.aad(organizationID, context)).combined
        else { return nil }
        return ["v": 1, "alg": "A256GCM", "kid": .string(known.id.uuidString.lowercased()), "ct": .string(combined.base64EncodedString())]
    }

    /// Encrypts several values for one organization with one data-key lookup (the webhook receiver seals a
    /// batch of raw bodies in the sequencer's transaction).
    public func seal(_ items: [(plaintext: Data, context: String)], organizationID: UUID, in db: any SQLDatabase) async throws -> [JSONValue] {
        guard !items.isEmpty else { return [] }
        let (keyID, key) = try await dataKey(for: organizationID, in: db)
        return try items.map { item in
            guard let combined = try? AES.GCM.seal(item.plaintext, using: key, authenticating: Self.aad(organizationID, item.context)).combined else {
                throw PortalError(.crypto, "cannot encrypt the value")
            }
            return ["v": 1, "alg": "A256GCM", "kid": .string(keyID.uuidString.lowercased()), "ct": .string(combined.base64EncodedString())]
        }
    }

    /// Decrypts a value sealed by ``seal(_:organizationID:context:in:)`` for the same organization and row.
    public func open(_ envelope: JSONValue, organizationID: UUID, context: String, in db: any SQLDatabase) async throws -> Data {
        guard case .object(let fields) = envelope,
              fields["v"] == 1, fields["alg"] == "A256GCM",
              let kid = fields["kid"]?.stringValue, let keyID = UUID(uuidString: kid),
              let ct = fields["ct"]?.stringValue, let combined = Data(base64Encoded: ct)
        else {
            throw PortalError(.crypto, "the stored secret is not a sealed envelope")
        }
        let key = try await unwrap(keyID: keyID, organizationID: organizationID, in: db)
        do {
            let box = try AES.GCM.SealedBox(combined: combined)
            return try AES.GCM.open(box, using: key, authenticating: Self.aad(organizationID, context))
        } catch {
            throw PortalError(.crypto, "the stored secret cannot be decrypted (tampered, or sealed for another row)")
        }
    }

    /// Wraps every data key under `newKey` as well, keeping the existing wraps so that running instances
    /// that only know the old master key keep reading. Returns the number of data keys re-wrapped.
    public func rewrapAll(under newKey: MasterKeyRing.Key, in db: any SQLDatabase) async throws -> Int {
        let store = DataKeyStore(db)
        var count = 0
        for id in try await store.allIDs() {
            guard let record = try await store.find(id: id) else { continue }
            let key = try unwrap(record)
            try await store.addWrap(
                dataKeyID: id, masterKeyID: newKey.id, wrapped: try Self.wrap(key, record: record, under: newKey),
                at: clock.now()
            )
            count += 1
        }
        return count
    }

    /// Deletes the wraps under master key `masterKeyID`, refusing if a data key would be left with no
    /// other wrap (it would become unreadable). Returns the number of wraps removed.
    public func retire(masterKeyID: String, in db: any SQLDatabase) async throws -> Int {
        let store = DataKeyStore(db)
        for id in try await store.allIDs() {
            guard let record = try await store.find(id: id) else { continue }
            if record.wraps.keys.allSatisfy({ $0 == masterKeyID }) {
                throw PortalError(
                    .conflict,
                    "data key \(id.uuidString.lowercased()) is wrapped only by master key \(masterKeyID): run 'portal keys rotate-master' first"
                )
            }
        }
        return try await store.deleteWraps(masterKeyID: masterKeyID)
    }

    // MARK: - Data keys

    private func dataKey(for organizationID: UUID, in db: any SQLDatabase) async throws -> (UUID, SymmetricKey) {
        let store = DataKeyStore(db)
        if let record = try await store.newest(organizationID: organizationID) {
            return (record.id, try cachedKey(record))
        }
        let key = SymmetricKey(size: .bits256)
        var record = DataKeyRecord(id: ids.next(), organizationID: organizationID, createdAt: clock.now(), wraps: [:])
        record.wraps[ring.active.id] = try Self.wrap(key, record: record, under: ring.active)
        try await store.insert(record)
        // Cached only after the insert succeeded; a rolled-back transaction at worst leaves an unused key
        // in memory, never a ciphertext under a key that was not stored.
        cache.withLock { $0[record.id] = key }
        return (record.id, key)
    }

    /// A stored data key, unwrapped once and then kept in memory.
    private func cachedKey(_ record: DataKeyRecord) throws -> SymmetricKey {
        if let cached = cache.withLock({ $0[record.id] }) { return cached }
        let key = try unwrap(record)
        cache.withLock { $0[record.id] = key }
        return key
    }

    private func unwrap(keyID: UUID, organizationID: UUID, in db: any SQLDatabase) async throws -> SymmetricKey {
        if let cached = cache.withLock({ $0[keyID] }) { return cached }
        guard let record = try await DataKeyStore(db).find(id: keyID), record.organizationID == organizationID else {
            throw PortalError(.crypto, "the data key of a stored secret is missing")
        }
        let key = try unwrap(record)
        cache.withLock { $0[keyID] = key }
        return key
    }

    private func unwrap(_ record: DataKeyRecord) throws(PortalError) -> SymmetricKey {
        // Every configured master key with a wrap is tried: one wrap that does not open (a key file whose
        // ids were reused, a damaged row) must not hide another that does.
        var failed: [String] = []
        for master in ring.keys {
            guard let wrapped = record.wraps[master.id], let combined = Data(base64Encoded: wrapped) else { continue }
            do {
                let box = try AES.GCM.SealedBox(combined: combined)
                let raw = try AES.GCM.open(box, using: master.key, authenticating: Self.wrapAAD(record))
                return SymmetricKey(data: raw)
            } catch {
                failed.append(master.id)
            }
        }
        if !failed.isEmpty {
            throw PortalError(.crypto, "the wraps of data key \(record.id.uuidString.lowercased()) under master keys \(failed.joined(separator: ", ")) do not open")
        }
        throw PortalError(
            .crypto,
            "no configured master key unwraps data key \(record.id.uuidString.lowercased()) (wrapped by \(record.wraps.keys.sorted().joined(separator: ", ")))"
        )
    }

    private static func wrap(_ key: SymmetricKey, record: DataKeyRecord, under master: MasterKeyRing.Key) throws(PortalError) -> String {
        do {
            let raw = key.withUnsafeBytes { Data($0) }
            let box = try AES.GCM.seal(raw, using: master.key, authenticating: wrapAAD(record))
            guard let combined = box.combined else { throw PortalError(.crypto, "cannot wrap a data key") }
            return combined.base64EncodedString()
        } catch {
            throw PortalError(.crypto, "cannot wrap a data key")
        }
    }

    private static func wrapAAD(_ record: DataKeyRecord) -> Data {
        Data("portal.datakey.v1|\(record.id.uuidString.lowercased())|\(record.organizationID.uuidString.lowercased())".utf8)
    }

    private static func aad(_ organizationID: UUID, _ context: String) -> Data {
        Data("portal.secret.v1|\(organizationID.uuidString.lowercased())|\(context)".utf8)
    }
}
