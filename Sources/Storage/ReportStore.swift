package import Foundation
import PortalCore
import SQLKit

/// A row of `reports`: an evidence bundle requested over the API, and its state.
package struct ReportRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var kind: String
    /// Inclusive dates, YYYY-MM-DD.
    package var periodFrom: String
    package var periodTo: String
    package var atSize: Int64?
    /// `pending`, `running`, `completed` or `failed`.
    package var status: String
    package var requestedBy: String
    package var error: String?
    package var checkpointSize: Int64?
    package var manifestDigest: String?
    package var bundleBytes: Int64?
    package var createdAt: Date
    package var completedAt: Date?

    package init(
        id: UUID, organizationID: UUID, kind: String, periodFrom: String, periodTo: String, atSize: Int64?, status: String, requestedBy: String,
        error: String? = nil, checkpointSize: Int64? = nil, manifestDigest: String? = nil, bundleBytes: Int64? = nil, createdAt: Date, completedAt: Date? = nil
    ) {
        self.id = id
        self.organizationID = organizationID
        self.kind = kind
        self.periodFrom = periodFrom
        self.periodTo = periodTo
        self.atSize = atSize
        self.status = status
        self.requestedBy = requestedBy
        self.error = error
        self.checkpointSize = checkpointSize
        self.manifestDigest = manifestDigest
        self.bundleBytes = bundleBytes
        self.createdAt = createdAt
        self.completedAt = completedAt
    }
}

/// `reports`: requests, a lease-based queue, and the finished bundles.
package struct ReportStore: Sendable {
    let db: any SQLDatabase
    static let columns = "id, organization_id, kind, period_from, period_to, at_size, status, requested_by, error, checkpoint_size, manifest_digest, bundle_bytes, created_at, completed_at"

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// How many of the organization's report builds are queued or running.
    package func countOpen(organizationID: UUID) async throws -> Int {
        try await db.raw("SELECT COUNT(*) AS n FROM reports WHERE organization_id = \(bind: organizationID) AND status IN ('pending', 'running')")
            .first()?.decode(column: "n", as: Int.self) ?? 0
    }

    package func insert(_ r: ReportRecord) async throws {
        try await db.raw("""
            INSERT INTO reports (id, organization_id, kind, period_from, period_to, at_size, status, requested_by, created_at)
            VALUES (\(bind: r.id), \(bind: r.organizationID), \(bind: r.kind), \(bind: r.periodFrom), \(bind: r.periodTo), \(bind: r.atSize), \(bind: r.status),
                    \(bind: r.requestedBy), \(bind: r.createdAt))
            """).run()
    }

    package func find(id: UUID, organizationID: UUID) async throws -> ReportRecord? {
        try await db.raw("SELECT \(unsafeRaw: Self.columns) FROM reports WHERE id = \(bind: id) AND organization_id = \(bind: organizationID)").first().map(Self.decode)
    }

    package func list(organizationID: UUID, limit: Int) async throws -> [ReportRecord] {
        try await db.raw("SELECT \(unsafeRaw: Self.columns) FROM reports WHERE organization_id = \(bind: organizationID) ORDER BY id DESC LIMIT \(bind: limit)").all().map(Self.decode)
    }

    /// The finished bundle's bytes.
    package func bundle(id: UUID, organizationID: UUID) async throws -> Data? {
        guard let row = try await db.raw("SELECT bundle FROM reports WHERE id = \(bind: id) AND organization_id = \(bind: organizationID) AND status = 'completed'").first(),
              !(try row.decodeNil(column: "bundle"))
        else { return nil }
        return try row.decode(column: "bundle", as: Data.self)
    }

    /// Claims the oldest pending report (or one whose lease expired) for `owner`.
    package func claim(owner: String, until: Date, now: Date) async throws -> ReportRecord? {
        guard let candidate = try await db.raw("""
            SELECT id FROM reports WHERE status = 'pending' OR (status = 'running' AND lease_until < \(bind: now)) ORDER BY created_at LIMIT 1
            """).first()?.decode(column: "id", as: UUID.self) else { return nil }
        return try await db.raw("""
            UPDATE reports SET status = 'running', lease_owner = \(bind: owner), lease_until = \(bind: until)
            WHERE id = \(bind: candidate) AND (status = 'pending' OR (status = 'running' AND lease_until < \(bind: now)))
            RETURNING \(unsafeRaw: Self.columns)
            """).first().map(Self.decode)
    }

    package func complete(id: UUID, owner: String, bundle: Data, checkpointSize: Int64, manifestDigest: String, at now: Date) async throws -> Bool {
        try await db.raw("""
            UPDATE reports SET status = 'completed', bundle = \(bind: bundle), bundle_bytes = \(bind: Int64(bundle.count)), checkpoint_size = \(bind: checkpointSize),
              manifest_digest = \(bind: manifestDigest), completed_at = \(bind: now), lease_owner = NULL, lease_until = NULL
            WHERE id = \(bind: id) AND lease_owner = \(bind: owner) RETURNING id
            """).first() != nil
    }

    package func fail(id: UUID, owner: String, error: String, at now: Date) async throws {
        try await db.raw("""
            UPDATE reports SET status = 'failed', error = \(bind: error), completed_at = \(bind: now), lease_owner = NULL, lease_until = NULL
            WHERE id = \(bind: id) AND lease_owner = \(bind: owner)
            """).run()
    }

    static func decode(_ row: any SQLRow) throws -> ReportRecord {
        ReportRecord(
            id: try row.decode(column: "id", as: UUID.self), organizationID: try row.decode(column: "organization_id", as: UUID.self),
            kind: try row.decode(column: "kind", as: String.self), periodFrom: try row.decode(column: "period_from", as: String.self),
            periodTo: try row.decode(column: "period_to", as: String.self), atSize: try row.decodeOptional(column: "at_size", as: Int64.self),
            status: try row.decode(column: "status", as: String.self), requestedBy: try row.decode(column: "requested_by", as: String.self),
            error: try row.decodeOptional(column: "error", as: String.self), checkpointSize: try row.decodeOptional(column: "checkpoint_size", as: Int64.self),
            manifestDigest: try row.decodeOptional(column: "manifest_digest", as: String.self), bundleBytes: try row.decodeOptional(column: "bundle_bytes", as: Int64.self),
            createdAt: try row.decode(column: "created_at", as: Date.self), completedAt: try row.decodeOptional(column: "completed_at", as: Date.self)
        )
    }
}
