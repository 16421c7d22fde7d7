import Foundation
@testable import Gateway
import Integrations
import PortalCore
import Storage
import Testing

/// The pipeline's pure parts: the retry policy's decisions with a given time and random unit, and the
/// plan's refusals, with no network, no database and no sleep.
@Suite("Gateway pipeline: retry policy and call plan")
struct PipelineTests {
    let start = ContinuousClock.now

    func policy(
        attempts max: Int = 3, idempotent: Bool = true, budget: Duration = .seconds(30), oauth: Bool = false, refreshable: Bool = false, previous: Bool = false
    ) -> RetryPolicy {
        RetryPolicy(
            backoff: Backoff(maxAttempts: max, baseDelay: 200, maxDelay: 5_000), idempotent: idempotent, deadline: start + budget,
            refreshableToken: refreshable, usesOAuth: oauth, hasPreviousCredentials: previous
        )
    }

    @Test("5xx and 429 are retried with full jitter up to the attempts; the third answer is final")
    func retriesThenFinishes() {
        var p = policy()
        p.attemptStarted()
        #expect(p.after(status: 503, retryAfter: nil, now: start, unit: 0.5) == .retry(after: .milliseconds(100)))
        p.attemptStarted()
        #expect(p.after(status: 429, retryAfter: nil, now: start, unit: 0.5) == .retry(after: .milliseconds(200)), "the ceiling doubles")
        p.attemptStarted()
        #expect(p.after(status: 503, retryAfter: nil, now: start, unit: 0.5) == .finish, "no attempts left")
        #expect(p.attempts == 3)
    }

    @Test("the ceiling stops at maxDelay; a unit of 0 retries at once")
    func ceilingAndJitter() {
        var p = policy(attempts: 10)
        for _ in 0..<8 { p.attemptStarted() }
        #expect(p.after(status: 500, retryAfter: nil, now: start, unit: 0.999) == .retry(after: .milliseconds(4_995)))
        #expect(p.after(status: 500, retryAfter: nil, now: start, unit: 0) == .retry(after: .zero))
    }

    @Test("2xx, 3xx and 4xx other than 429 are final at once")
    func finalStatuses() {
        for status in [200, 204, 301, 400, 401, 403, 404, 409, 422] {
            var p = policy()
            p.attemptStarted()
            #expect(p.after(status: status, retryAfter: nil, now: start, unit: 0.5) == .finish, "\(status)")
        }
    }

    @Test("a non-idempotent call is never retried, on an answer or a failure")
    func nonIdempotent() {
        var p = policy(idempotent: false)
        p.attemptStarted()
        #expect(p.after(status: 503, retryAfter: nil, now: start, unit: 0.5) == .finish)
        #expect(p.after(failure: .upstreamFailed, now: start, unit: 0.5) == .finish)
        #expect(RetryPolicy.idempotent(method: "POST", headers: [], retryNonIdempotent: false) == false)
        #expect(RetryPolicy.idempotent(method: "POST", headers: [("Idempotency-Key", "k")], retryNonIdempotent: false))
        #expect(RetryPolicy.idempotent(method: "PATCH", headers: [], retryNonIdempotent: true))
        #expect(RetryPolicy.idempotent(method: "DELETE", headers: [], retryNonIdempotent: false))
    }

    @Test("Retry-After lengthens the wait; a wait past the deadline is not taken")
    func retryAfterAndDeadline() {
        var p = policy(budget: .seconds(10))
        p.attemptStarted()
        #expect(p.after(status: 429, retryAfter: 3, now: start, unit: 0.5) == .retry(after: .seconds(3)))
        #expect(p.after(status: 429, retryAfter: 30, now: start, unit: 0.5) == .finish, "30 s is past the 10 s deadline")
        #expect(p.after(status: 503, retryAfter: nil, now: start + .milliseconds(9_950), unit: 0.5) == .finish, "the jittered wait would end after the deadline")
        #expect(p.after(status: 429, retryAfter: .infinity, now: start, unit: 0.5) == .retry(after: .milliseconds(100)), "a non-finite Retry-After is ignored")
        #expect(p.after(status: 429, retryAfter: 1e300, now: start, unit: 0.5) == .finish, "a huge one is bounded, not a trap, and past the deadline")
    }

    @Test("a failed connection is retried; a timeout never is")
    func failures() {
        var p = policy()
        p.attemptStarted()
        #expect(p.after(failure: .upstreamFailed, now: start, unit: 0.5) == .retry(after: .milliseconds(100)))
        #expect(p.after(failure: .upstreamTimeout, now: start, unit: 0.5) == .finish)
        p.attemptStarted()
        p.attemptStarted()
        #expect(p.after(failure: .upstreamFailed, now: start, unit: 0.5) == .finish, "no attempts left")
    }

    @Test("a 401 to an OAuth token refreshes it once; the second 401 is final")
    func oauthRefreshOnce() {
        var p = policy(oauth: true, refreshable: true, previous: true)
        p.attemptStarted()
        #expect(p.after(status: 401, retryAfter: nil, now: start, unit: 0.5) == .refreshToken)
        p.attemptStarted()
        #expect(p.after(status: 401, retryAfter: nil, now: start, unit: 0.5) == .finish, "OAuth never falls back to previous credentials")
        var transient = policy(oauth: true, refreshable: false)
        transient.attemptStarted()
        #expect(transient.after(status: 401, retryAfter: nil, now: start, unit: 0.5) == .finish, "a test of an unsaved configuration stores no token")
    }

