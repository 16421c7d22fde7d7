import Foundation
import Integrations
import PortalCore
import PortalTestSupport

/// Issue 5's gateway benchmark: requests per second and latency through
/// `/portal/integrations/{id}/proxy/...` (API-key auth, the portal's rate limit and ledger recording on),
/// against nginx proxying the same fixed-response upstream, both driven by wrk on loopback in the same run.
///
/// The upstream is an nginx with one worker answering a fixed JSON body; the baseline is a second nginx
/// with one worker proxying to it with its default proxy settings, and a bare Hummingbird route forwarding
/// through async-http-client (the issue's two reference points). Rounds alternate the three; the medians
/// are reported. A second pass at one connection measures the latency the portal adds over calling
/// the upstream directly.
struct GatewayBenchmark {
    let portal: String
    let duration: Int
    let connections: Int
    let rounds: Int

    func run(report: Report) async throws {
        guard let wrk = which("wrk") else { throw BenchError.failed("wrk is needed (Debian package 'wrk'; 'make bench' installs it)") }
        guard let nginx = which("nginx") ?? ["/usr/sbin/nginx"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw BenchError.failed("nginx is needed (Debian package 'nginx'; 'make bench' installs it)")
        }
        guard let curl = which("curl") else { throw BenchError.failed("curl is needed") }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("portal-bench-gateway-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        var children: [pid_t] = []
        defer { for pid in children { ChildProcess.stop(pid) } }

        let upstreamPort = try NanoIDP.freePort()
        let proxyPort = try NanoIDP.freePort()
        let portalPort = try NanoIDP.freePort()
        let body = #"{"id":"usr_0123456789","email":"user@example.test","name":"Fixed Response","active":true}"#
        children.append(try Self.startNginx(nginx, work: work, name: "upstream", server: """
            server { listen 127.0.0.1:\(upstreamPort); location / { default_type application/json; return 200 '\(body)'; } }
            """))
        // nginx's default proxy settings (as the issue measured it): HTTP/1.0 to the upstream, a connection per request.
        children.append(try Self.startNginx(nginx, work: work, name: "proxy", server: """
            server { listen 127.0.0.1:\(proxyPort); location / { proxy_pass http://127.0.0.1:\(upstreamPort); } }
            """))

        let database = "sqlite://\(work.path)/portal.sqlite"
        children.append(try ChildProcess.spawn(portal, [
            "serve", "--port", String(portalPort), "--database", database, "--master-key-file", try benchKeyFile(work),
            "--outbound-allow", "127.0.0.1", "--log-level", "error",
        ], output: work.appendingPathComponent("portal.log").path))
        let portalURL = "http://127.0.0.1:\(portalPort)"
        try await Wrk.waitUntilUp(curl, "\(portalURL)/healthz")
        try await Wrk.waitUntilUp(curl, "http://127.0.0.1:\(upstreamPort)/")
        try await Wrk.waitUntilUp(curl, "http://127.0.0.1:\(proxyPort)/")

        let token = try runChecked([portal, "token", "create", "--org", "default", "--role", "operator", "--owner", "bench", "--database", database])
            .output.split(separator: "\n").last.map(String.init) ?? ""
        let created = try runChecked([
            curl, "-sS", "-f", "-X", "POST", "\(portalURL)/portal/integrations", "-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json",
            "-d", """
            {"name":"Bench upstream","type":"analytics","baseUrl":"http://127.0.0.1:\(upstreamPort)","authMethod":"api_key",
             "credentials":{"apiKey":"bench-key-0123456789"},"rateLimits":{"requestsPerSecond":1000000,"burst":1000000}}
            """,
        ])
        guard let id = try JSONValue.parse(Data(created.output.utf8)).objectValue?["id"]?.stringValue else {
            throw BenchError.failed("could not create the integration: \(created.output)")
        }
        let through = "\(portalURL)/portal/integrations/\(id)/proxy/v1/users/usr_0123456789"
        let auth = ["-H", "Authorization: Bearer \(token)"]
        // The portal must actually proxy (and the upstream's body come back) before anything is timed.
        let probe = try runChecked([curl, "-sS", "-f", through] + auth)
        guard probe.output.contains("usr_0123456789") else { throw BenchError.failed("the proxy answered \(probe.output)") }

        print("\n== Gateway: wrk, \(connections) connections, \(duration) s per run, \(rounds) rounds; baselines: nginx (one worker, default proxy settings) and a bare Hummingbird + async-http-client forwarder, same upstream")
        let forwarderPort = try NanoIDP.freePort()
        let nginxURL = "http://127.0.0.1:\(proxyPort)/v1/users/usr_0123456789"
        let forwarderURL = "http://127.0.0.1:\(forwarderPort)/v1/users/usr_0123456789"
        let upstreamURL = "http://127.0.0.1:\(upstreamPort)"
        let (baseline, forwarded, gateway) = try await BareForwarder.with(port: forwarderPort, upstream: upstreamURL) { () async throws -> ([WrkRun], [WrkRun], [WrkRun]) in
            try await Wrk.waitUntilUp(curl, forwarderURL)
            for (url, headers) in [(nginxURL, [String]()), (forwarderURL, []), (through, auth)] {
                _ = try Wrk.run(wrk, url, connections: connections, seconds: 2, headers: headers)
            }
            var baseline: [WrkRun] = []
            var forwarded: [WrkRun] = []
            var gateway: [WrkRun] = []
            for round in 1...rounds {
                baseline.append(try Wrk.run(wrk, nginxURL, connections: connections, seconds: duration, headers: []))
                forwarded.append(try Wrk.run(wrk, forwarderURL, connections: connections, seconds: duration, headers: []))
                gateway.append(try Wrk.run(wrk, through, connections: connections, seconds: duration, headers: auth))
                print("  round \(round): nginx \(formatted(baseline.last!.requestsPerSecond))/s, bare forwarder \(formatted(forwarded.last!.requestsPerSecond))/s, portal \(formatted(gateway.last!.requestsPerSecond))/s")
            }
            return (baseline, forwarded, gateway)
        }
        let failures = gateway.map(\.non2xx).reduce(0, +)
        guard failures == 0 else { throw BenchError.failed("\(failures) portal answers were not 2xx (rate limit or upstream errors)") }
        let recorded = try recordedCalls(curl, portalURL, id: id, auth: auth)
        let sent = gateway.map(\.requests).reduce(0, +)
        print("  calls recorded by the portal (integration_requests rows and ledger entries): \(recorded) for \(sent) timed requests plus warm-up")

        let nginxRate = Wrk.median(baseline.map(\.requestsPerSecond))
        let forwarderRate = Wrk.median(forwarded.map(\.requestsPerSecond))
        let portalRate = Wrk.median(gateway.map(\.requestsPerSecond))
        let ratio = portalRate / nginxRate
        report.add(
            "bare Hummingbird + async-http-client forwarder, wrk -c\(connections)",
            "\(formatted(forwarderRate)) req/s, p50 \(milliseconds(Wrk.median(forwarded.map(\.p50)))), p99 \(milliseconds(Wrk.median(forwarded.map(\.p99))))",
            baseline: "nginx proxy: \(formatted(nginxRate)) req/s", ratio: forwarderRate / nginxRate, target: "reference"
        )
        report.add(
            "gateway proxy, api_key + rate limit + ledger, wrk -c\(connections) (median of \(rounds) × \(duration) s)",
            "\(formatted(portalRate)) req/s, p50 \(milliseconds(Wrk.median(gateway.map(\.p50)))), p99 \(milliseconds(Wrk.median(gateway.map(\.p99))))",
            baseline: "nginx proxy: \(formatted(nginxRate)) req/s, p50 \(milliseconds(Wrk.median(baseline.map(\.p50)))), p99 \(milliseconds(Wrk.median(baseline.map(\.p99))))",
            ratio: ratio, target: "≥ 0.30 (aim 0.50)", met: ratio >= 0.30
        )
        report.add(
            "gateway proxy vs the bare forwarder (same run)", "\(formatted(portalRate)) req/s",
            baseline: "bare forwarder: \(formatted(forwarderRate)) req/s", ratio: portalRate / forwarderRate, target: "what the pipeline costs"
        )

        // Added latency: one connection, the upstream directly vs through the portal.
        let direct = try Wrk.run(wrk, "http://127.0.0.1:\(upstreamPort)/v1/users/usr_0123456789", connections: 1, seconds: duration / 2, headers: [])
        let single = try Wrk.run(wrk, through, connections: 1, seconds: duration / 2, headers: auth)
        let added = single.p50 - direct.p50
        report.add(
            "gateway added latency at one connection (p50)", milliseconds(added),
            baseline: "upstream directly: p50 \(milliseconds(direct.p50)); through the portal: p50 \(milliseconds(single.p50)), p99 \(milliseconds(single.p99))",
            target: "< 1 ms", met: added < 0.001
        )
    }

    /// Starts an nginx with one worker and `server` (and any `upstream`) blocks in its http block.
    static func startNginx(_ nginx: String, work: URL, name: String, server: String) throws -> pid_t {
        let prefix = work.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: prefix, withIntermediateDirectories: true)
        let config = """
            daemon off;
            master_process off;
            worker_processes 1;
            pid \(prefix.path)/nginx.pid;
            error_log \(prefix.path)/error.log error;
            events { worker_connections 4096; }
            http {
              access_log off;
              client_body_temp_path \(prefix.path)/body;
              proxy_temp_path \(prefix.path)/proxy;
              fastcgi_temp_path \(prefix.path)/fastcgi;
              uwsgi_temp_path \(prefix.path)/uwsgi;
              scgi_temp_path \(prefix.path)/scgi;
              keepalive_requests 1000000;
              \(server)
            }
            """
        let path = prefix.appendingPathComponent("nginx.conf").path
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        return try ChildProcess.spawn(nginx, ["-p", prefix.path, "-c", path], output: prefix.appendingPathComponent("stderr.log").path)
    }

    /// How many calls the portal recorded for the integration (its status counters).
    private func recordedCalls(_ curl: String, _ portalURL: String, id: String, auth: [String]) throws -> String {
        let status = try runChecked([curl, "-sS", "-f", "\(portalURL)/portal/integrations/\(id)/status"] + auth)
        let json = try JSONValue.parse(Data(status.output.utf8))
        if case .int(let total)? = json.objectValue?["metrics"]?.objectValue?["totalRequests"] { return formatted(Double(total)) }
        return "unknown (\(status.output.prefix(200)))"
    }
}
