import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import Monitoring
import PortalCore
import PortalServer
import PortalTestSupport
import SQLKit
import Storage
import Synchronization
import Testing

/// Monitoring over HTTP: metric windows, both Prometheus endpoints (checked by promtool), organization
/// isolation, and the end-to-end alert: a failing upstream, the error-rate alert firing, a local receiver
/// getting Alertmanager's payload, then the resolution.
@Suite("Monitoring over HTTP")
struct MonitoringRouteTests {
    /// A local receiver: every POST is kept with its headers.
    final class Receiver: Sendable {
        let received = Mutex<[(path: String, headers: [String: String], body: JSONValue)]>([])

        func deliveries(_ path: String) -> [(headers: [String: String], body: JSONValue)] {
            received.withLock { $0.filter { $0.path == path }.map { ($0.headers, $0.body) } }
        }

        /// Statuses to answer in turn (then 200).
        let script = Mutex<[Int]>([])

        static func with<T: Sendable>(status: Int = 200, _ body: @Sendable (Receiver, Int) async throws -> T) async throws -> T {
            let receiver = Receiver()
            let router = Router()
            router.post("/**") { request, _ -> Response in
                let bytes = try await request.body.collect(upTo: 1 << 20)
                var headers: [String: String] = [:]
                for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
                let json = (try? JSONValue.parse(Data(bytes.readableBytesView))) ?? .string(String(buffer: bytes))
                receiver.received.withLock { $0.append((request.uri.path, headers, json)) }
                let scripted = receiver.script.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                return Response(status: .init(code: scripted ?? status))
            }
            return try await LoopbackServer.run(router, label: "receiver") { port in try await body(receiver, port) }
        }
    }

