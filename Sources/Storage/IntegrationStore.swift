package import Foundation
package import PortalCore
import SQLKit

/// An integration as stored. Credentials are only ever the vault's encrypted envelope.
package struct IntegrationRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    package var name: String
    package var type: IntegrationType
    package var baseURL: String?
    package var authMethod: AuthMethod
    /// The encrypted credential envelope (never plaintext).
    package var credentials: JSONValue
    package var config: JSONValue
    package var rateLimits: JSONValue?
    package var webhookConfig: JSONValue?
    package var syncConfig: JSONValue?
    /// GDPR Art. 30 processing metadata, as given (checked by the registry).
    package var processing: JSONValue?
    package var status: IntegrationStatus
    package var errorMessage: String?
    package var lastSync: Date?
    package var createdBy: UUID?
    package var createdAt: Date
    package var updatedAt: Date
    package var deletedAt: Date?
    /// The digest of the material configuration last approved (nil: never approved, or made before approvals).
    package var approvedDigest: String?
    /// The approved configuration served while a change to it waits for approval (``ServingConfiguration``).
    package var serving: JSONValue?

    package init(
        id: UUID, organizationID: UUID, name: String, type: IntegrationType, baseURL: String?, authMethod: AuthMethod,
        credentials: JSONValue, config: JSONValue, rateLimits: JSONValue?, webhookConfig: JSONValue?,
        syncConfig: JSONValue?, status: IntegrationStatus, errorMessage: String? = nil, lastSync: Date? = nil,
        createdBy: UUID?, createdAt: Date, updatedAt: Date, deletedAt: Date? = nil, processing: JSONValue? = nil,
        approvedDigest: String? = nil, serving: JSONValue? = nil
    ) {
        self.approvedDigest = approvedDigest
        self.serving = serving
        self.processing = processing
        self.id = id
        self.organizationID = organizationID
        self.name = name
        self.type = type
        self.baseURL = baseURL
        self.authMethod = authMethod
        self.credentials = credentials
        self.config = config
        self.rateLimits = rateLimits
        self.webhookConfig = webhookConfig
        self.syncConfig = syncConfig
        self.status = status
        self.errorMessage = errorMessage
        self.lastSync = lastSync
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.deletedAt = deletedAt
    }
}

/// Request statistics of one integration, from `integration_requests`.
package struct IntegrationRequestStats: Sendable, Equatable {
    package var totalRequests: Int
    package var successfulRequests: Int
    /// Mean duration in milliseconds; 0 when there were no requests.
    package var averageDurationMs: Double
    package var lastErrorAt: Date?
    package var lastErrorMessage: String?
    package var lastErrorEndpoint: String?

    package init(
        totalRequests: Int, successfulRequests: Int, averageDurationMs: Double,
        lastErrorAt: Date? = nil, lastErrorMessage: String? = nil, lastErrorEndpoint: String? = nil
    ) {
        self.totalRequests = totalRequests
        self.successfulRequests = successfulRequests
        self.averageDurationMs = averageDurationMs
        self.lastErrorAt = lastErrorAt
        self.lastErrorMessage = lastErrorMessage
        self.lastErrorEndpoint = lastErrorEndpoint
    }
}

