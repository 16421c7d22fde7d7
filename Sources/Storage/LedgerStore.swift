package import Foundation
package import PortalCore
import NIOCore
import SQLKit

/// The stored head of one ledger: its size, Merkle root and last entry hash.
package struct LedgerHead: Sendable, Equatable {
    package var size: Int64
    package var root: [UInt8]
    package var lastHash: [UInt8]

    package init(size: Int64, root: [UInt8], lastHash: [UInt8]) {
        self.size = size
        self.root = root
        self.lastHash = lastHash
    }
}

/// One stored entry: its canonical bytes and hash.
package struct LedgerEntryRow: Sendable, Equatable {
    package var seq: Int64
    package var bytes: [UInt8]
    package var hash: [UInt8]

    package init(seq: Int64, bytes: [UInt8], hash: [UInt8]) {
        self.seq = seq
        self.bytes = bytes
        self.hash = hash
    }
}

/// One tile of the ledger's Merkle tree as stored: its level, index and concatenated hashes.
package struct LedgerTileRow: Sendable, Equatable {
    package var level: Int
    package var index: Int64
    package var hashes: [UInt8]

    package init(level: Int, index: Int64, hashes: [UInt8]) {
        self.level = level
        self.index = index
        self.hashes = hashes
    }
}

/// One stored signed checkpoint.
package struct LedgerCheckpointRow: Sendable, Equatable {
    package var size: Int64
    package var root: [UInt8]
    package var note: String
    package var createdAt: Date
    /// Why it is kept past the pruning horizon: `published`, `cited` or `hourly`; nil for ordinary ones.
    package var keepReason: String?

    package init(size: Int64, root: [UInt8], note: String, createdAt: Date, keepReason: String?) {
        self.size = size
        self.root = root
        self.note = note
        self.createdAt = createdAt
        self.keepReason = keepReason
    }
}

/// A queued audit event (transactional outbox).
package struct OutboxRow: Sendable {
    package var id: UUID
    package var organizationID: UUID
    package var event: JSONValue
}

/// A stored signing key set: public keys in the clear, private keys sealed by the vault.
package struct SigningKeyRow: Sendable {
    package var id: UUID
    package var ed25519Public: [UInt8]
    package var mldsa65Public: [UInt8]
    package var sealedPrivate: JSONValue
    package var active: Bool
    package var createdAt: Date

    package init(id: UUID, ed25519Public: [UInt8], mldsa65Public: [UInt8], sealedPrivate: JSONValue, active: Bool, createdAt: Date) {
        self.id = id
        self.ed25519Public = ed25519Public
        self.mldsa65Public = mldsa65Public
        self.sealedPrivate = sealedPrivate
        self.active = active
        self.createdAt = createdAt
    }
}

