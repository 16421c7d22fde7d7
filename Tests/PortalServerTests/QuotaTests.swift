import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalTestSupport
import Testing

/// Per-organization quotas (issue 16, item 19): what a request makes the server store or compute is bounded,
/// and a full quota is a clear answer that says which bound.
@Suite("Quotas")
struct QuotaTests {
    @Test("integrations: the one past the bound is a 422 naming PORTAL_MAX_INTEGRATIONS; deleting one makes room; other organizations are not counted", arguments: Backend.available)
    func integrations(backend: Backend) async throws {
        try await withPortal(backend, configure: { $0.quotas.integrations = 3 }) { portal in
            var ids: [String] = []
            for _ in 0..<3 { ids.append(try await portal.createIntegration()) }
            let refused = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: BadInputTests.valid)
            let problem = expectProblem(refused, .unprocessableContent)
            #expect(problem["detail"]?.stringValue?.contains("PORTAL_MAX_INTEGRATIONS") == true, "\(problem)")
            // Another organization has its own bound.
            let other = try await portal.call(.post, "/portal/integrations", token: portal.token("globex.admin"), json: BadInputTests.valid)
            #expect(other.status == .created, "\(other.body.string)")
            #expect(try await portal.call(.delete, "/portal/integrations/\(ids[0])", token: portal.token("acme.admin")).status == .noContent)
            let after = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: BadInputTests.valid)
            #expect(after.status == .created, "\(after.body.string)")
        }
    }

    @Test("tokens: a default lifetime with opt-out, and a bound on the tokens in force", arguments: Backend.available)
    func tokens(backend: Backend) async throws {
        try await withPortal(backend, configure: { $0.quotas.tokens = 12 }) { portal in
            let admin = portal.token("acme.admin")
            let before = Date()
            let defaulted = try await portal.call(.post, "/portal/tokens", token: admin, json: #"{"role":"auditor","owner":"default-lifetime"}"#)
            #expect(defaulted.status == .created, "\(defaulted.body.string)")
            let expires = try #require(defaulted.json.objectValue?["expiresAt"]?.stringValue.flatMap(Timestamp.parse))
            #expect(abs(expires.timeIntervalSince(before) - 90 * 86_400) < 3_600, "90 days by default: \(expires)")
            let never = try await portal.call(.post, "/portal/tokens", token: admin, json: #"{"role":"auditor","owner":"no-expiry","expiresIn":"never"}"#)
            #expect(never.status == .created && never.json.objectValue?["expiresAt"] == nil, "\(never.body.string)")
            // A lifetime past ten years is a 422 naming the field (84,382,554 weeks once crashed the server).
            let huge = try await portal.call(.post, "/portal/tokens", token: admin, json: #"{"role":"auditor","owner":"far","expiresIn":"84382554w"}"#)
            let hugeProblem = expectProblem(huge, .unprocessableContent)
            #expect("\(hugeProblem)".contains("/expiresIn"), "\(hugeProblem)")
            // Fill up to the bound (the seeded tokens count; revoked and expired ones do not).
            var refusal: TestResponse?
            for i in 0..<20 {
                let r = try await portal.call(.post, "/portal/tokens", token: admin, json: #"{"role":"auditor","owner":"fill-\#(i)"}"#)
                if r.status != .created { refusal = r; break }
            }
            let problem = expectProblem(try #require(refusal), .unprocessableContent)
            #expect(problem["detail"]?.stringValue?.contains("PORTAL_MAX_TOKENS") == true, "\(problem)")
        }
    }

    @Test("report builds: more than the bound queued or running is a 429 with Retry-After", arguments: [Backend.sqlite])
    func reports(backend: Backend) async throws {
        try await withPortal(backend, configure: { $0.quotas.openReports = 1 }) { portal in
            let body = #"{"kind":"soc2","from":"2026-01-01","to":"2026-01-31"}"#
            let answers = try await withThrowingTaskGroup(of: TestResponse.self) { group in
                for _ in 0..<6 { group.addTask { try await portal.call(.post, "/portal/reports", token: portal.token("acme.compliance"), json: body) } }
                return try await group.reduce(into: [TestResponse]()) { $0.append($1) }
            }
            #expect(answers.allSatisfy { $0.status == .accepted || $0.status == .tooManyRequests }, "\(answers.map(\.status))")
            let refused = answers.filter { $0.status == .tooManyRequests }
            #expect(!refused.isEmpty, "six at once with room for one: some are refused")
            for answer in refused {
                #expect(answer.headers[.retryAfter] == "30")
                #expect(answer.json.objectValue?["detail"]?.stringValue?.contains("PORTAL_MAX_OPEN_REPORTS") == true)
            }
        }
    }
}
