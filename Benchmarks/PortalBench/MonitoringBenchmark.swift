import Foundation
import Integrations
import Monitoring
import PortalCore
import PortalTestSupport
import Synchronization

/// Issue 8's monitoring figures, each against a baseline of the same run:
///
/// - the cost of recording one observation (ns), against a locked dictionary counter increment (the least a
///   shared per-integration counter costs);
/// - the memory of 1,000 integrations with a busy hour (RSS growth of this process, and the collector's
///   own estimate);
/// - a `/metrics` scrape of a server with 1,000 integrations (time and bytes), against listing the same
///   1,000 integrations as JSON from the same server;
/// - the gateway's throughput with monitoring on versus off (two servers, alternating wrk rounds).
struct MonitoringBenchmark {
    let portal: String
    let duration: Int
    let connections: Int
    let rounds: Int

    func run(report: Report) async throws {
        print("\n== Monitoring: observation cost, memory of 1,000 integrations, /metrics scrape, gateway with monitoring on vs off")
        observationCost(report: report)
        memory(report: report)
        try await scrape(report: report)
        try await gatewayOverhead(report: report)
    }

    // MARK: Observation cost

    func observationCost(report: Report) {
        let clock = SystemWallClock()
        let collector = MetricsCollector(clock: clock)
        let org = UUID()
        let integrations = (0..<1000).map { _ in UUID() }
        let count = 5_000_000
        let calls = (0..<1024).map { i in
            Activity.call(.init(
                organizationID: org, integrationID: integrations[i % integrations.count], endpoint: "/v1/users/{id}", outcome: i % 10 == 0 ? "server_error" : "success",
                category: i % 10 == 0 ? "network" : nil, durationMicros: Int64(800 + (i * 7919) % 400_000), at: Date()
            ))
        }
        for activity in calls { collector.observe(activity) }
        let start = ContinuousClock.now
        for i in 0..<count { collector.observe(calls[i & 1023]) }
        let observe = seconds(since: start) / Double(count) * 1e9

        let counters = Mutex<[UUID: Int]>([:])
        let baselineStart = ContinuousClock.now
        for i in 0..<count { counters.withLock { $0[integrations[i % 1000], default: 0] += 1 } }
        let baseline = seconds(since: baselineStart) / Double(count) * 1e9
        print("  one observation: \(String(format: "%.0f", observe)) ns; a locked dictionary counter: \(String(format: "%.0f", baseline)) ns")
        report.add(
            "monitoring: recording one gateway observation (1,000 integrations, \(formatted(Double(count))) observations)", String(format: "%.0f ns", observe),
            baseline: String(format: "locked dictionary counter increment: %.0f ns", baseline), ratio: observe / baseline, target: "cheap beside a call (~100 µs)"
        )
    }

    // MARK: Memory

