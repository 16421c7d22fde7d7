package import Foundation
import PortalCore
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
    private static let columns = """
        s.id, s.secret_hash, s.organization_id, s.token_id, s.created_at, s.last_seen_at, s.expires_at, s.ended_at, s.end_reason
        """

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
        guard let row = try await db.raw("""
            SELECT \(unsafeRaw: Self.columns), o.slug,
                   t.token_hash, t.role, t.owner, t.description, t.created_by, t.created_at AS token_created_at,
                   t.expires_at AS token_expires_at, t.revoked_at, t.last_used_at
            FROM console_sessions s JOIN api_tokens t ON t.id = s.token_id JOIN organizations o ON o.id = s.organization_id
            WHERE s.secret_hash = \(bind: secretHash)
            """).first() else { return nil }
        let session = try Self.decode(row)
        let roleName = try row.decode(column: "role", as: String.self)
        guard let role = Role(rawValue: roleName) else { throw PortalError(.internal, "a stored token has an unknown role") }
        let token = APITokenRecord(
            id: session.tokenID, organizationID: session.organizationID, tokenHash: try row.decode(column: "token_hash", as: String.self),
            role: role, owner: try row.decode(column: "owner", as: String.self),
            description: try row.decode(column: "description", as: String?.self),
            createdBy: try row.decode(column: "created_by", as: UUID?.self),
            createdAt: try row.decode(column: "token_created_at", as: Date.self),
            expiresAt: try row.decode(column: "token_expires_at", as: Date?.self),
            revokedAt: try row.decode(column: "revoked_at", as: Date?.self),
            lastUsedAt: try row.decode(column: "last_used_at", as: Date?.self)
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

    private static func decode(_ row: any SQLRow) throws -> ConsoleSessionRecord {
        ConsoleSessionRecord(
            id: try row.decode(column: "id", as: UUID.self),
            secretHash: try row.decode(column: "secret_hash", as: String.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            tokenID: try row.decode(column: "token_id", as: UUID.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            lastSeenAt: try row.decode(column: "last_seen_at", as: Date.self),
            expiresAt: try row.decode(column: "expires_at", as: Date.self),
            endedAt: try row.decode(column: "ended_at", as: Date?.self),
            endReason: try row.decode(column: "end_reason", as: String?.self)
        )
    }
}