/// The ledger's tables: entries, tiles, heads, checkpoints, signing keys and the audit outbox.
package struct LedgerStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    // MARK: Heads

    package func head(_ org: UUID) async throws -> LedgerHead? {
        guard let row = try await db.raw("SELECT size, root, last_hash FROM ledger_heads WHERE organization_id = \(bind: org)").first() else {
            return nil
        }
        return LedgerHead(
            size: try row.decode(column: "size", as: Int64.self),
            root: Array(try row.decode(column: "root", as: Data.self)),
            lastHash: Array(try row.decode(column: "last_hash", as: Data.self))
        )
    }

    package func setHead(_ org: UUID, _ head: LedgerHead, at time: Date) async throws {
        try await db.raw("""
            INSERT INTO ledger_heads (organization_id, size, root, last_hash, updated_at)
            VALUES (\(bind: org), \(bind: head.size), \(bind: Data(head.root)), \(bind: Data(head.lastHash)), \(bind: time))
            ON CONFLICT (organization_id) DO UPDATE
            SET size = excluded.size, root = excluded.root, last_hash = excluded.last_hash, updated_at = excluded.updated_at
            """).run()
    }

    /// Appends a batch computed on the ledger as of `expected`: takes the ledger's lock, and only if the
    /// stored head is still `expected` writes the entries, the changed tiles and the new head; returns
    /// false, having written nothing, when another appender moved the head first (the lock stays held for
    /// the rest of the transaction, so the caller can reload the edge and call again).
    ///
    /// On PostgreSQL it is one round trip, a call of `portal_ledger_append` (migration 15) with the rows as
    /// arrays, instead of the lock, head read, entry inserts, tile upserts and head update one after
    /// another (the sequencer's cycle, issue 19). On SQLite, whose writer lock already serializes
    /// appenders and whose statements cost no round trip, the same steps run as statements.
    package func append(
        _ org: UUID, expected: LedgerHead, entries: [LedgerEntryRow], tiles: [LedgerTileRow], head: LedgerHead, at time: Date
    ) async throws -> Bool {
        switch db.backend {
        case .postgres:
            guard let (lockClass, lockText) = AdvisoryLock.ledger(org).pair else { return false }
            let row = try await db.raw("""
                SELECT portal_ledger_append(
                  \(bind: org), \(bind: lockClass), \(bind: lockText), \(bind: expected.size), \(bind: ByteBuffer(bytes: expected.lastHash)),
                  \(bind: entries.map(\.seq)), \(bind: entries.map { ByteBuffer(bytes: $0.bytes) }), \(bind: entries.map { ByteBuffer(bytes: $0.hash) }),
                  \(bind: tiles.map { Int32($0.level) }), \(bind: tiles.map(\.index)), \(bind: tiles.map { ByteBuffer(bytes: $0.hashes) }),
                  \(bind: head.size), \(bind: ByteBuffer(bytes: head.root)), \(bind: ByteBuffer(bytes: head.lastHash)), \(bind: time)
                ) AS appended
                """).first()
            return try row?.decode(column: "appended", as: Bool.self) ?? false
        case .sqlite:
            guard try await self.head(org) == expected else { return false }
            try await write(org, entries: entries, tiles: tiles, head: head, at: time)
            return true
        }
    }

    /// Writes a batch's entries, changed tiles and new head, unconditionally: for an appender holding the
    /// ledger's lock that has just read the head (or found none).
    package func write(_ org: UUID, entries: [LedgerEntryRow], tiles: [LedgerTileRow], head: LedgerHead, at time: Date) async throws {
        try await insertEntries(org, entries)
        for tile in tiles { try await putTile(org, level: tile.level, index: tile.index, hashes: tile.hashes) }
        try await setHead(org, head, at: time)
    }

    /// Organizations that have a ledger, with their slugs.
    package func ledgers() async throws -> [(id: UUID, slug: String)] {
        try await db.raw("""
            SELECT o.id, o.slug FROM organizations o JOIN ledger_heads h ON h.organization_id = o.id ORDER BY o.id
            """).all().map { (try $0.decode(column: "id", as: UUID.self), try $0.decode(column: "slug", as: String.self)) }
    }

    // MARK: Entries

    package func insertEntry(_ org: UUID, _ entry: LedgerEntryRow) async throws {
        try await db.raw("""
            INSERT INTO ledger_entries (organization_id, seq, entry, hash)
            VALUES (\(bind: org), \(bind: entry.seq), \(bind: Data(entry.bytes)), \(bind: Data(entry.hash)))
            """).run()
    }

    /// Inserts entries with multi-row statements: one round trip per 128 entries rather than per entry,
    /// which is most of the sequencer's cost per entry (the profile in docs/performance.md).
    package func insertEntries(_ org: UUID, _ entries: [LedgerEntryRow]) async throws {
        for start in stride(from: 0, to: entries.count, by: 128) {
            let values = entries[start..<min(start + 128, entries.count)].map { entry -> SQLQueryString in
                "(\(bind: org), \(bind: entry.seq), \(bind: Data(entry.bytes)), \(bind: Data(entry.hash)))"
            }
            try await db.raw("INSERT INTO ledger_entries (organization_id, seq, entry, hash) VALUES " + values.joined(separator: ", ")).run()
        }
    }

    /// Entries with `seq >= from`, in order, at most `limit`.
    package func entries(_ org: UUID, from: Int64, limit: Int) async throws -> [LedgerEntryRow] {
        try await db.raw("""
            SELECT seq, entry, hash FROM ledger_entries WHERE organization_id = \(bind: org) AND seq >= \(bind: from)
            ORDER BY seq LIMIT \(bind: limit)
            """).all().map {
            LedgerEntryRow(
                seq: try $0.decode(column: "seq", as: Int64.self),
                bytes: Array(try $0.decode(column: "entry", as: Data.self)),
                hash: Array(try $0.decode(column: "hash", as: Data.self))
            )
        }
    }

    // MARK: Tiles

    /// The stored hashes of tile (level, index), concatenated; nil if it does not exist.
    package func tile(_ org: UUID, level: Int, index: Int64) async throws -> [UInt8]? {
        try await db.raw("""
            SELECT hashes FROM ledger_tiles WHERE organization_id = \(bind: org) AND level = \(bind: level) AND idx = \(bind: index)
            """).first().map { Array(try $0.decode(column: "hashes", as: Data.self)) }
    }

    package func putTile(_ org: UUID, level: Int, index: Int64, hashes: [UInt8]) async throws {
        try await db.raw("""
            INSERT INTO ledger_tiles (organization_id, level, idx, hashes)
            VALUES (\(bind: org), \(bind: level), \(bind: index), \(bind: Data(hashes)))
            ON CONFLICT (organization_id, level, idx) DO UPDATE SET hashes = excluded.hashes
            """).run()
    }

    // MARK: Checkpoints

    package func insertCheckpoint(_ org: UUID, _ checkpoint: LedgerCheckpointRow) async throws {
        try await db.raw("""
            INSERT INTO ledger_checkpoints (organization_id, size, root, note, created_at, keep_reason)
            VALUES (\(bind: org), \(bind: checkpoint.size), \(bind: Data(checkpoint.root)), \(bind: checkpoint.note),
                    \(bind: checkpoint.createdAt), \(bind: checkpoint.keepReason))
            """).run()
    }

    /// The newest checkpoint, if any.
    package func latestCheckpoint(_ org: UUID) async throws -> LedgerCheckpointRow? {
        try await checkpoints(org, newestFirst: true, limit: 1).first
    }

    /// Stored checkpoints, oldest (or newest) first.
    package func checkpoints(_ org: UUID, newestFirst: Bool = false, limit: Int = 1_000_000) async throws -> [LedgerCheckpointRow] {
        try await db.raw("""
            SELECT size, root, note, created_at, keep_reason FROM ledger_checkpoints WHERE organization_id = \(bind: org)
            ORDER BY size \(unsafeRaw: newestFirst ? "DESC" : "ASC") LIMIT \(bind: limit)
            """).all().map {
            LedgerCheckpointRow(
                size: try $0.decode(column: "size", as: Int64.self),
                root: Array(try $0.decode(column: "root", as: Data.self)),
                note: try $0.decode(column: "note", as: String.self),
                createdAt: try $0.decode(column: "created_at", as: Date.self),
                keepReason: try $0.decodeOptional(column: "keep_reason", as: String.self)
            )
        }
    }

    /// Marks a checkpoint as kept (published, cited by an export, or the hour's).
    package func keepCheckpoint(_ org: UUID, size: Int64, reason: String) async throws {
        try await db.raw("""
            UPDATE ledger_checkpoints SET keep_reason = \(bind: reason)
            WHERE organization_id = \(bind: org) AND size = \(bind: size) AND keep_reason IS NULL
            """).run()
    }

    /// Deletes checkpoints created before `cutoff` that are not kept and not the newest; returns how many.
    package func pruneCheckpoints(_ org: UUID, before cutoff: Date, newestSize: Int64) async throws -> Int {
        try await db.raw("""
            DELETE FROM ledger_checkpoints
            WHERE organization_id = \(bind: org) AND created_at < \(bind: cutoff) AND keep_reason IS NULL AND size <> \(bind: newestSize)
            RETURNING size
            """).all().count
    }

    // MARK: Outbox

    package func enqueue(id: UUID, organizationID: UUID, event: JSONValue, at time: Date) async throws {
        try await db.raw("""
            INSERT INTO audit_outbox (id, organization_id, event, created_at)
            VALUES (\(bind: id), \(bind: organizationID), \(bind: db.jsonBind(event)), \(bind: time))
            """).run()
    }

    /// Queues several events with one statement.
    package func enqueue(_ rows: [(id: UUID, organizationID: UUID, event: JSONValue)], at time: Date) async throws {
        for start in stride(from: 0, to: rows.count, by: 128) {
            let values = rows[start..<min(start + 128, rows.count)].map { row -> SQLQueryString in
                "(\(bind: row.id), \(bind: row.organizationID), \(bind: db.jsonBind(row.event)), \(bind: time))"
            }
            try await db.raw("INSERT INTO audit_outbox (id, organization_id, event, created_at) VALUES " + values.joined(separator: ", ")).run()
        }
    }

    /// The oldest queued events, locked for this transaction on PostgreSQL (others skip them).
    package func takeOutbox(limit: Int) async throws -> [OutboxRow] {
        let lock = db.backend == .postgres ? " FOR UPDATE SKIP LOCKED" : ""
        let backend = db.backend
        return try await db.raw("""
            SELECT id, organization_id, event FROM audit_outbox ORDER BY id LIMIT \(bind: limit)\(unsafeRaw: lock)
            """).all().map {
            OutboxRow(
                id: try $0.decode(column: "id", as: UUID.self),
                organizationID: try $0.decode(column: "organization_id", as: UUID.self),
                event: try $0.decodeJSON(column: "event", backend: backend) ?? .null
            )
        }
    }

    package func deleteOutbox(_ ids: [UUID]) async throws {
        for chunk in stride(from: 0, to: ids.count, by: 200).map({ Array(ids[$0..<min($0 + 200, ids.count)]) }) {
            var query = SQLQueryString("DELETE FROM audit_outbox WHERE id IN (")
            for (i, id) in chunk.enumerated() { query = query + (i == 0 ? "\(bind: id)" : ", \(bind: id)") }
            try await db.raw(query + ")").run()
        }
    }

    // MARK: Signing keys

    package func insertSigningKey(_ key: SigningKeyRow) async throws {
        try await db.raw("""
            INSERT INTO signing_keys (id, ed25519_public, mldsa65_public, sealed_private, active, created_at)
            VALUES (\(bind: key.id), \(bind: Data(key.ed25519Public)), \(bind: Data(key.mldsa65Public)),
                    \(bind: db.jsonBind(key.sealedPrivate)), \(bind: key.active), \(bind: key.createdAt))
            """).run()
    }

    /// Every signing key set, newest first.
    package func signingKeys() async throws -> [SigningKeyRow] {
        let backend = db.backend
        return try await db.raw("""
            SELECT id, ed25519_public, mldsa65_public, sealed_private, active, created_at FROM signing_keys ORDER BY id DESC
            """).all().map {
            SigningKeyRow(
                id: try $0.decode(column: "id", as: UUID.self),
                ed25519Public: Array(try $0.decode(column: "ed25519_public", as: Data.self)),
                mldsa65Public: Array(try $0.decode(column: "mldsa65_public", as: Data.self)),
                sealedPrivate: try $0.decodeJSON(column: "sealed_private", backend: backend) ?? .null,
                active: try $0.decode(column: "active", as: Bool.self),
                createdAt: try $0.decode(column: "created_at", as: Date.self)
            )
        }
    }

    /// Takes the per-organization ledger lock for this transaction (PostgreSQL; SQLite's write lock
    /// already serializes writers).
    package func lock(_ org: UUID) async throws {
        try await AdvisoryLock.ledger(org).take(on: db)
    }

    /// Tries the per-organization checkpoint lock for this transaction; false if another instance holds it.
    package func tryCheckpointLock(_ org: UUID) async throws -> Bool {
        try await AdvisoryLock.checkpoint(org).tryTake(on: db)
    }
}
