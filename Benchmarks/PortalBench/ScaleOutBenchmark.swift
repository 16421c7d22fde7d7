import Crypto
import Foundation
import Ledger
import PortalCore
import PortalTestSupport
import SQLKit
import Storage

/// Issue 17's scale-out figure: two `portal serve` processes on one PostgreSQL database against one, in the
/// same run, under the same load: signed webhook ingest and gateway proxy calls for two organizations at once.
///
/// Four wrk processes (each organization's webhooks and its gateway calls) run together; with two instances
/// each organization's load is split over both, so both write to every organization's ledger (the case the
/// per-organization sequencer serializes). Rounds alternate one instance and two; the medians are reported,
/// with each process's CPU use (instances, PostgreSQL, wrk) per second of wall time. Afterwards every
/// organization's chain must verify (`portal ledger verify`, every ledger), and every acknowledged event
/// and call must be stored.
struct ScaleOutBenchmark {
    let portal: String
    let duration: Int
    let connections: Int
    let rounds: Int

    private struct Organization {
        var slug: String
        var token: String
        var integration: String
    }

    private struct Round {
        var webhooks: Double
        var gateway: Double
        var cpu: [String: Double]
        var p99: Double
        var acknowledged: Int
    }

    func run(report: Report) async throws {
        guard Backend.available.contains(.postgres) else {
            print("\n== Scale-out: skipped (PORTAL_TEST_POSTGRES_URL is not set; 'make bench' starts a server)")
            return
        }
        guard let wrk = which("wrk"), let curl = which("curl") else { throw BenchError.failed("wrk and curl are needed ('make bench' installs them)") }
        guard let nginx = which("nginx") ?? ["/usr/sbin/nginx"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw BenchError.failed("nginx is needed (Debian package 'nginx'; 'make bench' installs it)")
        }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("portal-bench-scaleout-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let database = try await TestDatabase.create(.postgres)
        do {
            try await measure(database: database.url, work: work, wrk: wrk, curl: curl, nginx: nginx, report: report)
        } catch {
            await database.drop()
            throw error
        }
        await database.drop()
    }

    private func measure(database: String, work: URL, wrk: String, curl: String, nginx: String, report: Report) async throws {
        var children: [pid_t] = []
        defer { for pid in children { ChildProcess.stop(pid) } }
        let upstreamPort = try NanoIDP.freePort()
        let body = #"{"id":"usr_0123456789","email":"user@example.test","name":"Fixed Response"}"#
        children.append(try GatewayBenchmark.startNginx(nginx, work: work, name: "upstream", server: """
            server { listen 127.0.0.1:\(upstreamPort); location / { default_type application/json; return 200 '\(body)'; } }
            """))
        let key = try benchKeyFile(work)
        let ports = [try NanoIDP.freePort(), try NanoIDP.freePort()]
        let bases = ports.map { "http://127.0.0.1:\($0)" }
        func start(_ index: Int) async throws -> pid_t {
            let pid = try ChildProcess.spawn(portal, [
                "serve", "--port", String(ports[index]), "--database", database, "--master-key-file", key,
                "--outbound-allow", "127.0.0.1", "--log-level", "error",
            ], output: work.appendingPathComponent("portal-\(index).log").path)
            try await Wrk.waitUntilUp(curl, "\(bases[index])/healthz")
            return pid
        }
        let first = try await start(0)
        children.append(first)

        var organizations: [Organization] = []
        for slug in ["scale-a", "scale-b"] {
            let token = try runChecked([portal, "token", "create", "--org", slug, "--role", "admin", "--owner", "bench", "--database", database])
                .output.split(separator: "\n").last.map(String.init) ?? ""
            let auth = ["-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json"]
            let created = try JSONValue.parse(Data(try runChecked([curl, "-sS", "-f", "-X", "POST", "\(bases[0])/portal/integrations"] + auth + [
                "-d", """
                {"name":"Scale","type":"analytics","baseUrl":"http://127.0.0.1:\(upstreamPort)","authMethod":"api_key",
                 "credentials":{"apiKey":"bench-key-0123456789"},"rateLimits":{"requestsPerSecond":1000000,"burst":1000000}}
                """,
            ]).output.utf8))
            guard let integration = created.objectValue?["id"]?.stringValue else { throw BenchError.failed("could not create an integration for \(slug)") }
            _ = try runChecked([curl, "-sS", "-f", "-X", "POST", "\(bases[0])/portal/integrations/\(integration)/webhooks"] + auth + [
                "-d", #"{"endpoint":"/webhooks/scale","secret":"scale-webhook-secret","signatureHeader":"X-Bench-Signature","eventIdHeader":"X-Event-Id"}"#,
            ])
            organizations.append(Organization(slug: slug, token: token, integration: integration))
        }

        // Four streams: each organization's webhooks and gateway calls. With two instances, organization A's
        // webhooks and B's calls go to the first, the others to the second.
        func streams(instances: Int, tag: String) throws -> [(url: String, connections: Int, headers: [String], script: String?)] {
            var result: [(url: String, connections: Int, headers: [String], script: String?)] = []
            for (index, organization) in organizations.enumerated() {
                let script = work.appendingPathComponent("post-\(organization.slug)-\(tag).lua").path
                try Wrk.writeWebhookScript(script, signatureHeader: "X-Bench-Signature", secret: "scale-webhook-secret", tag: "\(organization.slug)-\(tag)", count: 60_000)
                let webhookBase = bases[instances == 2 ? index : 0]
                let gatewayBase = bases[instances == 2 ? 1 - index : 0]
                result.append(("\(webhookBase)/webhooks/\(organization.slug)/scale", max(1, connections / 4), [], script))
                result.append(("\(gatewayBase)/portal/integrations/\(organization.integration)/proxy/v1/users/usr_0123456789", max(1, connections / 4),
                               ["-H", "Authorization: Bearer \(organization.token)"], nil))
            }
            return result
        }

        print("\n== Scale-out on PostgreSQL: one instance vs two on one database, same load (4 wrk processes, \(connections) connections in all: two organizations' signed webhooks and gateway calls), \(duration) s per run, \(rounds) rounds")
        var one: [Round] = []
        var two: [Round] = []
        var acknowledged = 0
        var second: pid_t?
        defer { if let second { ChildProcess.stop(second) } }
        for round in 0...rounds {
            for instances in [1, 2] {
                if instances == 2, second == nil { second = try await start(1) }
                if instances == 1, let pid = second { ChildProcess.stop(pid); second = nil }
                let pids = [first] + (instances == 2 ? [second!] : [])
                let before = CPU.sample(portals: pids)
                let runs = try Wrk.runTogether(wrk, try streams(instances: instances, tag: "r\(round)i\(instances)"), seconds: round == 0 ? 2 : duration, work: work)
                let after = CPU.sample(portals: pids)
                let refused = runs.map(\.non2xx).reduce(0, +)
                guard refused == 0 else { throw BenchError.failed("\(refused) answers were not 2xx with \(instances) instance(s)") }
                acknowledged += runs[0].requests + runs[2].requests
                guard round > 0 else { continue }  // warm-up
                let result = Round(
                    webhooks: runs[0].requestsPerSecond + runs[2].requestsPerSecond, gateway: runs[1].requestsPerSecond + runs[3].requestsPerSecond,
                    cpu: after.perSecond(since: before), p99: runs.map(\.p99).max() ?? 0, acknowledged: runs[0].requests + runs[2].requests
                )
                if instances == 1 { one.append(result) } else { two.append(result) }
                print("  round \(round), \(instances) instance(s): webhooks \(formatted(result.webhooks))/s, gateway \(formatted(result.gateway))/s, worst p99 \(milliseconds(result.p99)); CPU (cores): \(CPU.describe(result.cpu)); resident: \(pids.map { mebibytes(CPU.residentKiB($0)) }.joined(separator: ", "))")
            }
        }
        if let pid = second { ChildProcess.stop(pid); second = nil }
        ChildProcess.stop(first)
        children.removeAll { $0 == first }

        // One valid chain per organization, and every acknowledged event stored (wrk's counts include requests
        // still in flight at its deadline, so stored may exceed the count; fewer is a loss).
        let verify = try runChild([portal, "ledger", "verify", "--database", database, "--master-key-file", key])
        guard verify.status == 0 else { throw BenchError.failed("portal ledger verify failed after the scale-out runs:\n\(verify.output)") }
        let chains = verify.output.split(separator: "\n").filter { $0.lowercased().contains("verified") || $0.lowercased().contains("pass") }.count
        let stored = try await Self.storedEvents(database)
        // wrk may send one request per connection before its script's first (the first delivery again).
        let runs = (rounds + 1) * 2 * 2
        guard stored + runs * max(1, connections / 4) >= acknowledged else {
            throw BenchError.failed("\(acknowledged) webhook deliveries acknowledged, \(stored) stored: deliveries were declined as duplicates")
        }
        print("  afterwards: portal ledger verify passes for every ledger (\(chains) lines of success); \(stored) webhook events stored for \(acknowledged) acknowledged by wrk's count")

        func median(_ rounds: [Round], _ value: (Round) -> Double) -> Double { Wrk.median(rounds.map(value)) }
        let cpuOne = CPU.median(one.map(\.cpu))
        let cpuTwo = CPU.median(two.map(\.cpu))
        for (name, value) in [("webhook ingest", { (r: Round) in r.webhooks }), ("gateway proxy", { (r: Round) in r.gateway })] {
            let single = median(one, value)
            let double = median(two, value)
            report.add(
                "scale-out, PostgreSQL: \(name), two instances vs one (two organizations, median of \(rounds) × \(duration) s)",
                "two instances: \(formatted(double))/s; CPU \(CPU.describe(cpuTwo))",
                baseline: "one instance: \(formatted(single))/s; CPU \(CPU.describe(cpuOne))",
                ratio: double / single, target: "reported (2 cores: contention, not scale); one valid chain per organization", met: nil
            )
        }
    }

    static func storedEvents(_ url: String) async throws -> Int {
        try await Database.withDatabase(url: url, logger: benchLogger) { db in
            try await db.read { sql in
                try await sql.raw("SELECT COUNT(*) AS n FROM webhook_events").first()?.decode(column: "n", as: Int.self) ?? 0
            }
        }
    }

}

/// CPU time of processes from /proc, in cores (CPU seconds per wall second).
struct CPU {
    var ticks: [String: Int]
    var at: ContinuousClock.Instant