    func memory(report: Report) {
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_800_000_000))
        let before = Self.residentKiB()
        let collector = MetricsCollector(clock: clock)
        let org = UUID()
        let integrations = (0..<1000).map { _ in UUID() }
        // A busy hour: every integration every minute, latencies spread over four orders of magnitude,
        // webhooks and sync records too.
        for minute in 0..<60 {
            for (i, id) in integrations.enumerated() {
                for k in 0..<5 {
                    collector.observe(.call(.init(
                        organizationID: org, integrationID: id, endpoint: "/v1/x", outcome: k == 4 ? "server_error" : "success", category: k == 4 ? "network" : nil,
                        durationMicros: Int64(100 * (1 + (i * 7 + k * 1_931 + minute * 17) % 10_000)), at: clock.now()
                    )))
                }
                collector.observe(.webhook(organizationID: org, integrationID: id, status: .received))
                collector.observe(.syncRecords(organizationID: org, integrationID: id, counts: [.fetched: 10, .updated: 2]))
            }
            clock.advance(by: 60)
        }
        let after = Self.residentKiB()
        let (_, estimate) = collector.footprint()
        let grown = max(0, after - before)
        print("  1,000 integrations, a busy hour: RSS grew \(mebibytes(grown)); the collector's estimate \(estimate >> 20) MiB")
        report.add(
            "monitoring: memory of 1,000 integrations with a busy hour (60 minute slots each)", "\(mebibytes(grown)) RSS growth (estimate \(estimate >> 20) MiB)",
            baseline: "limit 200 MB", ratio: Double(grown * 1024) / 200e6, target: "≤ 200 MB", met: grown * 1024 <= 200_000_000
        )
        withExtendedLifetime(collector) {}
    }

    static func residentKiB() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
    }

    // MARK: Scrape

    func scrape(report: Report) async throws {
        guard let curl = which("curl") else { throw BenchError.failed("curl is needed") }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("portal-bench-monitoring-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let port = try NanoIDP.freePort()
        let database = "sqlite://\(work.path)/portal.sqlite"
        let metricsToken = "bench-metrics-token-\(UUID().uuidString)"
        setenv("PORTAL_METRICS_TOKEN", metricsToken, 1)
        // 1,000 integrations: twice the default per-organization bound (PORTAL_MAX_INTEGRATIONS, issue 16).
        setenv("PORTAL_MAX_INTEGRATIONS", "1000", 1)
        defer {
            unsetenv("PORTAL_METRICS_TOKEN")
            unsetenv("PORTAL_MAX_INTEGRATIONS")
        }
        let pid = try ChildProcess.spawn(portal, [
            "serve", "--port", String(port), "--database", database, "--master-key-file", try benchKeyFile(work), "--outbound-allow", "127.0.0.1", "--log-level", "error",
        ], output: work.appendingPathComponent("portal.log").path)
        defer { ChildProcess.stop(pid) }
        let url = "http://127.0.0.1:\(port)"
        try await Wrk.waitUntilUp(curl, "\(url)/healthz")
        let token = try runChecked([portal, "token", "create", "--org", "default", "--role", "admin", "--owner", "bench", "--database", database])
            .output.split(separator: "\n").last.map(String.init) ?? ""
        // 1,000 integrations, each with a few calls (so its series carry values).
        for i in 0..<1000 {
            _ = try runChecked([
                curl, "-sS", "-f", "-o", "/dev/null", "-X", "POST", "\(url)/portal/integrations", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                "-d", #"{"name":"Integration \#(i)","type":"analytics","baseUrl":"http://127.0.0.1:9","authMethod":"api_key","credentials":{"apiKey":"bench-key-0123456789"},"config":{"retry":{"maxAttempts":1}}}"#,
            ])
        }
        var scrapes: [Double] = []
        var lists: [Double] = []
        var bytes = 0
        for _ in 0..<15 {
            let s = try runChecked([curl, "-sS", "-f", "-o", work.appendingPathComponent("metrics.prom").path, "-w", "%{time_total} %{size_download}", "-H", "Authorization: Bearer \(metricsToken)", "\(url)/metrics"])
            let fields = s.output.split(separator: " ")
            scrapes.append(Double(fields.first ?? "0") ?? 0)
            bytes = Int(fields.last ?? "0") ?? 0
            let l = try runChecked([curl, "-sS", "-f", "-o", "/dev/null", "-w", "%{time_total}", "-H", "Authorization: Bearer \(token)", "\(url)/portal/integrations?limit=1000"])
            lists.append(Double(l.output) ?? 0)
        }
        let series = (try? String(contentsOf: work.appendingPathComponent("metrics.prom"), encoding: .utf8))?.split(separator: "\n").filter { !$0.hasPrefix("#") }.count ?? 0
        let scrape = Wrk.median(scrapes)
        let list = Wrk.median(lists)
        print("  /metrics with 1,000 integrations: \(milliseconds(scrape)), \(formatted(Double(bytes))) bytes, \(formatted(Double(series))) series; listing them as JSON: \(milliseconds(list))")
        report.add(
            "monitoring: /metrics scrape, 1,000 integrations (median of 15)", "\(milliseconds(scrape)), \(formatted(Double(bytes))) bytes, \(formatted(Double(series))) series",
            baseline: "GET /portal/integrations?limit=1000: \(milliseconds(list))", ratio: scrape / list, target: "well under a 15 s scrape interval"
        )
    }

    // MARK: Gateway with monitoring on and off

    func gatewayOverhead(report: Report) async throws {
        guard let wrk = which("wrk"), let curl = which("curl") else { throw BenchError.failed("wrk and curl are needed") }
        guard let nginx = which("nginx") ?? ["/usr/sbin/nginx"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw BenchError.failed("nginx is needed")
        }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("portal-bench-monitoring-gw-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        var children: [pid_t] = []
        defer { for pid in children { ChildProcess.stop(pid) } }
        let upstreamPort = try NanoIDP.freePort()
        let body = #"{"id":"usr_0123456789","email":"user@example.test"}"#
        children.append(try GatewayBenchmark.startNginx(nginx, work: work, name: "upstream", server: """
            server { listen 127.0.0.1:\(upstreamPort); location / { default_type application/json; return 200 '\(body)'; } }
            """))
        var targets: [(name: String, url: String, auth: [String])] = []
        for mode in ["on", "off"] {
            let port = try NanoIDP.freePort()
            let database = "sqlite://\(work.path)/portal-\(mode).sqlite"
            children.append(try ChildProcess.spawn(portal, [
                "serve", "--port", String(port), "--database", database, "--master-key-file", try benchKeyFile(work, name: "master-\(mode).key"),
                "--outbound-allow", "127.0.0.1", "--log-level", "error", "--monitoring", mode,
            ], output: work.appendingPathComponent("portal-\(mode).log").path))
            let url = "http://127.0.0.1:\(port)"
            try await Wrk.waitUntilUp(curl, "\(url)/healthz")
            let token = try runChecked([portal, "token", "create", "--org", "default", "--role", "operator", "--owner", "bench", "--database", database])
                .output.split(separator: "\n").last.map(String.init) ?? ""
            let created = try runChecked([
                curl, "-sS", "-f", "-X", "POST", "\(url)/portal/integrations", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
                "-d", #"{"name":"Bench","type":"analytics","baseUrl":"http://127.0.0.1:\#(upstreamPort)","authMethod":"api_key","credentials":{"apiKey":"bench-key-0123456789"},"rateLimits":{"requestsPerSecond":1000000,"burst":1000000}}"#,
            ])
            guard let id = try JSONValue.parse(Data(created.output.utf8)).objectValue?["id"]?.stringValue else { throw BenchError.failed("no integration: \(created.output)") }
            let through = "\(url)/portal/integrations/\(id)/proxy/v1/users/usr_0123456789"
            _ = try Wrk.run(wrk, through, connections: connections, seconds: 2, headers: ["-H", "Authorization: Bearer \(token)"])
            targets.append((mode, through, ["-H", "Authorization: Bearer \(token)"]))
        }
        var on: [Double] = []
        var off: [Double] = []
        for round in 1...rounds {
            // Alternate which goes first, so drift on the shared machine does not favour one.
            let order = round % 2 == 1 ? targets : targets.reversed()
            for target in order {
                let run = try Wrk.run(wrk, target.url, connections: connections, seconds: duration, headers: target.auth)
                guard run.non2xx == 0 else { throw BenchError.failed("\(run.non2xx) non-2xx answers from the \(target.name) server") }
                if target.name == "on" { on.append(run.requestsPerSecond) } else { off.append(run.requestsPerSecond) }
            }
            print("  round \(round): monitoring on \(formatted(on.last!))/s, off \(formatted(off.last!))/s")
        }
        let onRate = Wrk.median(on)
        let offRate = Wrk.median(off)
        report.add(
            "monitoring: gateway throughput with monitoring on (median of \(rounds) × \(duration) s, wrk -c\(connections))", "\(formatted(onRate)) req/s",
            baseline: "monitoring off: \(formatted(offRate)) req/s", ratio: onRate / offRate, target: "≥ 0.95", met: onRate / offRate >= 0.95
        )
    }
}
