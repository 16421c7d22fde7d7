import AsyncHTTPClient
import Foundation
import Logging
import Monitoring
import NIOCore
import NIOHTTP1
import PortalCore
import PortalTestSupport
import Storage

/// Issue 20's console figures: each page's time (as a client on loopback sees it, one request at a time,
/// median and p99 of `samples`) against the JSON API calls that feed the same page (made in turn, times
/// added), in the same run, on a
/// server with 1,000 integrations and a busy hour of metrics; and each page's weight (HTML, CSS and JS).
/// Targets: each page within 2× its API call, and under 100 KB.
struct ConsoleBenchmark {
    let portal: String
    var samples = 200

    func run(report: Report) async throws {
        print("\n== Console: server time per page vs the API call that feeds it (1,000 integrations, a busy hour of metrics), page weight")
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("portal-bench-console-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let port = try NanoIDP.freePort()
        let database = "sqlite://\(work.path)/portal.sqlite"
        setenv("PORTAL_MAX_INTEGRATIONS", "1000", 1)
        defer { unsetenv("PORTAL_MAX_INTEGRATIONS") }
        let pid = try ChildProcess.spawn(portal, [
            "serve", "--port", String(port), "--database", database, "--master-key-file", try benchKeyFile(work), "--log-level", "error",
        ], output: work.appendingPathComponent("portal.log").path)
        defer { ChildProcess.stop(pid) }
        let base = "http://127.0.0.1:\(port)"
        guard let curl = which("curl") else { throw BenchError.failed("curl is needed") }
        try await Wrk.waitUntilUp(curl, "\(base)/healthz")
        let token = try runChecked([portal, "token", "create", "--org", "default", "--role", "admin", "--owner", "bench", "--database", database])
            .output.split(separator: "\n").last.map(String.init) ?? ""
        // Redirects are answers here (the sign-in's 303 carries the cookie), not something to follow.
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        do {
            try await measure(client, base: base, token: token, database: database, report: report)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    private func measure(_ client: HTTPClient, base: String, token: String, database: String, report: Report) async throws {
        let auth = "Bearer \(token)"

        // 1,000 integrations.
        var ids: [String] = []
        for i in 0..<1000 {
            let body = #"{"name":"Integration \#(i)","type":"\#(["analytics", "enterprise", "communication", "security"][i % 4])","baseUrl":"https://api\#(i).example.com","authMethod":"api_key","credentials":{"apiKey":"bench-key-0123456789"}}"#
            let answer = try await send(client, "POST", "\(base)/portal/integrations", headers: [("Authorization", auth), ("Content-Type", "application/json")], body: body)
            guard answer.status == 201, let id = try JSONValue.parse(answer.body).objectValue?["id"]?.stringValue else {
                throw BenchError.failed("creating integration \(i): \(answer.status)")
            }
            ids.append(id)
        }
        // A busy hour: every integration called every minute, written as the server's own rollups.
        try await Database.withDatabase(url: database, logger: Logger(label: "bench")) { db in
            guard let org = try await db.read({ try await OrganizationStore($0).find(slug: "default") }) else { throw BenchError.failed("no organization") }
            let clock = ManualWallClock(Date().addingTimeInterval(-3600))
            let collector = MetricsCollector(clock: clock)
            for minute in 0..<60 {
                for (i, text) in ids.enumerated() {
                    guard let id = UUID(uuidString: text) else { continue }
                    for k in 0..<5 {
                        collector.observe(.call(.init(
                            organizationID: org.id, integrationID: id, endpoint: "/v1/x", outcome: k == 4 ? "server_error" : "success", category: k == 4 ? "server" : nil,
                            durationMicros: Int64(1_000 * (1 + (i * 7 + k * 13 + minute) % 300)), at: clock.now()
                        )))
                    }
                }
                clock.advance(by: 60)
            }
            try await IntegrationMonitor(collector: collector, database: db, clock: clock, logger: Logger(label: "bench")).flush(through: Int64.max / 2)
        }

        // A console session.
        let signIn = try await send(client, "POST", "\(base)/console/sign-in", headers: [("Content-Type", "application/x-www-form-urlencoded")], body: "token=\(token)")
        guard signIn.status == 303, let cookie = signIn.headers.first(where: { $0.name.lowercased() == "set-cookie" })?.value.split(separator: ";").first.map(String.init) else {
            throw BenchError.failed("console sign-in: \(signIn.status)")
        }
        let first = ids[0]
        _ = try await send(client, "POST", "\(base)/portal/reports", headers: [("Authorization", auth), ("Content-Type", "application/json")], body: #"{"kind":"soc2","from":"2026-01-01","to":"2026-01-31"}"#)
        // Each page against the API calls it makes (the same, in turn): what the console adds is the rest.
        let firstFifty = try JSONValue.parse(try await send(client, "GET", "\(base)/portal/integrations?limit=50", headers: [("Authorization", auth)], body: nil).body)
            .objectValue?["items"]?.arrayValue?.compactMap { $0.objectValue?["id"]?.stringValue } ?? []
        let today = String(Timestamp.rfc3339(Date()).prefix(10))
        let monthAgo = String(Timestamp.rfc3339(Date().addingTimeInterval(-29 * 86_400)).prefix(10))
        let pages: [(name: String, page: String, api: [String])] = [
            ("integrations (50 of 1,000)", "/console/integrations", ["/portal/integrations?limit=50", "/portal/metrics/summary?window=1h&ids=\(firstFifty.joined(separator: ","))"]),
            ("an integration, 1 h", "/console/integrations/\(first)", [
                "/portal/integrations/\(first)", "/portal/integrations/\(first)/metrics?window=1h", "/portal/integrations/\(first)/webhooks",
                "/portal/integrations/\(first)/metrics/series?window=1h",
            ]),
            ("an integration, 7 d", "/console/integrations/\(first)?window=7d", [
                "/portal/integrations/\(first)", "/portal/integrations/\(first)/metrics?window=7d", "/portal/integrations/\(first)/webhooks",
                "/portal/integrations/\(first)/metrics/series?window=7d",
            ]),
            ("webhooks", "/console/integrations/\(first)/webhooks", [
                "/portal/integrations/\(first)", "/portal/integrations/\(first)/webhooks", "/portal/integrations/\(first)/webhooks/logs?limit=50",
            ]),
            ("alerts", "/console/alerts", ["/portal/alerts", "/portal/alerts/receivers", "/portal/alerts/notifications?limit=20"]),
            ("ledger, an entry's proof", "/console/ledger?seq=500", ["/ledger/default/checkpoint", "/ledger/default/keys", "/ledger/default/entries/500"]),
            ("tokens", "/console/tokens", ["/portal/tokens?limit=200"]),
            ("compliance", "/console/compliance", ["/portal/reports?limit=50", "/portal/retention"]),
            ("record of processing (100 of 1,000)", "/console/compliance/register", ["/portal/compliance/processing-register?from=\(monthAgo)&to=\(today)"]),
        ]
        let css = try await send(client, "GET", "\(base)/console/static/console.css", headers: [], body: nil).body.count
        var scripts: [String: Int] = [:]
        for name in ["console.js", "proof.js"] { scripts[name] = try await send(client, "GET", "\(base)/console/static/\(name)", headers: [], body: nil).body.count }
        for (name, page, api) in pages {
            var pageTimes: [Double] = []
            var apiTimes: [Double] = []
            var html = 0
            // Alternating, after a warm-up of each.
            for i in 0..<(samples + 5) {
                let (p, pt) = try await timed { try await send(client, "GET", base + page, headers: [("Cookie", cookie)], body: nil) }
                var at = 0.0
                for call in api {
                    let (a, t) = try await timed { try await send(client, "GET", base + call, headers: [("Authorization", auth)], body: nil) }
                    guard a.status == 200 else { throw BenchError.failed("\(name): API \(call) answered \(a.status)") }
                    at += t
                }
                guard p.status == 200 else { throw BenchError.failed("\(name): page \(p.status)") }
                html = p.body.count
                if i >= 5 {
                    pageTimes.append(pt * 1000)
                    apiTimes.append(at * 1000)
                }
            }
            let pq = Percentiles(pageTimes)
            let aq = Percentiles(apiTimes)
            let usesProof = page.hasPrefix("/console/ledger")
            let weight = html + css + (scripts["console.js"] ?? 0) + (usesProof ? scripts["proof.js"] ?? 0 : 0)
            report.add(
                "console page: \(name)", String(format: "median %.2f ms, p99 %.2f ms; %d KB (HTML %d B)", pq.p50, pq.p99, (weight + 1023) / 1024, html),
                baseline: String(format: "its %d API call%@: median %.2f ms, p99 %.2f ms", api.count, api.count == 1 ? "" : "s", aq.p50, aq.p99),
                ratio: pq.p50 / aq.p50, target: "≤ 2× its API calls, < 100 KB", met: pq.p50 <= 2 * aq.p50 && weight < 100 * 1024
            )
        }
    }

    private func send(_ client: HTTPClient, _ method: String, _ url: String, headers: [(String, String)], body: String?) async throws -> (status: Int, body: [UInt8], headers: [(name: String, value: String)]) {
        var request = HTTPClientRequest(url: url)
        request.method = .RAW(value: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await client.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return (Int(response.status.code), Array(bytes.readableBytesView), response.headers.map { ($0.name, $0.value) })
    }
}
