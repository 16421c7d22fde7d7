import Crypto
package import Foundation
package import Ledger
import Logging
package import PortalCore
package import Storage
import Synchronization

/// Issues and checks bearer API tokens (DESIGN section 6).
///
/// A token is `ptk_` and 43 base64url characters (256 random bits). Only its SHA-256 is stored; it is
/// shown once, when issued. Checking looks the hash up, compares it in constant time, and refuses
/// revoked and expired tokens.
///
/// A token found valid is remembered for `cacheSeconds` (default 100 ms), so a busy client costs ten
/// lookups a second rather than one per request. Revoking on this instance forgets it at once; another
/// process sharing the database (`portal token revoke`, another instance) is obeyed within `cacheSeconds`.
/// Expiry is checked on every request.
package struct APITokenAuthority: Sendable {
    private let database: Database
    private let audit: any AuditTrail
    private let clock: any WallClock
    private let ids: IdentifierGenerator
    private let cache: TokenCache
    /// Counts uses of an expired token per token and minute; nil: one entry each.
    private let failures: AuthFailureRecorder?

    package init(
        database: Database, audit: any AuditTrail, clock: any WallClock = SystemWallClock(), ids: IdentifierGenerator = .shared,
        cacheSeconds: TimeInterval = 0.1, failures: AuthFailureRecorder? = nil
    ) {
        self.database = database
        self.audit = audit
        self.failures = failures
        self.clock = clock
        self.ids = ids
        self.cache = TokenCache(ttl: cacheSeconds)
    }

    /// The prefix of every API token, so secret scanners can recognise a leaked one.
    package static let prefix = "ptk_"

    /// The lowercase hex SHA-256 of a token.
    package static func hash(_ token: String) -> String {
        Hex.encode(SHA256.hash(data: Array(token.utf8)))
    }

    /// A new random token.
    static func generate() -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return prefix + Base64URL.encode(bytes)
    }

    /// Issues a token inside the caller's transaction, with its `apitoken.created` entry; returns the
    /// stored record and the token, which is never retrievable again. `actor` is the issuing token's id or
    /// `system:<service>`.
    package func issue(
        organizationID: UUID, role: Role, owner: String, description: String? = nil, expiresAt: Date? = nil,
        createdBy: UUID? = nil, actor: String, in db: Transaction
    ) async throws -> (record: APITokenRecord, token: String) {
        let token = Self.generate()
        let record = APITokenRecord(
            id: ids.next(), organizationID: organizationID, tokenHash: Self.hash(token), role: role, owner: owner,
            description: description, createdBy: createdBy, createdAt: clock.now(), expiresAt: expiresAt
        )
        try await APITokenStore(db).insert(record)
        try await audit.record(AuditEvent(
            organizationID: organizationID, type: .apitokenCreated, actor: actor, data: Self.evidence(record), time: record.createdAt
        ), in: db)
        return (record, token)
    }

    /// Revokes a token inside the caller's transaction, with its `apitoken.revoked` entry; false when no
    /// live token of the organization (any, when nil) has this id.
    package func revoke(id: UUID, organizationID: UUID?, actor: String, in db: Transaction) async throws -> Bool {
        let store = APITokenStore(db)
        let now = clock.now()
        guard try await store.revoke(id: id, organizationID: organizationID, at: now), let record = try await store.find(id: id) else {
            return false
        }
        cache.forget(tokenID: id)
        try await audit.record(AuditEvent(
            organizationID: record.organizationID, type: .apitokenRevoked, actor: actor, data: Self.evidence(record), time: now
        ), in: db)
        return true
    }

    /// The `data` of a token event: id, role, owner and expiry; never the token or its hash.
    static func evidence(_ record: APITokenRecord) -> JSONValue {
        var data: [String: JSONValue] = [
            "tokenId": .string(record.id.uuidString.lowercased()), "role": .string(record.role.rawValue), "owner": .string(record.owner),
        ]
        if let expiresAt = record.expiresAt { data["expiresAt"] = .string(Timestamp.rfc3339(expiresAt)) }
        return .object(data)
    }

    /// The caller presenting `token`; throws `unauthenticated` for an unknown, revoked or expired token.
    package func authenticate(_ token: String) async throws -> Principal {
        guard token.hasPrefix(Self.prefix), token.count == Self.prefix.count + 43 else {
            throw PortalError(.unauthenticated, "the bearer token is not a portal API token")
        }
        let presented = Self.hash(token)
        let now = clock.now()
        let found: (APITokenRecord, String)?
        if let cached = cache.lookup(presented, now: now) {
            found = cached
        } else {
            found = try await database.read { db in try await APITokenStore(db).findWithOrganization(hash: presented) }
            if let (record, slug) = found, record.revokedAt == nil { cache.remember(presented, record: record, slug: slug, now: now) }
        }
        guard let (record, slug) = found,
              ConstantTime.equals(Array(record.tokenHash.utf8), Array(presented.utf8))
        else {
            throw PortalError(.unauthenticated, "the bearer token is not valid")
        }
        if record.revokedAt != nil {
            throw PortalError(.unauthenticated, "the bearer token was revoked")
        }
        if let expiresAt = record.expiresAt, expiresAt <= now {
            let event = AuditEvent(
                organizationID: record.organizationID, type: .apitokenUsedExpired, actor: record.id.uuidString.lowercased(),
                data: Self.evidence(record), time: now
            )
            // A client retrying with an expired token: counted per token and minute, not an entry per use.
            if let failures {
                try? await failures.refused(event, keyFields: ["tokenId"], address: nil)
            } else {
                try? await audit.append([event])
            }
            throw PortalError(.unauthenticated, "the bearer token expired at \(Timestamp.rfc3339(expiresAt))")
        }
        // Last use is kept to the minute: a write per request would serialize every reader on SQLite.
        if record.lastUsedAt.map({ now.timeIntervalSince($0) >= 60 }) ?? true, cache.claimTouch(presented, now: now) {
            try? await database.write { db in try await APITokenStore(db).touch(id: record.id, at: now) }
        }
        return Principal(
            tokenID: record.id, organizationID: record.organizationID, organizationSlug: slug,
            role: record.role, owner: record.owner
        )
    }
}