/// Integrations, always scoped by organization: another organization's integration is simply not found.
package struct IntegrationStore {
    private let db: any SQLDatabase
    private static let columns = """
        id, organization_id, name, type, base_url, auth_method, credentials, config, rate_limits, webhook_config,
        sync_config, status, error_message, last_sync, created_by, created_at, updated_at, deleted_at, processing,
        approved_digest, serving
        """

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// Inserts a new integration; a live integration with the same name in the organization is a `conflict`.
    package func insert(_ r: IntegrationRecord) async throws {
        try await db.raw("""
            INSERT INTO integrations (\(unsafeRaw: Self.columns))
            VALUES (\(bind: r.id), \(bind: r.organizationID), \(bind: r.name), \(bind: r.type.rawValue), \(bind: r.baseURL),
                    \(bind: r.authMethod.rawValue), \(bind: db.jsonBind(r.credentials)), \(bind: db.jsonBind(r.config)),
                    \(bind: db.jsonBind(r.rateLimits)), \(bind: db.jsonBind(r.webhookConfig)), \(bind: db.jsonBind(r.syncConfig)),
                    \(bind: r.status.rawValue), \(bind: r.errorMessage), \(bind: r.lastSync), \(bind: r.createdBy),
                    \(bind: r.createdAt), \(bind: r.updatedAt), \(bind: r.deletedAt), \(bind: db.jsonBind(r.processing)),
                    \(bind: r.approvedDigest), \(bind: db.jsonBind(r.serving)))
            """).run()
    }

    /// How many of the organization's integrations are not deleted.
    package func countLive(organizationID: UUID) async throws -> Int {
        try await db.raw("SELECT COUNT(*) AS n FROM integrations WHERE organization_id = \(bind: organizationID) AND deleted_at IS NULL")
            .first()?.decode(column: "n", as: Int.self) ?? 0
    }

    /// Records that a sync of the integration completed at `time` (the seed's `lastSync`). Only syncs write
    /// it: ``update(_:)`` leaves it alone, so an edit made while a sync ran cannot put an older time back.
    /// Puts a live integration in the `error` status with its reason (its OAuth token could not be
    /// refreshed, for one); it makes no call until an administrator fixes and reactivates it.
    package func markFailed(id: UUID, organizationID: UUID, message: String, at time: Date) async throws {
        try await db.raw("""
            UPDATE integrations SET status = 'error', error_message = \(bind: message), updated_at = \(bind: time)
            WHERE id = \(bind: id) AND organization_id = \(bind: organizationID)
            """).run()
    }

    package func markSynced(id: UUID, organizationID: UUID, at time: Date) async throws {
        try await db.raw("""
            UPDATE integrations SET last_sync = \(bind: time) WHERE id = \(bind: id) AND organization_id = \(bind: organizationID)
            """).run()
    }

    /// Writes every mutable column of `r` but `last_sync` (matched by id and organization); returns false if it is not there.
    package func update(_ r: IntegrationRecord) async throws -> Bool {
        try await db.raw("""
            UPDATE integrations SET
              name = \(bind: r.name), type = \(bind: r.type.rawValue), base_url = \(bind: r.baseURL), auth_method = \(bind: r.authMethod.rawValue),
              credentials = \(bind: db.jsonBind(r.credentials)), config = \(bind: db.jsonBind(r.config)),
              rate_limits = \(bind: db.jsonBind(r.rateLimits)), webhook_config = \(bind: db.jsonBind(r.webhookConfig)),
              sync_config = \(bind: db.jsonBind(r.syncConfig)), status = \(bind: r.status.rawValue), error_message = \(bind: r.errorMessage),
              updated_at = \(bind: r.updatedAt), deleted_at = \(bind: r.deletedAt),
              processing = \(bind: db.jsonBind(r.processing)), approved_digest = \(bind: r.approvedDigest),
              serving = \(bind: db.jsonBind(r.serving))
            WHERE id = \(bind: r.id) AND organization_id = \(bind: r.organizationID)
            RETURNING id
            """).first() != nil
    }

    /// The integration `id` of `organizationID`, deleted ones included.
    package func find(id: UUID, organizationID: UUID) async throws -> IntegrationRecord? {
        let backend = db.backend
        return try await db.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM integrations WHERE id = \(bind: id) AND organization_id = \(bind: organizationID)
            """).first().map { try Self.decode($0, backend) }
    }

    /// Whether an integration with this id exists in an organization other than `organizationID`.
    package func existsElsewhere(id: UUID, organizationID: UUID) async throws -> Bool {
        try await db.raw("""
            SELECT id FROM integrations WHERE id = \(bind: id) AND organization_id <> \(bind: organizationID)
            """).first() != nil
    }

    /// Integrations of an organization, newest first, after the cursor id.
    package func list(
        organizationID: UUID, limit: Int, before cursor: UUID?, includeDeleted: Bool, type: IntegrationType? = nil, status: IntegrationStatus? = nil
    ) async throws -> [IntegrationRecord] {
        var query = SQLQueryString("SELECT \(unsafeRaw: Self.columns) FROM integrations WHERE organization_id = \(bind: organizationID)")
        if !includeDeleted { query = query + " AND deleted_at IS NULL" }
        if let type { query = query + " AND type = \(bind: type.rawValue)" }
        if let status { query = query + " AND status = \(bind: status.rawValue)" }
        if let cursor { query = query + " AND id < \(bind: cursor)" }
        query = query + " ORDER BY id DESC LIMIT \(bind: limit)"
        let backend = db.backend
        return try await db.raw(query).all().map { try Self.decode($0, backend) }
    }

    /// Every integration of the organization, by name: the one list that monitoring, alerting, the
    /// processing register and data-subject requests read.
    package func all(organizationID: UUID, includeDeleted: Bool) async throws -> [IntegrationRecord] {
        var query = SQLQueryString("SELECT \(unsafeRaw: Self.columns) FROM integrations WHERE organization_id = \(bind: organizationID)")
        if !includeDeleted { query = query + " AND deleted_at IS NULL" }
        let backend = db.backend
        return try await db.raw(query + " ORDER BY name, id").all().map { try Self.decode($0, backend) }
    }

    /// Request statistics for each of `ids` (absent ids had no requests).
    package func requestStats(organizationID: UUID, ids: [UUID]) async throws -> [UUID: IntegrationRequestStats] {
        guard !ids.isEmpty else { return [:] }
        var query = SQLQueryString("""
            SELECT integration_id, COUNT(*) AS total,
                   SUM(CASE WHEN response_status BETWEEN 200 AND 399 THEN 1 ELSE 0 END) AS ok,
                   CAST(AVG(duration_ms) AS DOUBLE PRECISION) AS avg_ms
            FROM integration_requests WHERE organization_id = \(bind: organizationID) AND integration_id IN (
            """)
        for (i, id) in ids.enumerated() { query = query + (i == 0 ? "\(bind: id)" : ", \(bind: id)") }
        query = query + ") GROUP BY integration_id"
        var stats: [UUID: IntegrationRequestStats] = [:]
        for row in try await db.raw(query).all() {
            let id = try row.decode(column: "integration_id", as: UUID.self)
            stats[id] = IntegrationRequestStats(
                totalRequests: try row.decode(column: "total", as: Int.self),
                successfulRequests: try row.decodeOptional(column: "ok", as: Int.self) ?? 0,
                averageDurationMs: try row.decodeOptional(column: "avg_ms", as: Double.self) ?? 0
            )
        }
        for id in stats.keys {
            let last = try await db.raw("""
                SELECT created_at, error_message, endpoint FROM integration_requests
                WHERE organization_id = \(bind: organizationID) AND integration_id = \(bind: id)
                  AND (response_status IS NULL OR response_status >= 400)
                ORDER BY id DESC LIMIT 1
                """).first()
            if let last {
                stats[id]?.lastErrorAt = try last.decode(column: "created_at", as: Date.self)
                stats[id]?.lastErrorMessage = try last.decodeOptional(column: "error_message", as: String.self)
                stats[id]?.lastErrorEndpoint = try last.decode(column: "endpoint", as: String.self)
            }
        }
        return stats
    }

    private static func decode(_ row: any SQLRow, _ backend: Database.Dialect) throws -> IntegrationRecord {
        IntegrationRecord(
            id: try row.decode(column: "id", as: UUID.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            name: try row.decode(column: "name", as: String.self),
            type: try row.decodeCase(column: "type", as: IntegrationType.self),
            baseURL: try row.decodeOptional(column: "base_url", as: String.self),
            authMethod: try row.decodeCase(column: "auth_method", as: AuthMethod.self),
            credentials: try row.decodeJSON(column: "credentials", backend: backend) ?? .null,
            config: try row.decodeJSON(column: "config", backend: backend) ?? [:],
            rateLimits: try row.decodeJSON(column: "rate_limits", backend: backend),
            webhookConfig: try row.decodeJSON(column: "webhook_config", backend: backend),
            syncConfig: try row.decodeJSON(column: "sync_config", backend: backend),
            status: try row.decodeCase(column: "status", as: IntegrationStatus.self),
            errorMessage: try row.decodeOptional(column: "error_message", as: String.self),
            lastSync: try row.decodeOptional(column: "last_sync", as: Date.self),
            createdBy: try row.decodeOptional(column: "created_by", as: UUID.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self),
            deletedAt: try row.decodeOptional(column: "deleted_at", as: Date.self),
            processing: try row.decodeJSON(column: "processing", backend: backend),
            approvedDigest: try row.decodeOptional(column: "approved_digest", as: String.self),
            serving: try row.decodeJSON(column: "serving", backend: backend)
        )
    }
}
