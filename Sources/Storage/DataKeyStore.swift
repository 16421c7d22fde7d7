public import Foundation
public import SQLKit

/// A per-organization data key as stored: only ever wrapped, once per master key that can unwrap it.
public struct DataKeyRecord: Sendable, Equatable {
    public var id: UUID
    public var organizationID: UUID
    public var createdAt: Date
    /// Base64 AES-GCM sealed boxes of the key, by master key id.
    public var wraps: [String: String]

    public init(id: UUID, organizationID: UUID, createdAt: Date, wraps: [String: String]) {
        self.id = id
        self.organizationID = organizationID
        self.createdAt = createdAt
        self.wraps = wraps
    }
}

/// Data keys and their wraps under master keys (`data_keys`, `data_key_wraps`).
public struct DataKeyStore {
    private let db: any SQLDatabase

    public init(_ db: any SQLDatabase) { self.db = db }

    /// Inserts a data key with its wraps.
    public func insert(_ key: DataKeyRecord) async throws {
        try await db.raw("""
            INSERT INTO data_keys (id, organization_id, created_at)
            VALUES (\(bind: key.id), \(bind: key.organizationID), \(bind: key.createdAt))
            """).run()
        for (masterKeyID, wrapped) in key.wraps.sorted(by: { $0.key < $1.key }) {
            try await addWrap(dataKeyID: key.id, masterKeyID: masterKeyID, wrapped: wrapped, at: key.createdAt)
        }
    }

    /// Adds (or replaces) the wrap of a data key under one master key.
    public func addWrap(dataKeyID: UUID, masterKeyID: String, wrapped: String, at time: Date) async throws {
        try await db.raw("""
            DELETE FROM data_key_wraps WHERE data_key_id = \(bind: dataKeyID) AND master_key_id = \(bind: masterKeyID)
            """).run()
        try await db.raw("""
            INSERT INTO data_key_wraps (data_key_id, master_key_id, wrapped, created_at)
            VALUES (\(bind: dataKeyID), \(bind: masterKeyID), \(bind: wrapped), \(bind: time))
            """).run()
    }

    /// Removes every wrap under `masterKeyID`; returns how many were removed.
    public func deleteWraps(masterKeyID: String) async throws -> Int {
        try await db.raw("DELETE FROM data_key_wraps WHERE master_key_id = \(bind: masterKeyID) RETURNING data_key_id")
            .all().count
    }

    /// The newest data key of an organization, which encrypts new values.
    public func newest(organizationID: UUID) async throws -> DataKeyRecord? {
        let row = try await db.raw("""
            SELECT id FROM data_keys WHERE organization_id = \(bind: organizationID) ORDER BY id DESC LIMIT 1
            """).first()
        guard let row else { return nil }
        return try await find(id: try row.decode(column: "id", as: UUID.self))
    }

    /// The data key `id` with its wraps.
    public func find(id: UUID) async throws -> DataKeyRecord? {
        guard let keyRow = try await db.raw(
            "SELECT id, organization_id, created_at FROM data_keys WHERE id = \(bind: id)"
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
            wraps: wraps
        )
    }

    /// Every data key id, oldest first.
    public func allIDs() async throws -> [UUID] {
        try await db.raw("SELECT id FROM data_keys ORDER BY id").all().map { try $0.decode(column: "id", as: UUID.self) }
    }
}
