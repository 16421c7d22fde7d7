import Crypto
package import Foundation
package import Logging
package import PortalCore
import ServiceLifecycle
package import Storage
import Synchronization

/// The deployment's signing keys: one Ed25519 and one ML-DSA-65 key, generated on first start and stored
/// sealed by the vault (so every instance signs with the same keys).
package struct LedgerKeys: Sendable {
    let ed25519: [UInt8]
    let mldsa65Seed: [UInt8]

    /// The two signers under the key name `name` (the ledger's origin).
    package func signers(name: String) throws(PortalError) -> [SignedNote.Signer] {
        [try .ed25519(name: name, privateKey: ed25519), try .mlDSA65(name: name, seed: mldsa65Seed)]
    }

    /// The two verifier keys under `name`.
    package func verifierKeys(name: String) throws(PortalError) -> [SignedNote.VerifierKey] {
        try signers(name: name).map(\.verifierKey)
    }

    /// The active key set, created (once, even with several instances starting together) when missing.
    package static func loadOrCreate(database: Database, sealer: any SecretSealer, ids: IdentifierGenerator, clock: any WallClock) async throws -> LedgerKeys {
        try await database.write { db in
            let store = LedgerStore(db)
            try await AdvisoryLock.signingKeys.take(in: db)
            if let row = try await store.signingKeys().first(where: \.active) {
                return try await open(row, sealer: sealer, db: db)
            }
            let ed = Curve25519.Signing.PrivateKey()
            var seed = [UInt8](repeating: 0, count: 32)
            var rng = SystemRandomNumberGenerator()
            for i in seed.indices { seed[i] = UInt8.random(in: 0...255, using: &rng) }
            let ml = try MLDSA65.PrivateKey(seedRepresentation: seed, publicKey: nil)
            let id = ids.next()
            let secret = try JSONEncoder().encode(["ed25519": ed.rawRepresentation.base64EncodedString(), "mldsa65Seed": Data(seed).base64EncodedString()])
            let sealed = try await sealer.seal(secret, organizationID: Organization.platformID, context: VaultContext.signingKey(id), in: db)
            try await store.insertSigningKey(SigningKeyRow(
                id: id, ed25519Public: Array(ed.publicKey.rawRepresentation), mldsa65Public: Array(ml.publicKey.rawRepresentation),
                sealedPrivate: sealed, active: true, createdAt: clock.now()
            ))
            return LedgerKeys(ed25519: Array(ed.rawRepresentation), mldsa65Seed: seed)
        }
    }

    private static func open(_ row: SigningKeyRow, sealer: any SecretSealer, db: Transaction) async throws -> LedgerKeys {
        let plaintext = try await sealer.open(row.sealedPrivate, organizationID: Organization.platformID, context: VaultContext.signingKey(row.id), in: db)
        guard let fields = try? JSONDecoder().decode([String: String].self, from: plaintext),
              let ed = fields["ed25519"].flatMap({ Data(base64Encoded: $0) }), let seed = fields["mldsa65Seed"].flatMap({ Data(base64Encoded: $0) })
        else {
            throw PortalError(.crypto, "the stored signing keys do not decode")
        }
        return LedgerKeys(ed25519: Array(ed), mldsa65Seed: Array(seed))
    }
}

