package import Foundation
import SQLKit

/// A web console session: the cookie's secret is kept as its SHA-256 only. The session acts as the API
/// token that signed in (`tokenID`) and ends with it.
package struct ConsoleSessionRecord: Sendable, Equatable {
    package var id: UUID
    /// Lowercase hex SHA-256 of the cookie's secret.
    package var secretHash: String
    package var organizationID: UUID
    package var tokenID: UUID
    package var createdAt: Date
    package var lastSeenAt: Date
    /// The absolute end, whatever the activity.
    package var expiresAt: Date
    package var endedAt: Date?
    /// `signed_out`, `idle`, `expired`, `token_ended` or `replaced`.
    package var endReason: String?

    package init(
        id: UUID, secretHash: String, organizationID: UUID, tokenID: UUID, createdAt: Date, lastSeenAt: Date, expiresAt: Date,
        endedAt: Date? = nil, endReason: String? = nil
    ) {
        self.id = id
        self.secretHash = secretHash
        self.organizationID = organizationID
        self.tokenID = tokenID
        self.createdAt = createdAt
        self.lastSeenAt = lastSeenAt
        self.expiresAt = expiresAt
        self.endedAt = endedAt
        self.endReason = endReason
    }
}

/// The `console_sessions` table.
package struct ConsoleSessionStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    package func insert(_ r: ConsoleSessionRecord) async throws {
        try await db.raw("""
            INSERT INTO console_sessions (id, secret_hash, organization_id, token_id, created_at, last_seen_at, expires_at, ended_at, end_reason)
            VALUES (\(bind: r.id), \(bind: r.secretHash), \(bind: r.organizationID), \(bind: r.tokenID), \(bind: r.createdAt),
                    \(bind: r.lastSeenAt), \(bind: r.expiresAt), \(bind: r.endedAt), \(bind: r.endReason))
            """).run()
    }

    /// The session whose secret hashes to `secretHash`, with the token it acts as and the organization's
    /// slug, in one query (every console request asks this); the caller checks every end condition.
    package func find(secretHash: String) async throws -> (ConsoleSessionRecord, APITokenRecord, slug: String)? {
        // The token's columns under their own names (its decoder reads them); the session's prefixed.
        guard let row = try await db.raw("""
            SELECT s.id AS s_id, s.secret_hash AS s_secret_hash, s.created_at AS s_created_at, s.last_seen_at AS s_last_seen_at,
                   s.expires_at AS s_expires_at, s.ended_at AS s_ended_at, s.end_reason AS s_end_reason,
                   t.id, t.organization_id, t.token_hash, t.role, t.owner, t.description, t.created_by, t.created_at, t.expires_at,
                   t.revoked_at, t.last_used_at, o.slug
            FROM console_sessions s JOIN api_tokens t ON t.id = s.token_id JOIN organizations o ON o.id = s.organization_id
            WHERE s.secret_hash = \(bind: secretHash)
            """).first() else { return nil }
        let token = try APITokenStore.decode(row)
        let session = ConsoleSessionRecord(
            id: try row.decode(column: "s_id", as: UUID.self), secretHash: try row.decode(column: "s_secret_hash", as: String.self),
            organizationID: token.organizationID, tokenID: token.id,
            createdAt: try row.decode(column: "s_created_at", as: Date.self), lastSeenAt: try row.decode(column: "s_last_seen_at", as: Date.self),
            expiresAt: try row.decode(column: "s_expires_at", as: Date.self), endedAt: try row.decode(column: "s_ended_at", as: Date?.self),
            endReason: try row.decode(column: "s_end_reason", as: String?.self)
        )
        return (session, token, try row.decode(column: "slug", as: String.self))
    }

    /// Records activity; only a live session is touched.
    package func touch(id: UUID, at time: Date) async throws {
        try await db.raw("UPDATE console_sessions SET last_seen_at = \(bind: time) WHERE id = \(bind: id) AND ended_at IS NULL").run()
    }

    /// Ends a live session; false when it had already ended (the caller records the end once).
    package func end(id: UUID, at time: Date, reason: String) async throws -> Bool {
        try await db.raw("""
            UPDATE console_sessions SET ended_at = \(bind: time), end_reason = \(bind: reason)
            WHERE id = \(bind: id) AND ended_at IS NULL RETURNING id
            """).first() != nil
    }

    /// The ids of the token's sessions not yet ended, newest first.
    package func open(tokenID: UUID) async throws -> [UUID] {
        try await db.raw("""
            SELECT id FROM console_sessions WHERE token_id = \(bind: tokenID) AND ended_at IS NULL ORDER BY created_at DESC, id DESC
            """).all().map { try $0.decode(column: "id", as: UUID.self) }
    }

    /// Deletes the organization's sessions that ended, or reached their absolute end, before `time`.
    package func prune(organizationID: UUID, before time: Date) async throws {
        try await db.raw("""
            DELETE FROM console_sessions
            WHERE organization_id = \(bind: organizationID) AND (ended_at < \(bind: time) OR expires_at < \(bind: time))
            """).run()
    }
}
