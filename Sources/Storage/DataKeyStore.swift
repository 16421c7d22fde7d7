package import Foundation
import SQLKit

/// A per-organization data key as stored: only ever wrapped, once per master key that can unwrap it.
package struct DataKeyRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var createdAt: Date
    /// Base64 AES-GCM sealed boxes of the key, by master key id.
    package var wraps: [String: String]
    /// How many values were recorded as sealed under the key (`data_keys.sealed_count`); nil when unknown
    /// (keys made before the count was kept), which the vault treats as due for rotation.
    package var sealedCount: Int64?

    package init(id: UUID, organizationID: UUID, createdAt: Date, wraps: [String: String], sealedCount: Int64? = 0) {
        self.id = id
        self.organizationID = organizationID
        self.createdAt = createdAt
        self.wraps = wraps
        self.sealedCount = sealedCount
    }
}

/// Data keys and their wraps under master keys (`data_keys`, `data_key_wraps`).
package struct DataKeyStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// Inserts a data key with its wraps.
    package func insert(_ key: DataKeyRecord) async throws {
        try await db.raw("""
            INSERT INTO data_keys (id, organization_id, created_at, sealed_count)
            VALUES (\(bind: key.id), \(bind: key.organizationID), \(bind: key.createdAt), \(bind: key.sealedCount))
            """).run()
        for (masterKeyID, wrapped) in key.wraps.sorted(by: { $0.key < $1.key }) {
            try await addWrap(dataKeyID: key.id, masterKeyID: masterKeyID, wrapped: wrapped, at: key.createdAt)
        }
    }

    /// Adds (or replaces) the wrap of a data key under one master key.
    package func addWrap(dataKeyID: UUID, masterKeyID: String, wrapped: String, at time: Date) async throws {
        try await db.raw("""
            DELETE FROM data_key_wraps WHERE data_key_id = \(bind: dataKeyID) AND master_key_id = \(bind: masterKeyID)
            """).run()
        try await db.raw("""
            INSERT INTO data_key_wraps (data_key_id, master_key_id, wrapped, created_at)
            VALUES (\(bind: dataKeyID), \(bind: masterKeyID), \(bind: wrapped), \(bind: time))
            """).run()
    }

    /// Adds `count` to the seal count of data key `id`; false when nothing was added because the row is
    /// locked by another transaction (PostgreSQL, `SKIP LOCKED`: the caller keeps the count for a later
    /// call rather than wait, so concurrent sealers never queue or deadlock on the key's row) or is gone.
    /// A count that is unknown (NULL) stays unknown.
    package func addSeals(id: UUID, count: Int64) async throws -> Bool {
        let target = db.backend == .postgres
            ? "(SELECT id FROM data_keys WHERE id = \(bind: id) FOR UPDATE SKIP LOCKED)" as SQLQueryString
            : "\(bind: id)"
        return try await db.raw("""
            UPDATE data_keys SET sealed_count = sealed_count + \(bind: count) WHERE id = \(target) RETURNING id
            """).first() != nil
    }

    /// Whether data key `id` is stored (visible to this transaction).
    package func exists(id: UUID) async throws -> Bool {
        try await db.raw("SELECT id FROM data_keys WHERE id = \(bind: id)").first() != nil
    }

    /// Removes every wrap under `masterKeyID`; returns how many were removed.
    package func deleteWraps(masterKeyID: String) async throws -> Int {
        try await db.raw("DELETE FROM data_key_wraps WHERE master_key_id = \(bind: masterKeyID) RETURNING data_key_id")
            .all().count
    }

    /// The newest data key of an organization, which encrypts new values (older ones stay for reading).
    package func newest(organizationID: UUID) async throws -> DataKeyRecord? {
        let row = try await db.raw("""
            SELECT id FROM data_keys WHERE organization_id = \(bind: organizationID) ORDER BY id DESC LIMIT 1
            """).first()
        guard let row else { return nil }
        return try await find(id: try row.decode(column: "id", as: UUID.self))
    }

    /// The data key `id` with its wraps.
    package func find(id: UUID) async throws -> DataKeyRecord? {
        guard let keyRow = try await db.raw(
            "SELECT id, organization_id, created_at, sealed_count FROM data_keys WHERE id = \(bind: id)"
        ).first() else { return nil }
        let wrapRows = try await db.raw(
            "SELECT master_key_id, wrapped FROM data_key_wraps WHERE data_key_id = \(bind: id)"
        ).all()
        var wraps: [String: String] = [:]
        for row in wrapRows {
            wraps[try row.decode(column: "master_key_id", as: String.self)] = try row.decode(column: "wrapped", as: String.self)
        }
        return DataKeyRecord(
            id: try keyRow.decode(column: "id", as: UUID.self),
            organizationID: try keyRow.decode(column: "organization_id", as: UUID.self),
            createdAt: try keyRow.decode(column: "created_at", as: Date.self),
            wraps: wraps,
            sealedCount: try keyRow.decodeOptional(column: "sealed_count", as: Int64.self)
        )
    }

    /// Every data key id, oldest first.
    package func allIDs() async throws -> [UUID] {
        try await db.raw("SELECT id FROM data_keys ORDER BY id").all().map { try $0.decode(column: "id", as: UUID.self) }
    }
}