/// Tokens recently found valid, by hash, for a short time (see ``APITokenAuthority``).
final class TokenCache: Sendable {
    private struct Entry {
        var record: APITokenRecord
        var slug: String
        var cachedAt: Date
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let ttl: TimeInterval

    init(ttl: TimeInterval) { self.ttl = ttl }

    func lookup(_ hash: String, now: Date) -> (APITokenRecord, String)? {
        guard ttl > 0 else { return nil }
        return entries.withLock { entries in
            guard let entry = entries[hash] else { return nil }
            guard now.timeIntervalSince(entry.cachedAt) < ttl, now >= entry.cachedAt else {
                entries[hash] = nil
                return nil
            }
            return (entry.record, entry.slug)
        }
    }

    func remember(_ hash: String, record: APITokenRecord, slug: String, now: Date) {
        guard ttl > 0 else { return }
        entries.withLock { entries in
            // Bounded: a flood of distinct tokens empties the cache instead of growing it.
            if entries.count >= 10_000 { entries.removeAll(keepingCapacity: true) }
            entries[hash] = Entry(record: record, slug: slug, cachedAt: now)
        }
    }

    /// Whether this request should record the token's last use (once per minute, not once per cached hit).
    func claimTouch(_ hash: String, now: Date) -> Bool {
        entries.withLock { entries in
            guard var entry = entries[hash] else { return true }
            if let last = entry.record.lastUsedAt, now.timeIntervalSince(last) < 60 { return false }
            entry.record.lastUsedAt = now
            entries[hash] = entry
            return true
        }
    }

    func forget(tokenID: UUID) {
        entries.withLock { entries in entries = entries.filter { $0.value.record.id != tokenID } }
    }
}

/// An API token as listed: never the token or its hash.
package struct APITokenView: Sendable, Encodable {
    package var id: String
    package var organization: String
    package var role: String
    package var owner: String
    package var description: String?
    /// `active`, `expired` or `revoked`.
    package var state: String
    package var createdAt: String
    package var expiresAt: String?
    package var revokedAt: String?
    package var lastUsedAt: String?
    /// The token itself: present only in the response that issued it.
    package var token: String?

    package init(_ record: APITokenRecord, organizationSlug: String, now: Date, token: String? = nil) {
        id = record.id.uuidString.lowercased()
        organization = organizationSlug
        role = record.role.rawValue
        owner = record.owner
        description = record.description
        state = record.revokedAt != nil ? "revoked" : (record.expiresAt.map { $0 <= now } ?? false) ? "expired" : "active"
        createdAt = Timestamp.rfc3339(record.createdAt)
        expiresAt = record.expiresAt.map(Timestamp.rfc3339)
        revokedAt = record.revokedAt.map(Timestamp.rfc3339)
        lastUsedAt = record.lastUsedAt.map(Timestamp.rfc3339)
        self.token = token
    }
}
