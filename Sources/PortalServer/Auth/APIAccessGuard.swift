import Foundation
import Integrations
import Ledger
import PortalCore
import Synchronization

/// The organization's API allow-list and the API's rate limits (issue 21), checked once per authenticated
/// request (API and console pages alike) after the token is known.
///
/// A source outside the allow-list gets a 403, counted as `access.denied` with reason `source_not_allowed`
/// (aggregated per token, route and minute like any refusal). Rate limits are token buckets in memory, per
/// instance: each token and each organization may make its rate a second with bursts of twice that; the
/// token's bucket is checked first, so a noisy token is held back before it uses up its organization's.
final class APIAccessGuard: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Date
    }

    private let integrations: IntegrationRegistry
    private let failures: AuthFailureRecorder
    private let clock: any WallClock
    private let defaultTokenRate: Int?
    private let defaultOrganizationRate: Int?
    /// Policies read in the last second, by organization (``forget(_:)`` after a change made here).
    private let policies = Mutex<[UUID: (policy: OrganizationPolicy, read: Date)]>([:])
    private let buckets = Mutex<[String: Bucket]>([:])

    init(integrations: IntegrationRegistry, failures: AuthFailureRecorder, clock: any WallClock, tokenRate: Int?, organizationRate: Int?) {
        self.integrations = integrations
        self.failures = failures
        self.clock = clock
        defaultTokenRate = tokenRate
        defaultOrganizationRate = organizationRate
    }

    /// Throws 403 for a source the organization does not allow, 429 with `Retry-After` past a rate limit.
    func check(_ principal: Principal, address: String?, route: String, method: String) async throws {
        let policy = try await policy(principal.organizationID)
        let now = clock.now()
        guard policy.allows(address) else {
            try await failures.refused(AuditEvent(
                organizationID: principal.organizationID, type: .accessDenied, actor: principal.tokenID.uuidString.lowercased(),
                data: [
                    "route": .string(route), "method": .string(method), "status": 403, "reason": "source_not_allowed",
                    "tokenId": .string(principal.tokenID.uuidString.lowercased()),
                ], time: now
            ), keyFields: ["tokenId", "route", "method", "status", "reason"], address: address)
            throw PortalError(.forbidden, "the request's source address is not on the organization's API allow-list")
        }
        let limits: [(key: String, rate: Int?, what: String)] = [
            ("t" + principal.tokenID.uuidString, policy.tokenRate ?? defaultTokenRate, "the token's"),
            ("o" + principal.organizationID.uuidString, policy.organizationRate ?? defaultOrganizationRate, "the organization's"),
        ]
        for limit in limits {
            guard let rate = limit.rate, let wait = take(limit.key, rate: Double(rate), now: now) else { continue }
            var error = PortalError(.throttled, "\(limit.what) API rate limit (\(rate) requests a second) is used up; retry after the time Retry-After gives")
            error.retryAfterSeconds = max(1, Int(wait.rounded(.up)))
            throw error
        }
    }

    /// Forgets the organization's cached policy (after it was changed through this instance).
    func forget(_ organizationID: UUID) { _ = policies.withLock { $0.removeValue(forKey: organizationID) } }

    private func policy(_ organizationID: UUID) async throws -> OrganizationPolicy {
        let now = clock.now()
        if let cached = policies.withLock({ $0[organizationID] }), now >= cached.read, now.timeIntervalSince(cached.read) < 1 { return cached.policy }
        let policy = try await integrations.policy(organizationID: organizationID)
        policies.withLock { p in
            if p.count >= 10_000 { p.removeAll(keepingCapacity: true) }
            p[organizationID] = (policy, now)
        }
        return policy
    }

    /// Takes one request from the bucket `key` (capacity twice the rate); nil when it passed, else the
    /// seconds until one would.
    private func take(_ key: String, rate: Double, now: Date) -> TimeInterval? {
        buckets.withLock { buckets in
            let capacity = max(1, rate * 2)
            if buckets.count >= 100_000 {
                // Idle buckets are full again after a few seconds: forgetting them changes nothing.
                buckets = buckets.filter { now.timeIntervalSince($0.value.updated) < capacity / rate }
            }
            var bucket = buckets[key] ?? Bucket(tokens: capacity, updated: now)
            bucket.tokens = min(capacity, bucket.tokens + max(0, now.timeIntervalSince(bucket.updated)) * rate)
            bucket.updated = now
            guard bucket.tokens >= 1 else {
                buckets[key] = bucket
                return (1 - bucket.tokens) / rate
            }
            bucket.tokens -= 1
            buckets[key] = bucket
            return nil
        }
    }
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest address in
/// `X-Forwarded-For` that is not one (read from the right, as each proxy appends the address it saw).
enum ClientAddress {
    static func resolve(peer: String?, forwardedFor: [String], trusted: [IPNetwork]) -> String? {
        guard !trusted.isEmpty, let peer, let peerAddress = IPAddress(peer), trusted.contains(where: { $0.contains(peerAddress) }) else { return peer }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        for hop in hops.reversed() {
            // A hop that is no address: the client cannot be told, and an unknown source passes no allow-list.
            guard let address = IPAddress(hop) else { return nil }
            if !trusted.contains(where: { $0.contains(address) }) { return address.description }
        }
        return hops.first.flatMap(IPAddress.init)?.description ?? peer
    }
}
