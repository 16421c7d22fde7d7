package import Foundation
package import PortalCore
import SQLKit

/// An integration's OAuth 2.0 tokens: the values sealed by the vault, the rest in the clear.
package struct IntegrationTokenRecord: Sendable, Equatable {
    package var integrationID: UUID
    package var organizationID: UUID
    /// The vault envelope of the access and refresh tokens.
    package var sealed: JSONValue
    package var tokenType: String
    package var scope: String?
    package var expiresAt: Date?
    /// Consecutive failed refreshes, and when the next may be tried.
    package var refreshFailures: Int
    package var nextAttemptAt: Date?
    package var updatedAt: Date

    package init(
        integrationID: UUID, organizationID: UUID, sealed: JSONValue, tokenType: String, scope: String?, expiresAt: Date?,
        refreshFailures: Int, nextAttemptAt: Date?, updatedAt: Date
    ) {
        self.integrationID = integrationID
        self.organizationID = organizationID
        self.sealed = sealed
        self.tokenType = tokenType
        self.scope = scope
        self.expiresAt = expiresAt
        self.refreshFailures = refreshFailures
        self.nextAttemptAt = nextAttemptAt
        self.updatedAt = updatedAt
    }
}

/// The `integration_tokens` table.
package struct IntegrationTokenStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// The row, locked for this transaction on PostgreSQL when `lock` is set (an advisory lock on the
    /// integration, then `FOR UPDATE`).
    package func find(integrationID: UUID, organizationID: UUID, lock: Bool = false) async throws -> IntegrationTokenRecord? {
        let backend = db.backend
        if lock && backend == .postgres {
            // A transaction-scoped advisory lock on the integration makes instances take turns even before
            // the first token row exists (FOR UPDATE alone locks nothing then).
            try await AdvisoryLock.integrationToken(integrationID).take(on: db)
        }
        let suffix = lock && backend == .postgres ? " FOR UPDATE" : ""
        guard let row = try await db.raw("""
            SELECT integration_id, organization_id, sealed, token_type, scope, expires_at, refresh_failures, next_attempt_at, updated_at
            FROM integration_tokens WHERE integration_id = \(bind: integrationID) AND organization_id = \(bind: organizationID)\(unsafeRaw: suffix)
            """).first() else { return nil }
        return IntegrationTokenRecord(
            integrationID: try row.decode(column: "integration_id", as: UUID.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            sealed: try row.decodeJSON(column: "sealed", backend: backend) ?? .null,
            tokenType: try row.decode(column: "token_type", as: String.self),
            scope: try row.decodeOptional(column: "scope", as: String.self),
            expiresAt: try row.decodeOptional(column: "expires_at", as: Date.self),
            refreshFailures: try row.decode(column: "refresh_failures", as: Int.self),
            nextAttemptAt: try row.decodeOptional(column: "next_attempt_at", as: Date.self),
            updatedAt: try row.decode(column: "updated_at", as: Date.self)
        )
    }

    package func upsert(_ r: IntegrationTokenRecord) async throws {
        try await db.raw("""
            INSERT INTO integration_tokens (integration_id, organization_id, sealed, token_type, scope, expires_at, refresh_failures, next_attempt_at, updated_at)
            VALUES (\(bind: r.integrationID), \(bind: r.organizationID), \(bind: db.jsonBind(r.sealed)), \(bind: r.tokenType), \(bind: r.scope),
                    \(bind: r.expiresAt), \(bind: r.refreshFailures), \(bind: r.nextAttemptAt), \(bind: r.updatedAt))
            ON CONFLICT (integration_id) DO UPDATE SET
              sealed = excluded.sealed, token_type = excluded.token_type, scope = excluded.scope, expires_at = excluded.expires_at,
              refresh_failures = excluded.refresh_failures, next_attempt_at = excluded.next_attempt_at, updated_at = excluded.updated_at
            """).run()
    }

    /// Records a failed refresh: the failure count and when to try next.
    package func recordFailure(integrationID: UUID, failures: Int, nextAttemptAt: Date, at time: Date) async throws {
        try await db.raw("""
            UPDATE integration_tokens SET refresh_failures = \(bind: failures), next_attempt_at = \(bind: nextAttemptAt), updated_at = \(bind: time)
            WHERE integration_id = \(bind: integrationID)
            """).run()
    }

    package func delete(integrationID: UUID) async throws {
        try await db.raw("DELETE FROM integration_tokens WHERE integration_id = \(bind: integrationID)").run()
    }
}
