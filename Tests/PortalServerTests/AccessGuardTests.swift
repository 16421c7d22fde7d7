import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import Testing

/// Allow-lists and rate limits (issue 21): the organization's API allow-list (X-Forwarded-For believed only
/// from trusted proxies), webhook endpoints' source allow-lists, and per-token and per-organization API rates.
@Suite("Allow-lists and API rate limits")
struct AccessGuardTests {
    static let forwarded = HTTPField.Name("X-Forwarded-For")!

    @Test("the organization's allow-list: a blocked source is 403 and counted (aggregated); the list cannot lock its author out; X-Forwarded-For only from a trusted proxy", arguments: Backend.available)
    func apiAllowList(backend: Backend) async throws {
        // A standing clock: every refusal falls in one minute, however slowly a busy machine answers.
        try await withPortal(backend, clock: ManualWallClock(Date()), live: true, configure: { $0.trustedProxies = [IPNetwork("127.0.0.1")!] }) { portal in
            let admin = portal.token("acme.admin")
            let from = { (address: String) -> HTTPFields in [Self.forwarded: address] }
            // Leaving out one's own address is refused.
            let lockout = try await portal.call(.put, "/portal/policy", token: admin, json: #"{"apiAllowList":["203.0.113.0/24"]}"#, headers: from("198.51.100.7"))
            #expect("\(expectProblem(lockout, .unprocessableContent))".contains("198.51.100.7"))
            let bad = try await portal.call(.put, "/portal/policy", token: admin, json: #"{"apiAllowList":["10.0.0.0/33","x"]}"#, headers: from("198.51.100.7"))
            #expect("\(expectProblem(bad, .unprocessableContent))".contains("/apiAllowList/1"))
            let set = try await portal.call(
                .put, "/portal/policy", token: admin, json: #"{"apiAllowList":["198.51.100.0/24","2001:db8::/32"]}"#, headers: from("198.51.100.7")
            )
            #expect(set.status == .ok && set.json.objectValue?["apiAllowList"] == ["198.51.100.0/24", "2001:db8::/32"], "\(set.body.string)")

            // Allowed sources pass; another is refused, every time, with one ledger entry per minute and key.
            #expect(try await portal.call(.get, "/portal/whoami", token: admin, headers: from("198.51.100.9")).status == .ok)
            #expect(try await portal.call(.get, "/portal/whoami", token: admin, headers: from("2001:db8::5")).status == .ok)
            for _ in 0..<5 {
                let refused = try await portal.call(.get, "/portal/integrations", token: portal.token("acme.auditor"), headers: from("192.0.2.1"))
                #expect(expectProblem(refused, .forbidden)["detail"]?.stringValue?.contains("allow-list") == true)
            }
            // The address a client claims further left is not believed: the proxy appended the real one.
            let spoofed = try await portal.call(.get, "/portal/whoami", token: admin, headers: from("198.51.100.9, 192.0.2.1"))
            expectProblem(spoofed, .forbidden)
            // Another organization's tokens are not affected.
            #expect(try await portal.call(.get, "/portal/whoami", token: portal.token("globex.admin"), headers: from("192.0.2.1")).status == .ok)

            try await portal.services.authFailures.flush(force: true)
            let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database)
            let denied = entries.filter { $0.type == "access.denied" && $0.data.objectValue?["reason"] == "source_not_allowed" }
            let counts = denied.map { entry -> Int64 in if case .int(let n)? = entry.data.objectValue?["count"] { n } else { 1 } }
            #expect(counts.reduce(0, +) == 6 && denied.count < 6, "six refusals in fewer entries: \(denied.map(\.data))")
        }
    }

    @Test("without trusted proxies, X-Forwarded-For is ignored: the peer's own address is the source", arguments: [Backend.sqlite])
    func untrustedForwarding(backend: Backend) async throws {
        try await withPortal(backend, live: true, configure: { _ in }) { portal in
            let admin = portal.token("acme.admin")
            // Only 127.0.0.1 (the test's real peer) is allowed; a forged header naming it from elsewhere changes nothing.
            let forged: HTTPFields = [Self.forwarded: "192.0.2.1"]
            let set = try await portal.call(.put, "/portal/policy", token: admin, json: #"{"apiAllowList":["127.0.0.1"]}"#, headers: forged)
            #expect(set.status == .ok, "\(set.body.string)")
            let asked = try await portal.call(.get, "/portal/whoami", token: admin, headers: forged)
            #expect(asked.status == .ok, "\(asked.body.string)")
        }
    }

    @Test("a noisy token gets 429 with Retry-After while another token of the same organization does not; the organization's own rate holds them together", arguments: [Backend.sqlite])
    func rateLimits(backend: Backend) async throws {
        // The clock stands still: no bucket refills, however slowly a busy machine answers.
        let clock = ManualWallClock(Date())
        try await withPortal(backend, clock: clock, configure: { $0.apiTokenRate = 5; $0.apiOrganizationRate = 1_000 }) { portal in
            let noisy = portal.token("acme.operator"), quiet = portal.token("acme.auditor")
            var throttled: TestResponse?
            for _ in 0..<50 {
                let r = try await portal.call(.get, "/portal/whoami", token: noisy)
                if r.status == .tooManyRequests { throttled = r; break }
            }
            let refused = try #require(throttled, "the noisy token was never throttled")
            expectProblem(refused, .tooManyRequests)
            #expect(Int(refused.headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(try await portal.call(.get, "/portal/whoami", token: quiet).status == .ok)
            // A second later the noisy token has five again.
            clock.advance(by: 1.01)
            #expect(try await portal.call(.get, "/portal/whoami", token: noisy).status == .ok)

            // The organization's policy lowers the organization's rate: now every token of it shares 3 a second.
            #expect(try await portal.call(.put, "/portal/policy", token: portal.token("acme.admin"), json: #"{"apiRateLimits":{"perToken":1000,"perOrganization":3}}"#).status == .ok)
            var shared: TestResponse?
            for i in 0..<50 {
                let r = try await portal.call(.get, "/portal/whoami", token: i % 2 == 0 ? quiet : portal.token("acme.compliance"))
                if r.status == .tooManyRequests { shared = r; break }
            }
            #expect(shared.map { $0.body.string.contains("organization") } == true, "\(shared?.body.string ?? "never throttled")")
            // Globex has its own.
            #expect(try await portal.call(.get, "/portal/whoami", token: portal.token("globex.auditor")).status == .ok)
            let badRates = try await portal.call(.put, "/portal/policy", token: portal.token("globex.admin"), json: #"{"apiRateLimits":{"perToken":0,"perMinute":5}}"#)
            let problem = "\(expectProblem(badRates, .unprocessableContent))"
            #expect(problem.contains("/apiRateLimits/perToken") && problem.contains("/apiRateLimits/perMinute"), "\(problem)")
        }
    }

    @Test("a webhook endpoint's allow-list: a delivery from elsewhere is 403 and counted; from an allowed source it is verified as usual", arguments: Backend.available)
    func webhookSources(backend: Backend) async throws {
        try await withPortal(backend, clock: ManualWallClock(Date()), live: true, configure: { $0.trustedProxies = [IPNetwork("127.0.0.1")!] }) { portal in
            let admin = portal.token("acme.admin")
            let integration = try await portal.createIntegration()
            let bad = try await portal.call(.post, "/portal/integrations/\(integration)/webhooks", token: admin, json: """
                {"endpoint":"/webhooks/guarded","secret":"guarded-secret-1","scheme":"hmac","allowedSources":["nope"]}
                """)
            #expect("\(expectProblem(bad, .unprocessableContent))".contains("/allowedSources/0"))
            let created = try await portal.call(.post, "/portal/integrations/\(integration)/webhooks", token: admin, json: """
                {"endpoint":"/webhooks/guarded","secret":"guarded-secret-1","scheme":"hmac","signatureHeader":"X-Signature","allowedSources":["203.0.113.0/24"]}
                """)
            #expect(created.status == .created, "\(created.body.string)")
            let body = #"{"type":"user.updated","id":"e-1"}"#
            let signature = WebhookRouteTests.sign(body, "guarded-secret-1")
            for _ in 0..<3 {
                let blocked = try await portal.call(.post, "/webhooks/acme/guarded", token: nil, json: body, headers: [
                    Self.forwarded: "192.0.2.50", HTTPField.Name("X-Signature")!: signature,
                ])
                #expect(blocked.status == .forbidden, "\(blocked.body.string)")
            }
            let allowed = try await portal.call(.post, "/webhooks/acme/guarded", token: nil, json: body, headers: [
                Self.forwarded: "203.0.113.20", HTTPField.Name("X-Signature")!: signature,
            ])
            #expect(allowed.status == .ok, "\(allowed.body.string)")
            try await portal.services.authFailures.flush(force: true)
            let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database)
            let rejected = entries.filter { $0.type == "webhook.rejected" && $0.data.objectValue?["reason"] == "source_not_allowed" }
            let total = rejected.map { entry -> Int64 in if case .int(let n)? = entry.data.objectValue?["count"] { n } else { 1 } }.reduce(0, +)
            #expect(total == 3 && rejected.count < 3, "\(rejected.map(\.data))")
        }
    }
}