    /// The portal instances by pid, every PostgreSQL server process, and this process's finished children (wrk).
    static func sample(portals: [pid_t]) -> CPU {
        var ticks: [String: Int] = [:]
        for (index, pid) in portals.enumerated() { ticks["portal \(index + 1)"] = processTicks(pid) }
        var postgres = 0
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where entry.allSatisfy(\.isNumber) {
            if (try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8))?.hasPrefix("postgres") == true {
                postgres += processTicks(pid_t(entry) ?? 0)
            }
        }
        ticks["postgres"] = postgres
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        let children = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        ticks["wrk"] = Int(children * Double(sysconf(Int32(_SC_CLK_TCK))))
        return CPU(ticks: ticks, at: .now)
    }

    /// utime + stime of one process, in clock ticks (fields 14 and 15 of /proc/PID/stat, after the command's parentheses).
    static func processTicks(_ pid: pid_t) -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13 else { return 0 }
        return (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0)
    }

    /// Resident memory of a process (VmRSS), in KiB.
    static func residentKiB(_ pid: pid_t) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
    }

    func perSecond(since before: CPU) -> [String: Double] {
        let wall = Double((at - before.at).components.seconds) + Double((at - before.at).components.attoseconds) / 1e18
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        return ticks.mapValues { Double($0) }.merging(before.ticks.mapValues { -Double($0) }) { $0 + $1 }.mapValues { $0 / hz / wall }
    }

    static func median(_ samples: [[String: Double]]) -> [String: Double] {
        var result: [String: Double] = [:]
        for key in Set(samples.flatMap(\.keys)) { result[key] = Wrk.median(samples.compactMap { $0[key] }) }
        return result
    }

    static func describe(_ cpu: [String: Double]) -> String {
        cpu.keys.sorted().map { "\($0) \(String(format: "%.2f", cpu[$0] ?? 0))" }.joined(separator: ", ")
    }
}