/// Cuts signed checkpoints (DESIGN section 4.3): every second for ledgers with new entries, and on demand;
/// one cutter per organization at a time; keeps the latest, published and cited ones and one per hour,
/// pruning the rest after 24 hours; optionally publishes each to a directory.
package final class LedgerCheckpointer: Service {
    package struct Configuration: Sendable {
        /// `<host>[:port][/path]` of the public URL: origins are `<prefix>/ledger/<slug>`.
        package var originPrefix: String
        /// Where to publish checkpoints (`<dir>/<slug>/checkpoint`, `<dir>/<slug>/checkpoints/<size>`).
        package var publishDirectory: String?
        package var interval: Duration
        package var retention: TimeInterval

        package init(originPrefix: String, publishDirectory: String? = nil, interval: Duration = .seconds(1), retention: TimeInterval = 86_400) {
            self.originPrefix = originPrefix
            self.publishDirectory = publishDirectory
            self.interval = interval
            self.retention = retention
        }

        /// The origin prefix of a public URL: the URL without its scheme or trailing slash.
        package static func originPrefix(publicURL: String) -> String {
            var prefix = publicURL
            if let range = prefix.range(of: "://") { prefix = String(prefix[range.upperBound...]) }
            while prefix.hasSuffix("/") { prefix.removeLast() }
            return prefix.isEmpty ? "localhost" : prefix
        }
    }

    private let database: Database
    private let sealer: any SecretSealer
    private let clock: any WallClock
    private let ids: IdentifierGenerator
    private let logger: Logger
    package let configuration: Configuration
    private let keys = Mutex<LedgerKeys?>(nil)

    package init(database: Database, sealer: any SecretSealer, clock: any WallClock = SystemWallClock(), ids: IdentifierGenerator = .shared, logger: Logger, configuration: Configuration) {
        self.database = database
        self.sealer = sealer
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.configuration = configuration
    }

    /// The ledger origin (and key name) of an organization.
    package func origin(slug: String) -> String { "\(configuration.originPrefix)/ledger/\(slug)" }

    /// The signing keys, loaded (or created) on first use.
    package func signingKeys() async throws -> LedgerKeys {
        if let cached = keys.withLock({ $0 }) { return cached }
        let loaded = try await LedgerKeys.loadOrCreate(database: database, sealer: sealer, ids: ids, clock: clock)
        keys.withLock { $0 = loaded }
        return loaded
    }

    /// The verifier keys of an organization's ledger (Ed25519, then ML-DSA-65).
    package func verifierKeys(slug: String) async throws -> [SignedNote.VerifierKey] {
        try await signingKeys().verifierKeys(name: origin(slug: slug))
    }

    package func run() async throws {
        _ = try? await signingKeys()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cutAll()
            } catch {
                logger.error("checkpoint round failed", metadata: ["portal.error": "\(error)"])
            }
            try? await Task.sleep(for: configuration.interval)
        }
    }

    /// Cuts a checkpoint for every ledger that grew since its last one.
    package func cutAll() async throws {
        let ledgers = try await database.read { db in try await LedgerStore(db).ledgers() }
        for ledger in ledgers {
            _ = try await cut(organizationID: ledger.id, slug: ledger.slug)
        }
    }

    /// ``cut(organizationID:slug:)``, waiting (up to 5 s) while another instance holds the ledger's checkpoint
    /// lock; nil only when the ledger is empty.
    package func cutWaiting(organizationID: UUID, slug: String) async throws -> LedgerCheckpointRow? {
        for _ in 0..<50 {
            if let checkpoint = try await cut(organizationID: organizationID, slug: slug) { return checkpoint }
            guard try await database.read({ db in try await LedgerStore(db).head(organizationID)?.size ?? 0 }) > 0 else { return nil }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw PortalError(.unavailable, "another instance kept the ledger's checkpoint lock for 5 s")
    }

    /// Cuts a checkpoint of the ledger's current head (or returns the latest if the ledger has not grown);
    /// nil when the ledger is empty or another instance is cutting it right now.
    @discardableResult
    package func cut(organizationID: UUID, slug: String) async throws -> LedgerCheckpointRow? {
        let keys = try await signingKeys()
        let now = clock.now()
        let origin = origin(slug: slug)
        let published = configuration.publishDirectory != nil
        let retention = configuration.retention
        let result = try await database.write { db -> (LedgerCheckpointRow, Bool)? in
            let store = LedgerStore(db)
            guard try await store.tryCheckpointLock(organizationID), let head = try await store.head(organizationID) else { return nil }
            let latest = try await store.latestCheckpoint(organizationID)
            if let latest, latest.size >= head.size { return (latest, false) }
            let checkpoint = Checkpoint(origin: origin, size: head.size, root: head.root)
            let note = try SignedNote.sign(checkpoint.text, with: keys.signers(name: origin))
            // The first checkpoint of each hour is kept; with publishing on, every one is.
            let hourly = latest.map { Int($0.createdAt.timeIntervalSince1970 / 3600) != Int(now.timeIntervalSince1970 / 3600) } ?? true
            let row = LedgerCheckpointRow(
                size: head.size, root: head.root, note: note, createdAt: now,
                keepReason: published ? "published" : hourly ? "hourly" : nil
            )
            try await store.insertCheckpoint(organizationID, row)
            _ = try await store.pruneCheckpoints(organizationID, before: now - retention, newestSize: head.size)
            return (row, true)
        }
        guard let (row, isNew) = result else { return nil }
        if isNew, let directory = configuration.publishDirectory {
            try Self.publish(row, slug: slug, to: directory)
        }
        return row
    }

    /// Writes a checkpoint to `<dir>/<slug>/checkpoints/<size>` and as `<dir>/<slug>/checkpoint`.
    static func publish(_ row: LedgerCheckpointRow, slug: String, to directory: String) throws {
        let folder = URL(fileURLWithPath: directory).appendingPathComponent(slug)
        let history = folder.appendingPathComponent("checkpoints")
        try FileManager.default.createDirectory(at: history, withIntermediateDirectories: true)
        let data = Data(row.note.utf8)
        try data.write(to: history.appendingPathComponent(String(row.size)), options: .atomic)
        try data.write(to: folder.appendingPathComponent("checkpoint"), options: .atomic)
    }
}
