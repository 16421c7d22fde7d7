package import Foundation
import PortalCore
import SQLKit

/// How long an organization keeps what is not evidence (ledger entries are never deleted). Nil keeps for ever.
package struct RetentionPolicy: Sendable, Equatable, Codable {
    /// `integration_requests` rows (the request log), deleted after this many days.
    package var requestLogsDays: Int?
    /// Request and response bodies kept by `storeBodies`, cleared after this many days.
    package var storedBodiesDays: Int?
    /// Bodies of webhook events that were processed or dead-lettered, erased after this many days.
    package var webhookPayloadsDays: Int?

    package init(requestLogsDays: Int?, storedBodiesDays: Int?, webhookPayloadsDays: Int?) {
        self.requestLogsDays = requestLogsDays
        self.storedBodiesDays = storedBodiesDays
        self.webhookPayloadsDays = webhookPayloadsDays
    }

    /// What an organization without a policy of its own keeps: a year of request logs, 30 days of bodies.
    package static let defaults = RetentionPolicy(requestLogsDays: 365, storedBodiesDays: 30, webhookPayloadsDays: 30)
}

/// `retention_policies`, and the deletions retention makes.
package struct RetentionStore: Sendable {
    let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    package func policy(organizationID: UUID) async throws -> (policy: RetentionPolicy, updatedBy: String?, updatedAt: Date?) {
        guard let row = try await db.raw("SELECT * FROM retention_policies WHERE organization_id = \(bind: organizationID)").first() else {
            return (.defaults, nil, nil)
        }
        return (
            RetentionPolicy(
                requestLogsDays: try row.decodeOptional(column: "request_logs_days", as: Int.self),
                storedBodiesDays: try row.decodeOptional(column: "stored_bodies_days", as: Int.self),
                webhookPayloadsDays: try row.decodeOptional(column: "webhook_payloads_days", as: Int.self)
            ),
            try row.decode(column: "updated_by", as: String.self), try row.decode(column: "updated_at", as: Date.self)
        )
    }

    package func save(_ policy: RetentionPolicy, organizationID: UUID, by actor: String, at now: Date) async throws {
        try await db.raw("""
            INSERT INTO retention_policies (organization_id, request_logs_days, stored_bodies_days, webhook_payloads_days, updated_by, updated_at)
            VALUES (\(bind: organizationID), \(bind: policy.requestLogsDays), \(bind: policy.storedBodiesDays), \(bind: policy.webhookPayloadsDays), \(bind: actor), \(bind: now))
            ON CONFLICT (organization_id) DO UPDATE SET request_logs_days = excluded.request_logs_days, stored_bodies_days = excluded.stored_bodies_days,
              webhook_payloads_days = excluded.webhook_payloads_days, updated_by = excluded.updated_by, updated_at = excluded.updated_at
            """).run()
    }

    /// Deletes up to `limit` request-log rows older than `cutoff`; returns how many.
    package func deleteRequestLogs(organizationID: UUID, before cutoff: Date, limit: Int) async throws -> Int {
        try await db.raw("""
            DELETE FROM integration_requests WHERE id IN (
              SELECT id FROM integration_requests WHERE organization_id = \(bind: organizationID) AND created_at < \(bind: cutoff) LIMIT \(bind: limit)
            ) RETURNING id
            """).all().count
    }

    /// Clears up to `limit` rows' stored bodies older than `cutoff`; returns how many rows.
    package func clearBodies(organizationID: UUID, before cutoff: Date, limit: Int) async throws -> Int {
        try await db.raw("""
            UPDATE integration_requests SET request_body = NULL, response_body = NULL WHERE id IN (
              SELECT id FROM integration_requests WHERE organization_id = \(bind: organizationID) AND created_at < \(bind: cutoff)
                AND (request_body IS NOT NULL OR response_body IS NOT NULL) LIMIT \(bind: limit)
            ) RETURNING id
            """).all().count
    }

    /// Replaces up to `limit` bodies of finished webhook events older than `cutoff` with `{"$expired": true}`.
    package func expireWebhookPayloads(organizationID: UUID, before cutoff: Date, limit: Int) async throws -> Int {
        let unmarked: SQLQueryString = switch db.backend {
        case .postgres: "NOT (payload ? '$expired') AND NOT (payload ? '$erased')"
        case .sqlite: "json_extract(payload, '$.\"$expired\"') IS NULL AND json_extract(payload, '$.\"$erased\"') IS NULL"
        }
        return try await db.raw("""
            UPDATE webhook_events SET payload = \(bind: db.jsonBind(["$expired": true])) WHERE id IN (
              SELECT id FROM webhook_events WHERE organization_id = \(bind: organizationID) AND status IN ('processed', 'failed')
                AND created_at < \(bind: cutoff) AND \(unmarked) LIMIT \(bind: limit)
            ) RETURNING id
            """).all().count
    }
}
