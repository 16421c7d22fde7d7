import Crypto
import Foundation
import Integrations
import Ledger
import PortalCore
import PortalTestSupport

/// Issue 6's benchmark: signed-event ingest (durable acknowledgements per second, p99) through
/// `POST /webhooks/{slug}/{name}` of a release `portal serve`, on SQLite and on PostgreSQL, against the same
/// server answering a POST that does no work: the receiver's path for an unknown endpoint (404 from an
/// in-memory index, before anything is read or stored). wrk sends one signed body with a new event id per
/// request (the generic `hmac` scheme takes its event id from a header), so every request is a new event.
struct WebhookBenchmark {
    let portal: String
    let duration: Int
    let connections: Int
    let rounds: Int

    func run(report: Report) async throws {
        guard let wrk = which("wrk") else { throw BenchError.failed("wrk is needed (Debian package 'wrk'; 'make bench' installs it)") }
        guard let curl = which("curl") else { throw BenchError.failed("curl is needed") }
        var backends: [(String, String)] = []
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("portal-bench-webhooks-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        backends.append(("sqlite", "sqlite://\(work.path)/portal.sqlite"))
        var postgres: TestDatabase?
        if Backend.available.contains(.postgres) {
            let database = try await TestDatabase.create(.postgres)
            postgres = database
            backends.append(("postgres", database.url))
        }
        print("\n== Webhook ingest: wrk, \(connections) connections, \(duration) s per run, \(rounds) rounds; baseline: the same server's no-op POST (unknown endpoint, 404)")
        do {
            for (name, url) in backends {
                try await measure(backend: name, databaseURL: url, work: work, wrk: wrk, curl: curl, report: report)
            }
        } catch {
            await postgres?.drop()
            throw error
        }
        await postgres?.drop()
    }

    private func measure(backend: String, databaseURL: String, work: URL, wrk: String, curl: String, report: Report) async throws {
        let port = try NanoIDP.freePort()
        let pid = try ChildProcess.spawn(portal, [
            "serve", "--port", String(port), "--database", databaseURL, "--master-key-file", try benchKeyFile(work, name: "master-\(backend).key"), "--log-level", "error",
        ], output: work.appendingPathComponent("portal-\(backend).log").path)
        defer { ChildProcess.stop(pid) }
        let base = "http://127.0.0.1:\(port)"
        try await Wrk.waitUntilUp(curl, "\(base)/healthz")
        let token = try runChecked([portal, "token", "create", "--org", "bench", "--role", "admin", "--owner", "bench", "--database", databaseURL])
            .output.split(separator: "\n").last.map(String.init) ?? ""
        let auth = ["-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json"]
        let integration = try JSONValue.parse(Data(try runChecked([curl, "-sS", "-f", "-X", "POST", "\(base)/portal/integrations"] + auth + [
            "-d", #"{"name":"Bench","type":"enterprise","baseUrl":"https://api.example.com","authMethod":"api_key","credentials":{"apiKey":"k-0123456789"}}"#,
        ]).output.utf8)).objectValue?["id"]?.stringValue ?? ""
        _ = try runChecked([curl, "-sS", "-f", "-X", "POST", "\(base)/portal/integrations/\(integration)/webhooks"] + auth + [
            "-d", #"{"endpoint":"/webhooks/bench","secret":"bench-webhook-secret","signatureHeader":"X-Bench-Signature","eventIdHeader":"X-Event-Id"}"#,
        ])
        let body = #"{"type":"contact.updated","data":{"id":"c-1","email":"ada@example.test","plan":"enterprise","seats":42}}"#
        let signature = "sha256=" + Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: SymmetricKey(data: Array("bench-webhook-secret".utf8))))
        // A script of distinct deliveries per run (see Wrk.writeWebhookScript); the no-op runs reuse one.
        var runs = 0
        func script() throws -> String {
            runs += 1
            let path = work.appendingPathComponent("post-\(backend)-\(runs).lua").path
            try Wrk.writeWebhookScript(path, signatureHeader: "X-Bench-Signature", secret: "bench-webhook-secret", tag: "\(backend)-\(runs)", count: 60_000)
            return path
        }
        let probe = try runChecked([curl, "-sS", "-X", "POST", "\(base)/webhooks/bench/bench", "-H", "X-Bench-Signature: \(signature)", "-H", "X-Event-Id: probe", "--data-binary", body])
        guard probe.output.contains("\"received\":true") else { throw BenchError.failed("the receiver answered \(probe.output)") }
        let ingestURL = "\(base)/webhooks/bench/bench"
        let noopURL = "\(base)/webhooks/bench/unknown"
        let noopScript = try script()
        _ = try Wrk.run(wrk, noopURL, connections: connections, seconds: 2, headers: [], script: noopScript)
        var acknowledged = try Wrk.run(wrk, ingestURL, connections: connections, seconds: 2, headers: [], script: try script()).requests
        var noop: [WrkRun] = []
        var ingest: [WrkRun] = []
        for round in 1...rounds {
            noop.append(try Wrk.run(wrk, noopURL, connections: connections, seconds: duration, headers: [], script: noopScript))
            ingest.append(try Wrk.run(wrk, ingestURL, connections: connections, seconds: duration, headers: [], script: try script()))
            acknowledged += ingest.last!.requests
            print("  \(backend) round \(round): no-op \(formatted(noop.last!.requestsPerSecond))/s, signed ingest \(formatted(ingest.last!.requestsPerSecond))/s")
        }
        let refused = ingest.map(\.non2xx).reduce(0, +)
        guard refused == 0 else { throw BenchError.failed("\(refused) deliveries were not acknowledged") }
        // Every acknowledged delivery stored (wrk may send one request per connection before its script's first).
        let stored = try await ScaleOutBenchmark.storedEvents(databaseURL)
        guard stored + runs * connections >= acknowledged else {
            throw BenchError.failed("\(acknowledged) deliveries acknowledged, \(stored) stored: deliveries were declined as duplicates")
        }
        print("  \(backend): \(stored) events stored for \(acknowledged) deliveries acknowledged (by wrk's count)")
        let rate = Wrk.median(ingest.map(\.requestsPerSecond))
        let baseline = Wrk.median(noop.map(\.requestsPerSecond))
        report.add(
            "webhook ingest, \(backend), signed (hmac), durable 2xx, wrk -c\(connections) (median of \(rounds) × \(duration) s)",
            "\(formatted(rate)) events/s, p50 \(milliseconds(Wrk.median(ingest.map(\.p50)))), p99 \(milliseconds(Wrk.median(ingest.map(\.p99))))",
            baseline: "no-op POST: \(formatted(baseline)) req/s, p99 \(milliseconds(Wrk.median(noop.map(\.p99))))",
            ratio: rate / baseline, target: "≥ 0.30", met: rate / baseline >= 0.30
        )
    }
}
