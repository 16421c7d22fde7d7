import Crypto
import Foundation
import PortalCore
import Ledger
import PortalTestSupport

/// One wrk run's figures.
struct WrkRun {
    var requestsPerSecond: Double
    var requests: Int
    var p50: Double
    var p99: Double
    var non2xx: Int
}

/// Load generation with wrk on loopback, shared by the gateway and webhook benchmarks.
enum Wrk {
    /// Polls `url` until it answers (at most 100 tries, 100 ms apart).
    static func waitUntilUp(_ curl: String, _ url: String) async throws {
        for _ in 0..<100 {
            if (try? runChild([curl, "-s", "-o", "/dev/null", "--max-time", "1", url]))?.status == 0 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchError.failed("\(url) did not answer")
    }

    /// One wrk run: one thread, `connections` connections, latency percentiles.
    static func run(_ wrk: String, _ url: String, connections: Int, seconds: Int, headers: [String], script: String? = nil) throws -> WrkRun {
        try parse(runChecked(arguments(wrk, url, connections: connections, seconds: seconds, headers: headers, script: script)).output)
    }

    /// Several wrk runs at once (each its own process), for load spread over several servers.
    static func runTogether(_ wrk: String, _ runs: [(url: String, connections: Int, headers: [String], script: String?)], seconds: Int, work: URL) throws -> [WrkRun] {
        let started = try runs.enumerated().map { index, run -> (pid_t, String) in
            let output = work.appendingPathComponent("wrk-\(index)-\(UUID().uuidString.prefix(8)).out").path
            let command = arguments(wrk, run.url, connections: run.connections, seconds: seconds, headers: run.headers, script: run.script)
            return (try ChildProcess.spawn(command[0], Array(command.dropFirst()), output: output), output)
        }
        return try started.map { pid, output in
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            defer { try? FileManager.default.removeItem(atPath: output) }
            return try parse((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
        }
    }

    private static func arguments(_ wrk: String, _ url: String, connections: Int, seconds: Int, headers: [String], script: String?) -> [String] {
        [wrk, "-t1", "-c\(connections)", "-d\(max(1, seconds))s", "--latency", "--timeout", "5s"] + (script.map { ["-s", $0] } ?? []) + headers + [url]
    }

    /// wrk's summary: rate, request count, p50 and p99, answers other than 2xx/3xx.
    static func parse(_ output: String) throws -> WrkRun {
        var result = WrkRun(requestsPerSecond: 0, requests: 0, p50: 0, p99: 0, non2xx: 0)
        for line in output.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if line.hasPrefix("Requests/sec:"), fields.count >= 2 { result.requestsPerSecond = Double(fields[1]) ?? 0 }
            if line.hasPrefix("50%"), fields.count >= 2 { result.p50 = Self.seconds(fields[1]) }
            if line.hasPrefix("99%"), fields.count >= 2 { result.p99 = Self.seconds(fields[1]) }
            if line.contains("requests in"), let count = Int(fields[0]) { result.requests = count }
            if line.hasPrefix("Non-2xx or 3xx responses:"), let count = Int(fields.last ?? "") { result.non2xx = count }
            if line.hasPrefix("Socket errors:") { print("  wrk: \(line)") }
        }
        guard result.requestsPerSecond > 0 else { throw BenchError.failed("wrk printed no rate:\n\(output)") }
        return result
    }

    /// Writes `count` distinct signed deliveries (`hmac` scheme: `sha256=` and the hex HMAC-SHA256 of the body
    /// under `secret`) to `path + ".lines"` and a wrk script at `path` that sends each once, in order, with
    /// event id `<tag>-<n>`. Every body differs (its data id carries `tag` and n): a scheme without a signed
    /// timestamp declines a body it has seen as a replay, whatever the event id, so a benchmark sending
    /// one body again and again measures duplicate declines, not ingest. Past `count` requests the
    /// deliveries repeat (and are declined): size `count` above what one run can send.
    static func writeWebhookScript(_ path: String, signatureHeader: String, secret: String, tag: String, count: Int) throws {
        let key = SymmetricKey(data: Array(secret.utf8))
        var lines = ""
        lines.reserveCapacity(count * 160)
        for n in 1...count {
            let body = #"{"type":"contact.updated","data":{"id":"c-\#(tag)-\#(n)","email":"ada@example.test","plan":"enterprise","seats":42}}"#
            lines += "sha256=" + Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: key)) + "\t" + body + "\n"
        }
        try lines.write(toFile: path + ".lines", atomically: true, encoding: .utf8)
        try """
            wrk.method = "POST"
            wrk.headers["Content-Type"] = "application/json"
            local signatures, bodies = {}, {}
            for line in io.lines("\(path).lines") do
              local tab = line:find("\t", 1, true)
              signatures[#signatures + 1] = line:sub(1, tab - 1)
              bodies[#bodies + 1] = line:sub(tab + 1)
            end
            -- The request wrk may send before calling request(): the first delivery.
            wrk.body = bodies[1]
            wrk.headers["\(signatureHeader)"] = signatures[1]
            wrk.headers["X-Event-Id"] = "\(tag)-1"
            local n = 0
            request = function()
              n = n + 1
              local i = (n - 1) % #bodies + 1
              wrk.headers["\(signatureHeader)"] = signatures[i]
              wrk.headers["X-Event-Id"] = "\(tag)-" .. i
              return wrk.format(nil, nil, nil, bodies[i])
            end
            """.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// wrk's durations ("812.00us", "1.23ms", "2.00s") in seconds.
    static func seconds(_ text: String) -> Double {
        for (suffix, scale) in [("us", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0)] where text.hasSuffix(suffix) {
            return (Double(text.dropLast(suffix.count)) ?? 0) * scale
        }
        return Double(text) ?? 0
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
    }
}