    func integration(_ portal: Portal, name: String = "CRM") async throws -> String {
        let response = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.operator"), json: """
            {"name":"\(name)","type":"enterprise","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key",
             "credentials":{"apiKey":"k-monitor-123456"},"rateLimits":{"requestsPerSecond":1000,"burst":1000},"config":{"retry":{"maxAttempts":1}}}
            """)
        #expect(response.status == .created, "\(response.body.string)")
        return try #require(response.json.objectValue?["id"]?.stringValue)
    }

    func calls(_ portal: Portal, _ id: String, status: Int, count: Int) async throws {
        for _ in 0..<count {
            let r = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: portal.token("acme.operator"), json: #"{"method":"GET","endpoint":"/status/\#(status)"}"#)
            #expect(r.status == .ok, "\(r.body.string)")
        }
    }

    @Test("a failing upstream fires the error-rate alert, the receiver gets Alertmanager's payload, and the resolution follows", arguments: Backend.available)
    func errorRateAlertEndToEnd(backend: Backend) async throws {
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_800_000_000))
        let rules = FileManager.default.temporaryDirectory.appendingPathComponent("rules-\(UUID().uuidString).yml")
        var text = try String(contentsOfFile: "Sources/Monitoring/Resources/alert-rules.yml", encoding: .utf8)
        text = text.replacingOccurrences(of: "evaluationInterval: 30s", with: "evaluationInterval: 1h")
        try text.write(to: rules, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: rules) }
        try await Receiver.with { receiver, port in
            try await withPortal(backend, clock: clock, configure: { $0.alertRulesPath = rules.path }) { portal in
                let secret = "whsec_" + Data((0..<24).map { UInt8($0) }).base64EncodedString()
                let created = try await portal.call(.post, "/portal/alerts/receivers", token: portal.token("acme.operator"), json: """
                    {"name":"oncall","kind":"webhook","url":"http://127.0.0.1:\(port)/hook","secret":"\(secret)"}
                    """)
                #expect(created.status == .created, "\(created.body.string)")
                #expect(created.json.objectValue?["signed"] == true && !created.body.string.contains(secret) && !created.body.string.contains("/hook"))
                let slack = try await portal.call(.post, "/portal/alerts/receivers", token: portal.token("acme.operator"), json: """
                    {"name":"chat","kind":"slack","url":"http://127.0.0.1:\(port)/slack"}
                    """)
                #expect(slack.status == .created)
                // Roles: an auditor reads alerts but cannot add a receiver.
                let denied = try await portal.call(.post, "/portal/alerts/receivers", token: portal.token("acme.auditor"), json: #"{"name":"x","kind":"slack","url":"https://hooks.example.com/x"}"#)
                #expect(denied.status == .forbidden)

                let id = try await integration(portal)
                let evaluator = portal.services.alertEvaluator
                // 30 calls, all failing: pending (for: 2m) first.
                try await calls(portal, id, status: 500, count: 30)
                var step = try #require(try await evaluator.evaluateAll()["acme"])
                #expect(step.instances.filter { $0.rule == "IntegrationErrorRateHigh" }.map(\.state) == [.pending])
                // 30 failures in a row fire IntegrationFailing at once (for: 0s); the error rate waits.
                #expect(step.fired.map(\.rule) == ["IntegrationFailing"])
                #expect(receiver.deliveries("/hook").map { $0.body.objectValue?["groupLabels"]?.objectValue?["alertname"] } == ["IntegrationFailing"])
                // Two minutes later, still failing: firing, and both receivers are told.
                clock.advance(by: 125)
                try await calls(portal, id, status: 500, count: 5)
                step = try #require(try await evaluator.evaluateAll()["acme"])
                #expect(step.fired.map(\.rule).contains("IntegrationErrorRateHigh"))
                let firing = try #require(receiver.deliveries("/hook").first { $0.body.objectValue?["groupLabels"]?.objectValue?["alertname"] == "IntegrationErrorRateHigh" })
                let payload = try #require(firing.body.objectValue)
                #expect(payload["version"] == "4" && payload["status"] == "firing" && payload["receiver"] == "oncall")
                #expect(payload["truncatedAlerts"] == 0 && payload["externalURL"]?.stringValue?.hasPrefix("http") == true)
                #expect(payload["groupKey"]?.stringValue?.contains("IntegrationErrorRateHigh") == true)
                let alert = try #require(payload["alerts"]?.arrayValue?.first?.objectValue)
                #expect(alert["status"] == "firing" && alert["endsAt"] == "0001-01-01T00:00:00Z")
                #expect(alert["labels"]?.objectValue?["integration"]?.stringValue == id && alert["labels"]?.objectValue?["severity"] == "warning")
                #expect(alert["annotations"]?.objectValue?["summary"]?.stringValue?.contains("CRM") == true)
                #expect(alert["fingerprint"]?.stringValue?.count == 16 && alert["generatorURL"]?.stringValue?.contains(id) == true)
                #expect(alert["startsAt"]?.stringValue.flatMap(Timestamp.parse) != nil)
                // The Standard Webhooks signature, recomputed here from the spec.
                let msgID = try #require(firing.headers["webhook-id"])
                let stamp = try #require(firing.headers["webhook-timestamp"])
                let key = SymmetricKey(data: Data(base64Encoded: String(secret.dropFirst(6)))!)
                let bytes = Array(firing.body.sortedText.utf8)
                let mac = HMAC<SHA256>.authenticationCode(for: Array("\(msgID).\(stamp).".utf8) + bytes, using: key)
                #expect(firing.headers["webhook-signature"] == "v1," + Data(mac).base64EncodedString())
                let slackMessage = try #require(receiver.deliveries("/slack").first?.body.objectValue)
                #expect(slackMessage["text"]?.stringValue?.contains("FIRING") == true && (slackMessage["blocks"]?.arrayValue?.count ?? 0) >= 2)
                #expect(firing.headers["content-type"] == "application/json")

                // GET /portal/alerts shows it firing; the ledger has alert.firing.
                let listed = try await portal.call(.get, "/portal/alerts", token: portal.token("acme.auditor"))
                #expect(listed.json.objectValue?["active"]?.arrayValue?.contains { $0.objectValue?["rule"] == "IntegrationErrorRateHigh" && $0.objectValue?["state"] == "firing" } == true)

                // The upstream recovers: 120 successes bring the 5-minute ratio under 25% (35 of 155). The alert
                // keeps firing for 2 minutes after the condition last held (keepFiringFor), then resolves, and
                // the resolution is sent; IntegrationFailing resolved at the first success.
                clock.advance(by: 30)
                try await calls(portal, id, status: 200, count: 120)
                step = try #require(try await evaluator.evaluateAll()["acme"])
                #expect(step.instances.first { $0.rule == "IntegrationErrorRateHigh" }?.state == .firing)
                #expect(step.resolved.map(\.rule) == ["IntegrationFailing"])
                clock.advance(by: 130)
                step = try #require(try await evaluator.evaluateAll()["acme"])
                #expect(step.resolved.map(\.rule) == ["IntegrationErrorRateHigh"])
                let resolved = receiver.deliveries("/hook").filter {
                    $0.body.objectValue?["status"] == "resolved" && $0.body.objectValue?["groupLabels"]?.objectValue?["alertname"] == "IntegrationErrorRateHigh"
                }
                #expect(resolved.count == 1)
                let ended = resolved.first?.body.objectValue?["alerts"]?.arrayValue?.first?.objectValue
                #expect(ended?["status"] == "resolved" && ended?["endsAt"]?.stringValue.flatMap(Timestamp.parse) == clock.now())

                let types = Set(try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database).map(\.type))
                #expect(types.contains("alert.firing") && types.contains("alert.resolved") && types.contains("alert.receiver_added"))
                let log = try await portal.call(.get, "/portal/alerts/notifications", token: portal.token("acme.admin"))
                #expect((log.json.objectValue?["items"]?.arrayValue ?? []).allSatisfy { $0.objectValue?["delivered"] == true })
                #expect((log.json.objectValue?["items"]?.arrayValue?.count ?? 0) >= 4)
                let recent = try await portal.call(.get, "/portal/alerts", token: portal.token("acme.auditor"))
                #expect(recent.json.objectValue?["recent"]?.arrayValue?.contains { $0.objectValue?["rule"] == "IntegrationErrorRateHigh" } == true)
                // Globex sees none of it.
                let other = try await portal.call(.get, "/portal/alerts", token: portal.token("globex.admin"))
                #expect(other.json.objectValue?["active"]?.arrayValue?.isEmpty == true && other.json.objectValue?["recent"]?.arrayValue?.isEmpty == true)
            }
        }
    }

    @Test("a notification is retried on 5xx, not on 4xx, never sent to a refused destination, and every outcome is logged")
    func notifierRetries() async throws {
        try await Receiver.with { receiver, port in
            try await withPortal(.sqlite) { portal in
                let services = portal.services
                let notifier = AlertNotifier(
                    gateway: services.gateway, database: services.database, clock: services.clock, ids: services.ids, logger: quietLogger,
                    externalURL: "https://portal.example.test", sleep: { _ in }
                )
                let labels = ["alertname": "X", "organization": "acme"]
                let alert = AlertInstance(fingerprint: AlertEngine.fingerprint(labels), rule: "X", labels: labels, annotations: [:], state: .firing, value: 1, activeAt: Date(), firedAt: Date(), lastSeenAt: Date())
                let group = AlertGroup(status: "firing", alerts: [alert], organizationSlug: "acme")
                func receiverAt(_ url: String) -> AlertReceiver {
                    AlertReceiver(id: UUID(), organizationID: portal.acme.id, name: "r", kind: .webhook, url: url)
                }
                receiver.script.withLock { $0 = [503, 502] }
                let retried = await notifier.send(group, to: receiverAt("http://127.0.0.1:\(port)/flaky"))
                #expect(retried.delivered && retried.attempts == 3 && retried.httpStatus == 200)
                #expect(receiver.deliveries("/flaky").count == 3)
                receiver.script.withLock { $0 = [400] }
                let rejected = await notifier.send(group, to: receiverAt("http://127.0.0.1:\(port)/bad"))
                #expect(!rejected.delivered && rejected.attempts == 1 && rejected.httpStatus == 400 && rejected.error == "HTTP 400")
                let refused = await notifier.send(group, to: receiverAt("https://10.1.2.3/hook"))
                #expect(!refused.delivered && refused.attempts == 1 && refused.httpStatus == nil && refused.error?.contains("internal") == true, "\(String(describing: refused.error))")
                let log = try await portal.services.database.read { db in try await AlertStore(db).notifications(organizationID: portal.acme.id, limit: 10) }
                #expect(log.count == 3 && log.filter(\.delivered).count == 1)
            }
        }
    }

    @Test("metric windows: counts by outcome and category, p95, health; the summary; a bad window is a 422", arguments: Backend.available)
    func metricWindows(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let id = try await integration(portal)
            try await calls(portal, id, status: 200, count: 8)
            try await calls(portal, id, status: 404, count: 2)
            let r = try await portal.call(.get, "/portal/integrations/\(id)/metrics?window=5m", token: portal.token("acme.auditor"))
            #expect(r.status == .ok, "\(r.body.string)")
            let m = r.json.objectValue ?? [:]
            #expect(m["totalRequests"] == 10 && m["successfulRequests"] == 8 && m["failedRequests"] == 2)
            if case .double(let rate)? = m["errorRate"] { #expect(abs(rate - 0.2) < 1e-9) } else { Issue.record("errorRate: \(String(describing: m["errorRate"]))") }
            #expect(m["window"] == "5m")
            #expect(m["byOutcome"]?.objectValue?["client_error"] == 2 && m["byCategory"]?.objectValue?["business"] == 2)
            if case .double(let p95)? = m["p95ResponseTime"] { #expect(p95 > 0) } else { Issue.record("p95ResponseTime: \(String(describing: m["p95ResponseTime"]))") }
            #expect(m["p50ResponseTime"] != nil && m["p50ResponseTime"] != .null && m["p99ResponseTime"] != .null)
            #expect(m["lastError"]?.objectValue?["endpoint"] == "/status/{id}")
            #expect(m["health"] == "degraded", "20% of the last 5 minutes' calls failed")
            let status = try await portal.call(.get, "/portal/integrations/\(id)/status", token: portal.token("acme.auditor"))
            #expect(status.json.objectValue?["health"] == "degraded" && status.json.objectValue?["consecutiveFailures"] == 2, "\(status.body.string)")
            // Persisted minutes answer the same after a flush (what a restart would read back).
            try await portal.services.monitor.flush(through: Int64(Date().timeIntervalSince1970 / 60) + 2)
            let again = try await portal.call(.get, "/portal/integrations/\(id)/metrics?window=24h", token: portal.token("acme.auditor"))
            #expect(again.json.objectValue?["totalRequests"] == 10)
            let summary = try await portal.call(.get, "/portal/metrics/summary?window=1h", token: portal.token("acme.compliance"))
            #expect(summary.json.objectValue?["totals"]?.objectValue?["totalRequests"] == 10)
            #expect(summary.json.objectValue?["integrations"]?.arrayValue?.first?.objectValue?["name"] == "CRM")
            // A page of a long list asks for its own integrations only.
            let other = try await integration(portal, name: "Other")
            let only = try await portal.call(.get, "/portal/metrics/summary?window=1h&ids=\(other)", token: portal.token("acme.auditor"))
            #expect(only.json.objectValue?["integrations"]?.arrayValue?.count == 1 && only.json.objectValue?["totals"]?.objectValue?["totalRequests"] == 0, "\(only.body.string)")
            let both = try await portal.call(.get, "/portal/metrics/summary?window=1h&ids=\(other),\(id)", token: portal.token("acme.auditor"))
            #expect(both.json.objectValue?["integrations"]?.arrayValue?.count == 2 && both.json.objectValue?["totals"]?.objectValue?["totalRequests"] == 10)
            // Each listed integration's calls per minute of the hour (the console's sparklines), from the same rows.
            let busy = (both.json.objectValue?["integrations"]?.arrayValue ?? []).compactMap(\.objectValue).first { $0["integrationId"]?.stringValue == id }
            let minutes = busy?["lastHour"]?.arrayValue ?? []
            let counted = minutes.reduce(Int64(0)) { sum, value in if case .int(let n) = value { sum + n } else { sum } }
            #expect(minutes.count == 60 && counted == 10, "\(minutes)")
            expectProblem(try await portal.call(.get, "/portal/metrics/summary?ids=not-an-id", token: portal.token("acme.auditor")), .unprocessableContent)
            let foreign = try await portal.call(.get, "/portal/metrics/summary?ids=\(id)", token: portal.token("globex.admin"))
            #expect(foreign.json.objectValue?["integrations"]?.arrayValue?.isEmpty == true, "another organization's ids select nothing")
            let bad = try await portal.call(.get, "/portal/integrations/\(id)/metrics?window=2d", token: portal.token("acme.auditor"))
            expectProblem(bad, .unprocessableContent)
            let elsewhere = try await portal.call(.get, "/portal/integrations/\(id)/metrics", token: portal.token("globex.admin"))
            expectProblem(elsewhere, .notFound)
        }
    }

    @Test("a metric series: every step present, the calls in their step before and after a flush, hours beyond an hour; 30d and other organizations refused", arguments: Backend.available)
    func metricSeries(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let id = try await integration(portal)
            try await calls(portal, id, status: 200, count: 5)
            try await calls(portal, id, status: 404, count: 1)
            func series(_ window: String) async throws -> (step: JSONValue?, points: [[String: JSONValue]]) {
                let r = try await portal.call(.get, "/portal/integrations/\(id)/metrics/series?window=\(window)", token: portal.token("acme.auditor"))
                #expect(r.status == .ok, "\(r.body.string)")
                return (r.json.objectValue?["stepSeconds"], (r.json.objectValue?["points"]?.arrayValue ?? []).compactMap(\.objectValue))
            }
            func totals(_ points: [[String: JSONValue]]) -> (Int64, Int64) {
                points.reduce((0, 0)) { sum, p in
                    guard case .int(let r)? = p["requests"], case .int(let e)? = p["errors"] else { return sum }
                    return (sum.0 + r, sum.1 + e)
                }
            }
            let hour = try await series("1h")
            #expect(hour.step == 60 && hour.points.count == 60)
            #expect(totals(hour.points) == (6, 1), "\(totals(hour.points))")
            #expect(hour.points.last?["p95"] != nil && hour.points.last?["p95"] != .null || hour.points.dropLast().last?["p95"] != .null)
            try await portal.services.monitor.flush(through: Int64(Date().timeIntervalSince1970 / 60) + 2)
            #expect(totals(try await series("1h").points) == (6, 1), "the same after the minutes are stored")
            let day = try await series("24h")
            #expect(day.step == 3600 && day.points.count == 24 && totals(day.points) == (6, 1))
            #expect(try await series("7d").points.count == 168)
            expectProblem(try await portal.call(.get, "/portal/integrations/\(id)/metrics/series?window=30d", token: portal.token("acme.auditor")), .unprocessableContent)
            expectProblem(try await portal.call(.get, "/portal/integrations/\(id)/metrics/series", token: portal.token("globex.admin")), .notFound)
        }
    }

    @Test("both Prometheus endpoints pass promtool; /metrics needs the metrics token; an organization sees only its series", arguments: Backend.available)
    func prometheusEndpoints(backend: Backend) async throws {
        let metricsToken = "test-metrics-token-\(UUID().uuidString)"
        try await withPortal(backend, configure: { $0.metricsToken = metricsToken }) { portal in
            let id = try await integration(portal)
            try await calls(portal, id, status: 200, count: 3)
            try await calls(portal, id, status: 503, count: 1)
            let globexIntegration = try await portal.call(.post, "/portal/integrations", token: portal.token("globex.admin"), json: """
                {"name":"Globex CRM","type":"enterprise","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-globex-123456"}}
                """)
            let globexID = try #require(globexIntegration.json.objectValue?["id"]?.stringValue)

            expectProblem(try await portal.call(.get, "/metrics", token: nil), .unauthorized)
            expectProblem(try await portal.call(.get, "/metrics", token: portal.token("acme.admin")), .unauthorized)
            let platform = try await portal.call(.get, "/metrics", token: metricsToken)
            #expect(platform.status == .ok)
            #expect(platform.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
            let text = platform.body.string
            #expect(text.contains(#"portal_integration_requests_total{organization="acme",integration="\#(id)",outcome="success"} 3"#))
            #expect(text.contains(#"portal_integration_requests_total{organization="acme",integration="\#(id)",outcome="server_error"} 1"#))
            #expect(text.contains(#"portal_integration_request_duration_seconds_count{organization="acme",integration="\#(id)"} 4"#))
            #expect(text.contains(#"portal_integration_requests_total{organization="globex",integration="\#(globexID)",outcome="success"} 0"#), "every series starts at zero")
            #expect(text.contains(#"portal_alerts{alertname="IntegrationErrorRateHigh",organization="acme",state="firing"} 0"#))
            #expect(text.contains("portal_ledger_entries{organization=\"acme\"}"))
            try Promtool.checkMetrics(text)

            let org = try await portal.call(.get, "/portal/metrics", token: portal.token("acme.auditor"))
            #expect(org.status == .ok && org.headers[.contentType] == PrometheusText.contentType)
            #expect(org.body.string.contains(id) && !org.body.string.contains("globex") && !org.body.string.contains(globexID))
            try Promtool.checkMetrics(org.body.string)
            let theirs = try await portal.call(.get, "/portal/metrics", token: portal.token("globex.auditor"))
            #expect(!theirs.body.string.contains(id) && !theirs.body.string.contains("\"acme\""))
            try Promtool.checkMetrics(theirs.body.string)
        }
    }
}

/// `promtool check metrics` (Debian's `prometheus` package), on text given on stdin.
enum Promtool {
    struct Findings: Error, CustomStringConvertible {
        var description: String
    }

    static func checkMetrics(_ text: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["promtool", "check", "metrics"]
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let report = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "promtool check metrics: \(report)")
        #expect(report.isEmpty, "promtool reports nothing on a clean exposition: \(report)")
    }
}

/// Every rule kind fires from what it watches, through the evaluator and the real capabilities: slow calls,
/// 429s and a run of failures, a failing token endpoint, a webhook backlog and a dead letter, and a tampered
/// ledger found by the periodic verification.
@Suite("Alert rule kinds")
struct AlertKindTests {
    static let rules = """
        evaluationInterval: 1h
        rules:
          - {alert: Failing, kind: integration_failure, consecutiveFailures: 3}
          - {alert: Errors, kind: error_rate, threshold: 0.5, minRequests: 3}
          - {alert: Slow, kind: latency_degradation, threshold: 0.4, minRequests: 3}
          - {alert: Quota, kind: quota_exhaustion, rateLimitedCalls: 1}
          - {alert: Backlog, kind: webhook_backlog, maxDepth: 0, maxAge: 1h}
          - {alert: DeadLetters, kind: dead_letters, threshold: 0}
          - {alert: TokenRefresh, kind: token_refresh_failure, window: 5m}
          - {alert: Ledger, kind: ledger_verification_failure, labels: {severity: critical}, annotations: {summary: "{{ $labels.reason }}"}}
        """

    func integration(_ portal: Portal, _ name: String, extra: String = #""authMethod":"api_key","credentials":{"apiKey":"k-kinds-123456"}"#) async throws -> String {
        let response = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
            {"name":"\(name)","type":"enterprise","baseUrl":"\(portal.upstream.baseURL)",\(extra),"rateLimits":{"requestsPerSecond":1000,"burst":1000},"config":{"retry":{"maxAttempts":1}\(name == "IdP" ? #","oauth":{"tokenUrl":"\#(portal.upstream.baseURL)/status/500"}"# : "")}}
            """)
        #expect(response.status == .created, "\(response.body.string)")
        return try #require(response.json.objectValue?["id"]?.stringValue)
    }

    @Test("each kind fires from its own signal", arguments: Backend.available)
    func everyKind(backend: Backend) async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kinds-\(UUID().uuidString).yml")
        try Self.rules.write(to: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: path) }
        let metricsToken = "kinds-metrics-token-\(UUID().uuidString)"
        try await withPortal(backend, configure: { $0.alertRulesPath = path.path; $0.metricsToken = metricsToken }) { portal in
            let token = portal.token("acme.operator")
            let slow = try await integration(portal, "Slow")
            for _ in 0..<3 { try await portal.call(.post, "/portal/integrations/\(slow)/requests", token: token, json: #"{"method":"GET","endpoint":"/slow/700"}"#) }
            // A 429 also holds the integration's calls back (the portal's own `throttled`), so one is enough.
            let limited = try await integration(portal, "Limited")
            try await portal.call(.post, "/portal/integrations/\(limited)/requests", token: token, json: #"{"method":"GET","endpoint":"/status/429"}"#)
            let broken = try await integration(portal, "Broken")
            for _ in 0..<3 { try await portal.call(.post, "/portal/integrations/\(broken)/requests", token: token, json: #"{"method":"GET","endpoint":"/status/502"}"#) }
            let idp = try await integration(portal, "IdP", extra: #""authMethod":"oauth2","credentials":{"clientId":"c-kinds-123456","clientSecret":"s-kinds-123456"}"#)
            let refused = try await portal.call(.post, "/portal/integrations/\(idp)/requests", token: token, json: #"{"method":"GET","endpoint":"/echo/x"}"#)
            #expect(refused.status.code >= 400, "the token endpoint fails, so the call does: \(refused.body.string)")

            // A webhook endpoint with one event waiting for a retry and one in the dead letter.
            let hooked = try await integration(portal, "Hooked")
            let endpoint = try await portal.call(.post, "/portal/integrations/\(hooked)/webhooks", token: portal.token("acme.admin"), json: #"{"endpoint":"/webhooks/kinds","secret":"kinds-secret-1"}"#)
            let endpointID = try #require(endpoint.json.objectValue?["id"]?.stringValue.flatMap(UUID.init(uuidString:)))
            let integrationID = try #require(UUID(uuidString: hooked))
            try await portal.services.database.write { tx in
                for (status, available) in [(WebhookEventStatus.failed, Date()), (.retrying, Date().addingTimeInterval(3600))] {
                    let id = UUID()
                    _ = try await WebhookEventStore(tx).insert([WebhookEventRecord(
                        id: id, organizationID: portal.acme.id, integrationID: integrationID, endpointID: endpointID, eventType: "user.updated", payload: [:],
                        signature: nil, status: status, errorMessage: "made \(status) by the test", createdAt: Date(), providerEventID: nil,
                        dedupKey: "test:\(id)", headers: [:], bodyDigest: "00", availableAt: available
                    )])
                }
            }

            // Tamper with acme's first ledger entry; the periodic verification finds it.
            try await portal.services.database.write { tx in
                try await tx.raw("UPDATE ledger_entries SET hash = \(bind: Data(repeating: 0, count: 32)) WHERE organization_id = \(bind: portal.acme.id) AND seq = 0").run()
            }
            let verified = try await portal.services.ledgerWatch.verifyAll()
            #expect(verified["acme"] == false && verified["globex"] == true)

            let step = try #require(try await portal.services.alertEvaluator.evaluateAll()["acme"])
            let fired = Dictionary(grouping: step.fired, by: \.rule)
            #expect(Set(fired.keys) == ["Failing", "Errors", "Slow", "Quota", "Backlog", "DeadLetters", "TokenRefresh", "Ledger"], "\(fired.keys.sorted())")
            // Slow answers fire it (other integrations' calls can be slow too on a loaded machine).
            #expect(fired["Slow"]?.contains { $0.labels["integration"] == slow } == true)
            #expect(Set(fired["Quota"]?.compactMap { $0.labels["integration"] } ?? []) == [limited])
            #expect(fired["Failing"]?.map { $0.labels["integration"] } == [broken] && fired["Errors"]?.map { $0.labels["integration"] } == [broken])
            #expect(fired["TokenRefresh"]?.map { $0.labels["integration"] } == [idp])
            #expect(fired["DeadLetters"]?.first?.value == 1 && fired["Backlog"]?.first?.labels["integration"] == nil)
            #expect(fired["Ledger"]?.first?.annotations["summary"]?.contains("seq 0") == true)
            #expect(try #require(try await portal.services.alertEvaluator.evaluateAll()["globex"]).fired.isEmpty, "nothing of acme's fires in globex")

            let text = try await portal.call(.get, "/metrics", token: metricsToken).body.string
            #expect(text.contains(#"portal_ledger_last_verification_success{organization="acme"} 0"#))
            #expect(text.contains(#"portal_ledger_last_verification_success{organization="globex"} 1"#))
            #expect(text.contains(#"portal_alerts{alertname="Ledger",organization="acme",state="firing"} 1"#))
            #expect(text.contains(#"portal_webhook_dead_letters{organization="acme"} 1"#) && text.contains(#"portal_webhook_queue_depth{organization="acme"} 1"#))
            #expect(text.contains(#"portal_token_refreshes_total{organization="acme",integration="\#(idp)",result="failure"} 1"#))
            try Promtool.checkMetrics(text)
        }
    }
}
