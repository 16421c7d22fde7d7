package import Foundation
package import PortalCore
import SQLKit

/// A pending OAuth 2.0 authorization: the `state` (stored as its SHA-256) bound to an organization, an
/// integration, the API token that asked, and the sealed PKCE verifier.
package struct OAuthStateRecord: Sendable, Equatable {
    package var stateHash: String
    package var organizationID: UUID
    package var integrationID: UUID
    package var tokenID: UUID
    package var sealedVerifier: JSONValue
    package var redirectURI: String
    package var expiresAt: Date

    package init(stateHash: String, organizationID: UUID, integrationID: UUID, tokenID: UUID, sealedVerifier: JSONValue, redirectURI: String, expiresAt: Date) {
        self.stateHash = stateHash
        self.organizationID = organizationID
        self.integrationID = integrationID
        self.tokenID = tokenID
        self.sealedVerifier = sealedVerifier
        self.redirectURI = redirectURI
        self.expiresAt = expiresAt
    }
}

/// The `oauth_states` table.
package struct OAuthStateStore {
    private let db: any SQLDatabase

    package init(_ transaction: Transaction) { db = transaction.sql }

    package func insert(_ r: OAuthStateRecord) async throws {
        try await db.raw("""
            INSERT INTO oauth_states (state_hash, organization_id, integration_id, token_id, sealed_verifier, redirect_uri, expires_at)
            VALUES (\(bind: r.stateHash), \(bind: r.organizationID), \(bind: r.integrationID), \(bind: r.tokenID),
                    \(bind: db.jsonBind(r.sealedVerifier)), \(bind: r.redirectURI), \(bind: r.expiresAt))
            """).run()
    }

    /// Marks the state used and returns it, once: nil when unknown, already used or expired at `now`.
    package func consume(stateHash: String, now: Date) async throws -> OAuthStateRecord? {
        let backend = db.backend
        guard let row = try await db.raw("""
            UPDATE oauth_states SET used_at = \(bind: now)
            WHERE state_hash = \(bind: stateHash) AND used_at IS NULL AND expires_at > \(bind: now)
            RETURNING state_hash, organization_id, integration_id, token_id, sealed_verifier, redirect_uri, expires_at
            """).first() else { return nil }
        return OAuthStateRecord(
            stateHash: try row.decode(column: "state_hash", as: String.self),
            organizationID: try row.decode(column: "organization_id", as: UUID.self),
            integrationID: try row.decode(column: "integration_id", as: UUID.self),
            tokenID: try row.decode(column: "token_id", as: UUID.self),
            sealedVerifier: try row.decodeJSON(column: "sealed_verifier", backend: backend) ?? .null,
            redirectURI: try row.decode(column: "redirect_uri", as: String.self),
            expiresAt: try row.decode(column: "expires_at", as: Date.self)
        )
    }
}