    @Test("a 401 or 403 during a rotation's overlap tries the previous credentials once")
    func previousCredentialsOnce() {
        var p = policy(previous: true)
        p.attemptStarted()
        #expect(p.after(status: 403, retryAfter: nil, now: start, unit: 0.5) == .previousCredentials)
        p.attemptStarted()
        #expect(p.after(status: 401, retryAfter: nil, now: start, unit: 0.5) == .finish)
        var none = policy(previous: false)
        none.attemptStarted()
        #expect(none.after(status: 401, retryAfter: nil, now: start, unit: 0.5) == .finish)
    }

    @Test("Retry-After and rate-limit reset headers are bounded: inf, NaN and 1e300 never trap or hold forever")
    func holdOffBounded() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(RateLimiter.retryAfterSeconds("inf", now: now) == nil)
        #expect(RateLimiter.retryAfterSeconds("nan", now: now) == nil)
        #expect(RateLimiter.retryAfterSeconds("-5", now: now) == nil)
        #expect(RateLimiter.retryAfterSeconds("1e300", now: now) == RateLimiter.maxHoldOff)
        #expect(RateLimiter.retryAfterSeconds("120", now: now) == 120)
        #expect(RateLimiter.holdOff(status: 429, headers: [("Retry-After", "1e300")], now: now) == now.addingTimeInterval(RateLimiter.maxHoldOff))
        #expect(RateLimiter.holdOff(status: 429, headers: [("Retry-After", "inf")], now: now) == now.addingTimeInterval(1), "unreadable: the 429 default")
        #expect(RateLimiter.holdOff(status: 200, headers: [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "inf")], now: now) == nil)
        #expect(RateLimiter.holdOff(status: 200, headers: [("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "1e300")], now: now) == now.addingTimeInterval(RateLimiter.maxHoldOff))
        let limiter = RateLimiter()
        let id = UUID()
        limiter.block(integrationID: id, until: now.addingTimeInterval(RateLimiter.maxHoldOff))
        let wait = limiter.acquire(integrationID: id, endpoint: "/", limits: RateLimits(.null), now: now)
        #expect(wait == RateLimiter.maxHoldOff)
    }

    func integration(status: IntegrationStatus = .active, config: JSONValue = [:], authMethod: AuthMethod = .apiKey) -> OutboundIntegration {
        OutboundIntegration(
            id: UUID(), organizationID: UUID(), name: "crm", baseURL: "https://api.example.com/v2", authMethod: authMethod, credentials: ["apiKey": "k"],
            config: config, rateLimits: .null, status: status
        )
    }

    func plan(_ call: GatewayCall, _ integration: OutboundIntegration, transient: Bool = false) throws(PortalError) -> CallPlan {
        try CallPlan.make(call, for: integration, maxRequestBytes: 16, defaultTimeout: .seconds(30), transient: transient)
    }

    @Test("the plan joins the URL, masks identifiers in the template, drops hop-by-hop headers and marks idempotence")
    func planLayout() throws {
        let call = GatewayCall(method: "GET", endpoint: "/users/12345?active=1", headers: [("Connection", "close"), ("Accept", "application/json")], body: [], timeoutMs: 2_000)
        let p = try plan(call, integration(config: ["cache": ["ttlSeconds": 60, "endpoints": ["/users/{id}"]]]))
        #expect(p.url.absoluteString == "https://api.example.com/v2/users/12345?active=1")
        #expect(p.template == "/users/{id}")
        #expect(p.headers.map(\.name) == ["Accept"])
        #expect(p.idempotent && p.cacheable && !p.usesOAuth)
        #expect(p.timeout == .seconds(2))
        #expect(p.requestDigest == nil)
        #expect(try plan(call, integration(config: ["cache": ["ttlSeconds": 60, "endpoints": ["/users/{id}"]]]), transient: true).cacheable == false, "a test is never cached")
    }

    @Test("the plan refuses: an inactive integration, an unknown method, a body too large, a path leaving the base, a path not allowed")
    func planRefusals() {
        let get = GatewayCall(method: "GET", endpoint: "/users", headers: [], body: [])
        #expect(throws: PortalError.self) { try plan(get, integration(status: .inactive)) }
        #expect((try? plan(GatewayCall(method: "TRACE", endpoint: "/", headers: [], body: []), integration())) == nil)
        let big = GatewayCall(method: "POST", endpoint: "/users", headers: [], body: Array(repeating: 0x41, count: 17))
        do { _ = try plan(big, integration()); Issue.record("a 17-byte body passed a 16-byte limit") } catch { #expect(error.code == .payloadTooLarge) }
        for endpoint in ["https://evil.example/", "/users/../admin", "//evil.example/x"] {
            #expect((try? plan(GatewayCall(method: "GET", endpoint: endpoint, headers: [], body: []), integration())) == nil, "\(endpoint)")
        }
        do {
            _ = try plan(get, integration(config: ["allowedPaths": ["/contacts"]]))
            Issue.record("a path outside allowedPaths passed")
        } catch { #expect(error.code == .refused) }
    }
}
