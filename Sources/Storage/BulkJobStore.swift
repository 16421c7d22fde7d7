package import Foundation
package import PortalCore
import SQLKit

/// One bulk operation on integrations and what it did to each (issue 21).
package struct BulkJobRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var action: String
    package var filter: JSONValue
    package var counts: JSONValue
    package var items: JSONValue
    package var requestedBy: String
    package var createdAt: Date
    package var completedAt: Date

    package init(
        id: UUID, organizationID: UUID, action: String, filter: JSONValue, counts: JSONValue, items: JSONValue, requestedBy: String, createdAt: Date, completedAt: Date
    ) {
        self.id = id
        self.organizationID = organizationID
        self.action = action
        self.filter = filter
        self.counts = counts
        self.items = items
        self.requestedBy = requestedBy
        self.createdAt = createdAt
        self.completedAt = completedAt
    }
}

/// The `bulk_jobs` table, scoped by organization; an organization keeps its latest 100 jobs. (The items are
/// stored inside an object: a JSON array bound as a document would reach PostgreSQL as an array type.)
package struct BulkJobStore {
    private let db: any SQLDatabase
    private static let columns = "id, organization_id, action, filter, counts, items, requested_by, created_at, completed_at"
    package static let kept = 100

    package init(_ transaction: Transaction) { db = transaction.sql }

    package func insert(_ r: BulkJobRecord) async throws {
        try await db.raw("""
            INSERT INTO bulk_jobs (\(unsafeRaw: Self.columns))
            VALUES (\(bind: r.id), \(bind: r.organizationID), \(bind: r.action), \(bind: db.jsonBind(r.filter)), \(bind: db.jsonBind(r.counts)),
                    \(bind: db.jsonBind(["list": r.items])), \(bind: r.requestedBy), \(bind: r.createdAt), \(bind: r.completedAt))
            """).run()
        try await db.raw("""
            DELETE FROM bulk_jobs WHERE organization_id = \(bind: r.organizationID) AND id NOT IN (
              SELECT id FROM bulk_jobs WHERE organization_id = \(bind: r.organizationID) ORDER BY id DESC LIMIT \(bind: Self.kept)
            )
            """).run()
    }

    package func find(id: UUID, organizationID: UUID) async throws -> BulkJobRecord? {
        let backend = db.backend
        return try await db.raw("SELECT \(unsafeRaw: Self.columns) FROM bulk_jobs WHERE id = \(bind: id) AND organization_id = \(bind: organizationID)")
            .first().map { try Self.decode($0, backend) }
    }

    /// The organization's jobs, newest first.
    package func list(organizationID: UUID, limit: Int) async throws -> [BulkJobRecord] {
        let backend = db.backend
        return try await db.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM bulk_jobs WHERE organization_id = \(bind: organizationID) ORDER BY id DESC LIMIT \(bind: limit)
            """).all().map { try Self.decode($0, backend) }
    }

    private static func decode(_ row: any SQLRow, _ backend: Database.Dialect) throws -> BulkJobRecord {
        BulkJobRecord(
            id: try row.decode(column: "id", as: UUID.self), organizationID: try row.decode(column: "organization_id", as: UUID.self),
            action: try row.decode(column: "action", as: String.self), filter: try row.decodeJSON(column: "filter", backend: backend) ?? [:],
            counts: try row.decodeJSON(column: "counts", backend: backend) ?? [:], items: try row.decodeJSON(column: "items", backend: backend)?.objectValue?["list"] ?? [],
            requestedBy: try row.decode(column: "requested_by", as: String.self), createdAt: try row.decode(column: "created_at", as: Date.self),
            completedAt: try row.decode(column: "completed_at", as: Date.self)
        )
    }
}
