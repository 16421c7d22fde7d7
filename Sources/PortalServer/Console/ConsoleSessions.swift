import Crypto
package import Foundation
package import Ledger
package import PortalCore
package import Storage

/// A live console session: who it acts as, and the CSRF token its pages carry.
package struct ConsoleSession: Sendable {
    package var record: ConsoleSessionRecord
    package var principal: Principal
    /// Derived from the cookie's secret (HMAC-SHA256), so it is never stored and changes with the session.
    package var csrf: String
}

/// Web console sessions (issue 20). Signing in exchanges an API token for a session: the cookie carries a
/// random secret, the database keeps its SHA-256 and the token's id. Every request checks, in one query,
/// the session (not ended, not idle longer than ``Limits/idle``, not past ``Limits/absolute``) and the token
/// (not revoked, not expired): a session never outlives its token. Starts and ends are ledgered
/// (`session.started`, `session.ended`); a failed sign-in is a 401 like the API's, counted by the caller.
package struct ConsoleSessions: Sendable {
    package struct Limits: Sendable {
        /// Ends a session without a request for this long.
        package var idle: TimeInterval = 30 * 60
        /// Ends a session this long after sign-in, whatever its activity.
        package var absolute: TimeInterval = 12 * 3600
        /// Sessions one token may hold open; signing in again ends the oldest (`replaced`).
        package var perToken: Int = 10
        package init() {}
    }

    private let database: Database
    private let audit: any AuditTrail
    private let clock: any WallClock
    private let ids: IdentifierGenerator
    private let tokens: APITokenAuthority
    package let limits: Limits

    package init(
        database: Database, audit: any AuditTrail, clock: any WallClock, tokens: APITokenAuthority, ids: IdentifierGenerator = .shared,
        limits: Limits = .init()
    ) {
        self.database = database
        self.audit = audit
        self.clock = clock
        self.tokens = tokens
        self.ids = ids
        self.limits = limits
    }

    /// The name of the session cookie.
    package static let cookieName = "portal_session"

    /// Starts a session for the holder of `token`; throws `unauthenticated` as the API would for it.
    /// Returns the cookie's secret (shown to nobody else) and the session.
    package func start(token: String) async throws -> (secret: String, session: ConsoleSession) {
        let principal = try await tokens.authenticate(token)
        let secret = Self.generateSecret()
        let now = clock.now()
        var expiresAt = now.addingTimeInterval(limits.absolute)
        if let tokenExpiry = try await tokenExpiry(principal.tokenID), tokenExpiry < expiresAt { expiresAt = tokenExpiry }
        let record = ConsoleSessionRecord(
            id: ids.next(), secretHash: APITokenAuthority.hash(secret), organizationID: principal.organizationID,
            tokenID: principal.tokenID, createdAt: now, lastSeenAt: now, expiresAt: expiresAt
        )
        let limit = limits.perToken
        try await database.write { db in
            let store = ConsoleSessionStore(db)
            // Ended sessions are kept a day for the record, then removed: the table stays bounded.
            try await store.prune(organizationID: principal.organizationID, before: now.addingTimeInterval(-86_400))
            for old in try await store.open(tokenID: principal.tokenID).dropFirst(limit - 1) where try await store.end(id: old, at: now, reason: "replaced") {
                try await audit.record(Self.event(.sessionEnded, id: old, principal, now, reason: "replaced"), in: db)
            }
            try await store.insert(record)
            try await audit.record(Self.event(.sessionStarted, id: record.id, principal, now, reason: nil), in: db)
        }
        return (secret, ConsoleSession(record: record, principal: principal, csrf: Self.csrf(for: secret)))
    }

    /// The live session whose cookie carries `secret`, nil when there is none. A session found past its
    /// idle or absolute end, or whose token was revoked or expired, is ended here (and ledgered once).
    package func resolve(secret: String) async throws -> ConsoleSession? {
        guard Self.isWellFormed(secret) else { return nil }
        let presented = APITokenAuthority.hash(secret)
        guard let (record, token, slug) = try await database.read({ db in try await ConsoleSessionStore(db).find(secretHash: presented) }),
              ConstantTime.equals(Array(record.secretHash.utf8), Array(presented.utf8)), record.endedAt == nil
        else { return nil }
        let now = clock.now()
        let principal = Principal(
            tokenID: token.id, organizationID: token.organizationID, organizationSlug: slug, role: token.role, owner: token.owner
        )
        let reason: String? =
            if token.revokedAt != nil || (token.expiresAt.map { $0 <= now } ?? false) { "token_ended" }
            else if record.expiresAt <= now { "expired" }
            else if now.timeIntervalSince(record.lastSeenAt) >= limits.idle { "idle" }
            else { nil }
        if let reason {
            try await end(id: record.id, principal, reason: reason)
            return nil
        }
        // Activity is kept to the minute: a write per page would serialize every reader on SQLite.
        if now.timeIntervalSince(record.lastSeenAt) >= 60 {
            try await database.write { db in try await ConsoleSessionStore(db).touch(id: record.id, at: now) }
        }
        return ConsoleSession(record: record, principal: principal, csrf: Self.csrf(for: secret))
    }

    /// Ends the session (sign-out); ledgered once, however often it is asked.
    package func end(_ session: ConsoleSession, reason: String = "signed_out") async throws {
        try await end(id: session.record.id, session.principal, reason: reason)
    }

    private func end(id: UUID, _ principal: Principal, reason: String) async throws {
        let now = clock.now()
        try await database.write { db in
            if try await ConsoleSessionStore(db).end(id: id, at: now, reason: reason) {
                try await audit.record(Self.event(.sessionEnded, id: id, principal, now, reason: reason), in: db)
            }
        }
    }

    private func tokenExpiry(_ id: UUID) async throws -> Date? {
        try await database.read { db in try await APITokenStore(db).find(id: id)?.expiresAt }
    }

    /// Whether `csrf` is the session's CSRF token (constant time).
    package static func csrfMatches(_ csrf: String?, _ session: ConsoleSession) -> Bool {
        guard let csrf else { return false }
        return ConstantTime.equals(Array(csrf.utf8), Array(session.csrf.utf8))
    }

    static func csrf(for secret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("portal-console-csrf".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return Base64URL.encode(Array(mac))
    }

    /// 256 random bits, base64url: 43 characters.
    static func generateSecret() -> String {
        var rng = SystemRandomNumberGenerator()
        return Base64URL.encode((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
    }

    static func isWellFormed(_ secret: String) -> Bool {
        secret.utf8.count == 43 && secret.utf8.allSatisfy { Base64URL.isAlphabet($0) }
    }

    private static func event(_ type: AuditEventType, id: UUID, _ principal: Principal, _ time: Date, reason: String?) -> AuditEvent {
        var data: [String: JSONValue] = [
            "sessionId": .string(id.uuidString.lowercased()), "tokenId": .string(principal.tokenID.uuidString.lowercased()),
            "role": .string(principal.role.rawValue), "owner": .string(principal.owner),
        ]
        if let reason { data["reason"] = .string(reason) }
        return AuditEvent(
            organizationID: principal.organizationID, type: type, actor: principal.tokenID.uuidString.lowercased(), data: .object(data), time: time
        )
    }
}
