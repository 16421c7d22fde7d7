package import Foundation
package import PortalCore
import SQLKit

/// A stored API token: never the token itself, only its SHA-256.
package struct APITokenRecord: Sendable, Equatable {
    package var id: UUID
    package var organizationID: UUID
    /// Lowercase hex SHA-256 of the token string.
    package var tokenHash: String
    package var role: Role
    /// The person the token was issued to.
    package var owner: String
    package var description: String?
    /// The token that issued this one, nil when issued by the CLI.
    package var createdBy: UUID?
    package var createdAt: Date
    package var expiresAt: Date?
    package var revokedAt: Date?
    package var lastUsedAt: Date?

    package init(
        id: UUID, organizationID: UUID, tokenHash: String, role: Role, owner: String, description: String? = nil,
        createdBy: UUID? = nil, createdAt: Date, expiresAt: Date? = nil, revokedAt: Date? = nil, lastUsedAt: Date? = nil
    ) {
        self.id = id
        self.organizationID = organizationID
        self.tokenHash = tokenHash
        self.role = role
        self.owner = owner
        self.description = description
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
        self.lastUsedAt = lastUsedAt
    }
}

/// API tokens, scoped by organization.
package struct APITokenStore {
    private let db: any SQLDatabase
    private static let columns = """
        id, organization_id, token_hash, role, owner, description, created_by, created_at, expires_at, revoked_at, last_used_at
        """

    package init(_ transaction: Transaction) { db = transaction.sql }

    /// Whether any token was ever issued (revoked and expired ones included).
    package func any() async throws -> Bool {
        try await db.raw("SELECT id FROM api_tokens LIMIT 1").first() != nil
    }

    package func insert(_ token: APITokenRecord) async throws {
        try await db.raw("""
            INSERT INTO api_tokens (\(unsafeRaw: Self.columns))
            VALUES (\(bind: token.id), \(bind: token.organizationID), \(bind: token.tokenHash), \(bind: token.role.rawValue),
                    \(bind: token.owner), \(bind: token.description), \(bind: token.createdBy), \(bind: token.createdAt),
                    \(bind: token.expiresAt), \(bind: token.revokedAt), \(bind: token.lastUsedAt))
            """).run()
    }

    /// The token whose hash is `tokenHash`, whatever its state (the caller checks expiry and revocation).
    package func find(hash tokenHash: String) async throws -> APITokenRecord? {
        try await db.raw("SELECT \(unsafeRaw: Self.columns) FROM api_tokens WHERE token_hash = \(bind: tokenHash)")
            .first().map(Self.decode)
    }

    /// The token whose hash is `tokenHash` with its organization's slug, in one query (every authenticated
    /// request asks this).
    package func findWithOrganization(hash tokenHash: String) async throws -> (APITokenRecord, slug: String)? {
        guard let row = try await db.raw("""
            SELECT t.id, t.organization_id, t.token_hash, t.role, t.owner, t.description, t.created_by, t.created_at,
                   t.expires_at, t.revoked_at, t.last_used_at, o.slug
            FROM api_tokens t JOIN organizations o ON o.id = t.organization_id
            WHERE t.token_hash = \(bind: tokenHash)
            """).first() else { return nil }
        return (try Self.decode(row), try row.decode(column: "slug", as: String.self))
    }

    /// The token `id` of `organizationID`, if any.
    package func find(id: UUID, organizationID: UUID) async throws -> APITokenRecord? {
        try await db.raw("""
            SELECT \(unsafeRaw: Self.columns) FROM api_tokens WHERE id = \(bind: id) AND organization_id = \(bind: organizationID)
            """).first().map(Self.decode)
    }

    /// The token `id` in any organization (for the CLI, which acts for the operator of the machine).
    package func find(id: UUID) async throws -> APITokenRecord? {
        try await db.raw("SELECT \(unsafeRaw: Self.columns) FROM api_tokens WHERE id = \(bind: id)")
            .first().map(Self.decode)
    }

    /// Whether a token with this id exists in an organization other than `organizationID`.
    package func existsElsewhere(id: UUID, organizationID: UUID) async throws -> Bool {
        try await db.raw("SELECT id FROM api_tokens WHERE id = \(bind: id) AND organization_id <> \(bind: organizationID)").first() != nil
    }

    /// Tokens of one organization (or all, when nil), newest first, after the cursor id.
    package func list(organizationID: UUID?, limit: Int, before cursor: UUID?) async throws -> [APITokenRecord] {
        var query = SQLQueryString("SELECT \(unsafeRaw: Self.columns) FROM api_tokens WHERE 1 = 1")
        if let organizationID { query = query + " AND organization_id = \(bind: organizationID)" }
        if let cursor { query = query + " AND id < \(bind: cursor)" }
        query = query + " ORDER BY id DESC LIMIT \(bind: limit)"
        return try await db.raw(query).all().map(Self.decode)
    }

    /// How many of the organization's tokens are in force at `now` (neither revoked nor expired).
    package func countInForce(organizationID: UUID, now: Date) async throws -> Int {
        try await db.raw("""
            SELECT COUNT(*) AS n FROM api_tokens
            WHERE organization_id = \(bind: organizationID) AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > \(bind: now))
            """).first()?.decode(column: "n", as: Int.self) ?? 0
    }

    /// Marks a token revoked; returns false when no live token of that organization has this id.
    package func revoke(id: UUID, organizationID: UUID?, at time: Date) async throws -> Bool {
        var query = SQLQueryString("UPDATE api_tokens SET revoked_at = \(bind: time) WHERE id = \(bind: id) AND revoked_at IS NULL")
        if let organizationID { query = query + " AND organization_id = \(bind: organizationID)" }
        query = query + " RETURNING id"
        return try await db.raw(query).first() != nil
    }

    /// Records that the token was used at `time`.
    package func touch(id: UUID, at time: Date) async throws {
        try await db.raw("UPDATE api_tokens SET last_used_at = \(bind: time) WHERE id = \(bind: id)").run()
    }

    /// A token from a row holding the token's columns under their own names.
    static func decode(_ row: any SQLRow) throws -> APITokenRecord {
        let roleName = try row.decode(column: "role", as: String.self)
        guard let role = Role(rawValue: roleName) else {
            throw PortalError(.storage, "a stored token has an unknown role")
        }
        return APITokenRecord(
            id: try row.decode(column: "id", as: UUID.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            tokenHash: try row.decode(column: "token_hash", as: String.self),
            role: role,
            owner: try row.decode(column: "owner", as: String.self),
            description: try row.decodeOptional(column: "description", as: String.self),
            createdBy: try row.decodeOptional(column: "created_by", as: UUID.self),
            createdAt: try row.decode(column: "created_at", as: Date.self),
            expiresAt: try row.decodeOptional(column: "expires_at", as: Date.self),
            revokedAt: try row.decodeOptional(column: "revoked_at", as: Date.self),
            lastUsedAt: try row.decodeOptional(column: "last_used_at", as: Date.self)
        )
    }
}
