package import Crypto
package import Foundation
package import PortalCore
package import Storage
import Ledger
import Synchronization

/// Envelope encryption of secrets (DESIGN section 6): AES-256-GCM under a per-organization data key,
/// which is stored only wrapped (AES-256-GCM) by master keys.
///
/// A sealed value is a JSON object `{"v":1,"alg":"A256GCM","kid":"<data key id>","ct":"<base64>"}`,
/// where `ct` is nonce || ciphertext || tag. The associated data binds the ciphertext to its organization
/// and to the row it belongs to, so a ciphertext copied into another row or organization fails to open.
/// Unwrapped data keys are cached in memory; plaintext never reaches storage or logs.
///
/// Data keys rotate (``DataKeyRotation``): an organization's newest key seals new values until it is too old
/// or has sealed too many, then a new key is made. Every key is kept, so values sealed under older keys
/// open as before and are sealed under the newest key when next written ("lazy re-wrapping"). Each key
/// counts its seals in `data_keys.sealed_count`, in the transaction that seals (or, for the query-free
/// path, with the next one).
package final class CredentialVault: SecretSealer {
    private let ring: MasterKeyRing
    private let clock: any WallClock
    private let ids: IdentifierGenerator
    private let rotation: DataKeyRotation
    private let cache = Mutex<[UUID: SymmetricKey]>([:])
    /// Purpose keys opened from `purpose_keys`, by label.
    private let purposeKeys = Mutex<[String: SymmetricKey]>([:])
    /// Newest keys learnt and seals not yet recorded in storage.
    private let usage = Mutex(Usage())
    /// How long a remembered newest key is used before storage is asked again.
    static let newestKeySeconds: TimeInterval = 60

    /// An organization's newest data key as last read by ``learnNewestKey(organizationID:in:)``.
    private struct KnownKey {
        var id: UUID
        var key: SymmetricKey
        var createdAt: Date
        /// When it was read.
        var at: Date
        /// Its seals as far as this process knows them at the read (nil: unknown), plus those made since.
        var sealed: Int64?
    }

    /// What this process knows of its data keys' use.
    private struct Usage {
        /// Each organization's newest data key, for ``sealWithKnownKey(_:organizationID:context:)``.
        var newest: [UUID: KnownKey] = [:]
        /// Seals made by this process that are not yet added to `data_keys.sealed_count`, by data key.
        var unrecorded: [UUID: (organizationID: UUID, count: Int64)] = [:]

        /// Counts `count` seals under `keyID`: unrecorded when `recorded` is false, and in the learnt newest
        /// key if it is that key (a learnt key that is not the one storage gave is stale and forgotten).
        mutating func sealed(_ count: Int64, keyID: UUID, organizationID: UUID, recorded: Bool) {
            if !recorded { unrecorded[keyID, default: (organizationID, 0)].count += count }
            if newest[organizationID]?.id == keyID {
                newest[organizationID]?.sealed? += count
            } else {
                newest[organizationID] = nil
            }
        }
    }

    /// A vault with the master keys of `ring`, rotating data keys as `rotation` says.
    package init(
        ring: MasterKeyRing, clock: any WallClock = SystemWallClock(), ids: IdentifierGenerator = .shared,
        rotation: DataKeyRotation = .standard
    ) {
        self.ring = ring
        self.clock = clock
        self.ids = ids
        self.rotation = rotation
    }

    /// A key for keyed hashes whose values may change with the master key (such as source addresses
    /// hashed within one minute), derived from the active master key and `label`, so it never leaves the
    /// process and differs per purpose. What must stay findable uses ``purposeKey(_:in:)``.
    package func derivedKey(_ label: String) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(inputKeyMaterial: ring.active.key, info: Data("portal.derived.\(label)".utf8), outputByteCount: 32)
    }

    /// A key for keyed hashes that must stay the same across master-key rotations (the subject lookup),
    /// stored sealed in `purpose_keys` under the platform's data key, which rotations re-wrap.
    ///
    /// Made on first use, in `db`, which must then be a write transaction. It starts as the key earlier
    /// releases derived from the active master key (``derivedKey(_:)``), so lookups computed before it was
    /// stored keep finding their rows; from then on it no longer depends on the master key.
    package func purposeKey(_ label: String, in db: Transaction) async throws -> SymmetricKey {
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
    package var activeMasterKeyID: String { ring.active.id }

    /// Encrypts `plaintext` for `organizationID` and the row named by `context`, under the organization's
    /// newest data key (made first when there is none or the newest is due for rotation).
    ///
    /// `db` must be a write transaction: the seal is counted there, and a data key may be made.
    package func seal(_ plaintext: Data, organizationID: UUID, context: String, in db: Transaction) async throws -> JSONValue {
        try await seal([(plaintext, context)], organizationID: organizationID, in: db)[0]
    }

    /// Remembers the organization's newest data key for ``sealWithKnownKey(_:organizationID:context:)``.
    ///
    /// `db` must be a read transaction: it sees committed keys only, whereas a write transaction could
    /// show a key it created itself and may still roll back (values sealed under it would be lost).
    package func learnNewestKey(organizationID: UUID, in db: Transaction) async throws {
        guard let record = try await DataKeyStore(db).newest(organizationID: organizationID) else { return }
        let key = try cachedKey(record)
        let now = clock.now()
        usage.withLock { usage in
            let unrecorded = usage.unrecorded[record.id]?.count ?? 0
            usage.newest[organizationID] = KnownKey(
                id: record.id, key: key, createdAt: record.createdAt, at: now, sealed: record.sealedCount.map { $0 + unrecorded }
            )
        }
    }

    /// Encrypts `plaintext` with the organization's data key if ``learnNewestKey(organizationID:in:)`` read
    /// it within the last minute, without a query; nil otherwise (then ``seal(_:organizationID:context:in:)``
    /// is needed). A key made newer meanwhile is picked up within that minute; values sealed under the
    /// previous one stay readable, as every data key is kept.
    ///
    /// Also nil when the key is due for rotation, or when this process has made
    /// ``DataKeyRotation/unrecordedLimit`` seals under it that storage does not count yet: the next
    /// ``seal(_:organizationID:in:)`` of the organization records them (or rotates the key).
    package func sealWithKnownKey(_ plaintext: Data, organizationID: UUID, context: String) -> JSONValue? {
        let now = clock.now()
        let rotation = rotation
        let known = usage.withLock { usage -> KnownKey? in
            guard let known = usage.newest[organizationID], now.timeIntervalSince(known.at) < Self.newestKeySeconds, now >= known.at,
                  rotation.allows(createdAt: known.createdAt, sealed: known.sealed, more: 1, at: now),
                  usage.unrecorded[known.id]?.count ?? 0 < rotation.unrecordedLimit
            else { return nil }
            // Counted before it is made: a seal that then fails is counted, never one that is made uncounted.
            usage.sealed(1, keyID: known.id, organizationID: organizationID, recorded: false)
            return known
        }
        guard let known, let combined = try? AES.GCM.seal(plaintext, using: known.key, authenticating: Self.aad(organizationID, context)).combined else {
            return nil
        }
        return ["v": 1, "alg": "A256GCM", "kid": .string(known.id.uuidString.lowercased()), "ct": .string(combined.base64EncodedString())]
    }

    /// Encrypts several values for one organization with one data-key lookup (the webhook receiver seals a
    /// batch of raw bodies in the sequencer's transaction), under the newest data key, made first when
    /// there is none or the newest is due for rotation.
    ///
    /// `db` must be a write transaction: the seals are counted there (with this process's seals of the
    /// organization not yet recorded), and a data key may be made.
    package func seal(_ items: [(plaintext: Data, context: String)], organizationID: UUID, in db: Transaction) async throws -> [JSONValue] {
        guard !items.isEmpty else { return [] }
        let count = Int64(items.count)
        let (keyID, key) = try await dataKey(for: organizationID, sealing: count, in: db)
        let sealed = try items.map { item -> JSONValue in
            guard let combined = try? AES.GCM.seal(item.plaintext, using: key, authenticating: Self.aad(organizationID, item.context)).combined else {
                throw PortalError(.crypto, "cannot encrypt the value")
            }
            return ["v": 1, "alg": "A256GCM", "kid": .string(keyID.uuidString.lowercased()), "ct": .string(combined.base64EncodedString())]
        }
        let recorded = try await DataKeyStore(db).addSeals(id: keyID, count: count)
        usage.withLock { $0.sealed(count, keyID: keyID, organizationID: organizationID, recorded: recorded) }
        try await recordSeals(organizationID: organizationID, in: db)
        return sealed
    }

    /// Adds this process's unrecorded seals under the organization's data keys to their stored counts, in
    /// `db` (a write transaction). A key whose row another transaction holds keeps its count for next time.
    private func recordSeals(organizationID: UUID, in db: Transaction) async throws {
        let pending = usage.withLock { usage -> [(id: UUID, count: Int64)] in
            let ids = usage.unrecorded.filter { $0.value.organizationID == organizationID }.map(\.key).sorted { $0.uuidString < $1.uuidString }
            return ids.compactMap { id in usage.unrecorded.removeValue(forKey: id).map { (id, $0.count) } }
        }
        let store = DataKeyStore(db)
        var index = 0
        defer {
            // What was not recorded (a locked row, or an error) stays counted in memory.
            let rest = pending[index...]
            if !rest.isEmpty {
                usage.withLock { usage in
                    for item in rest { usage.unrecorded[item.id, default: (organizationID, 0)].count += item.count }
                }
            }
        }
        while index < pending.count {
            let item = pending[index]
            // Recorded, or a key that is not stored (nothing to count it in); otherwise kept for next time.
            var done = try await store.addSeals(id: item.id, count: item.count)
            if !done { done = !(try await store.exists(id: item.id)) }
            index += 1
            if !done { usage.withLock { $0.unrecorded[item.id, default: (organizationID, 0)].count += item.count } }
        }
    }

    /// Decrypts a value sealed by ``seal(_:organizationID:context:in:)`` for the same organization and row.
    package func open(_ envelope: JSONValue, organizationID: UUID, context: String, in db: Transaction) async throws -> Data {
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
    package func rewrapAll(under newKey: MasterKeyRing.Key, in db: Transaction) async throws -> Int {
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
    package func retire(masterKeyID: String, in db: Transaction) async throws -> Int {
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

    /// The organization's newest data key if it may seal `count` more values now; else a new one, stored
    /// in `db` (a write transaction). A due key is kept for reading.
    private func dataKey(for organizationID: UUID, sealing count: Int64, in db: Transaction) async throws -> (UUID, SymmetricKey) {
        let store = DataKeyStore(db)
        let now = clock.now()
        if let record = try await store.newest(organizationID: organizationID) {
            let unrecorded = usage.withLock { $0.unrecorded[record.id]?.count ?? 0 }
            if rotation.allows(createdAt: record.createdAt, sealed: record.sealedCount.map { $0 + unrecorded }, more: count, at: now) {
                return (record.id, try cachedKey(record))
            }
        }
        let key = SymmetricKey(size: .bits256)
        var record = DataKeyRecord(id: ids.next(), organizationID: organizationID, createdAt: now, wraps: [:], sealedCount: 0)
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

    private func unwrap(keyID: UUID, organizationID: UUID, in db: Transaction) async throws -> SymmetricKey {
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
