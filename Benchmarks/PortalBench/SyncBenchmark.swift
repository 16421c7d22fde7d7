import Foundation
import Integrations
import PortalCore
import PortalTestSupport

/// Issue 7's benchmark: a full sync of 100,000 users from a provider on loopback (the fake provider in this
/// process, cursor pages of 1,000) by a release `portal serve`, on SQLite and PostgreSQL: records synced per
/// second, and the server's peak memory (VmHWM) against a 10,000-record sync on a fresh server, which must
/// not grow with the record count. Baseline, in the same run: the same pages fetched by curl one after the
/// other, parsed by nobody: the floor of any sync over this provider.
struct SyncBenchmark {
    let portal: String
    let records: Int

    func run(report: Report) async throws {
        guard let curl = which("curl") else { throw BenchError.failed("curl is needed") }
        let rows = try await FakeProvider.with { provider -> [(String, String, String, Double, Bool)] in
            var rows: [(String, String, String, Double, Bool)] = []
            provider.seed(records)
            print("\n== Sync: a full sync of \(formatted(Double(records))) users from a provider on loopback (cursor pages of 1,000); baseline: curl fetching the same pages")
            let baseline = try fetchAll(curl, provider: provider)
            let baselineRate = Double(records) / baseline
            print("  curl, all pages in sequence: \(String(format: "%.2f", baseline)) s, \(formatted(baselineRate)) records/s")
            var backends: [(String, @Sendable () async throws -> (url: String, drop: @Sendable () async -> Void))] = []
            let work = FileManager.default.temporaryDirectory.appendingPathComponent("portal-bench-sync-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: work) }
            backends.append(("sqlite", { ("sqlite://\(work.path)/sync-\(UUID().uuidString.prefix(6)).sqlite", {}) }))
            if Backend.available.contains(.postgres) {
                backends.append(("postgres", {
                    let database = try await TestDatabase.create(.postgres)
                    return (database.url, { await database.drop() })
                }))
            }
            for (backend, make) in backends {
                let small = try await make()
                let smallRun = try await sync(curl, provider: provider, databaseURL: small.url, work: work, limit: records / 10)
                await small.drop()
                let large = try await make()
                let largeRun = try await sync(curl, provider: provider, databaseURL: large.url, work: work, limit: nil)
                await large.drop()
                let rate = Double(records) / largeRun.seconds
                print("  \(backend): \(formatted(Double(records))) records in \(String(format: "%.1f", largeRun.seconds)) s, peak RSS \(largeRun.peakMiB) MiB; \(formatted(Double(records / 10))) records: peak RSS \(smallRun.peakMiB) MiB")
                rows.append((
                    "full sync, \(backend), \(formatted(Double(records))) records, cursor pages of 1,000, provider on loopback",
                    "\(formatted(rate)) records/s; server peak RSS \(largeRun.peakMiB) MiB (\(smallRun.peakMiB) MiB for \(formatted(Double(records / 10))))",
                    "curl fetching the pages: \(formatted(baselineRate)) records/s", rate / baselineRate,
                    Double(largeRun.peakMiB) <= Double(smallRun.peakMiB) * 1.25 + 8
                ))
            }
            return rows
        }
        for row in rows {
            report.add(row.0, row.1, baseline: row.2, ratio: row.3, target: "memory flat", met: row.4)
        }
    }

    /// Seconds curl takes to fetch every page of the list, one after the other.
    private func fetchAll(_ curl: String, provider: FakeProvider) throws -> Double {
        let started = Date()
        var after: String?
        var pages = 0
        repeat {
            let url = "\(provider.baseURL)/cursor/users?limit=1000" + (after.map { "&after=\($0)" } ?? "")
            let page = try JSONValue.parse(Data(try runChecked([curl, "-sS", "-f", url]).output.utf8))
            after = page.objectValue?["meta"]?.objectValue?["next"]?.stringValue
            pages += 1
        } while after != nil
        guard pages >= records / 1000 else { throw BenchError.failed("the provider served \(pages) pages") }
        return Date().timeIntervalSince(started)
    }

    /// Runs one full sync on a fresh server; `limit` caps the records (a shorter list, same provider).
    private func sync(_ curl: String, provider: FakeProvider, databaseURL: String, work: URL, limit: Int?) async throws -> (seconds: Double, peakMiB: Int) {
        let port = try NanoIDP.freePort()
        let pid = try ChildProcess.spawn(portal, [
            "serve", "--port", String(port), "--database", databaseURL, "--master-key-file", try benchKeyFile(work), "--log-level", "error",
            "--outbound-allow", "127.0.0.1",
        ], output: work.appendingPathComponent("portal-sync.log").path)
        defer { ChildProcess.stop(pid) }
        let base = "http://127.0.0.1:\(port)"
        try await Wrk.waitUntilUp(curl, "\(base)/healthz")
        let token = try runChecked([portal, "token", "create", "--org", "bench", "--role", "admin", "--owner", "bench", "--database", databaseURL])
            .output.split(separator: "\n").last.map(String.init) ?? ""
        let auth = ["-H", "Authorization: Bearer \(token)", "-H", "Content-Type: application/json"]
        // A shorter list: stop at a record id (the provider's ids are ordered), through the mapping-free config.
        let endpoint = limit.map { "/cursor/users?before=\(String(format: "u-%06d", $0 + 1))" } ?? "/cursor/users"
        let body = """
            {"name":"Directory","type":"identity_provider","baseUrl":"\(provider.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-0123456789"},
             "syncConfig":{"entities":{"users":{"endpoint":"\(endpoint)","itemsPath":"/data","pagination":{"style":"cursor","cursorParam":"after","nextCursorPath":"/meta/next","pageSizeParam":"limit","pageSize":1000}}}}}
            """
        let integration = try JSONValue.parse(Data(try runChecked([curl, "-sS", "-f", "-X", "POST", "\(base)/portal/integrations"] + auth + ["-d", body]).output.utf8))
            .objectValue?["id"]?.stringValue ?? ""
        let started = Date()
        let jobs = try JSONValue.parse(Data(try runChecked([curl, "-sS", "-f", "-X", "POST", "\(base)/portal/integrations/\(integration)/sync"] + auth + ["-d", #"{"syncType":"full"}"#]).output.utf8))
        guard let job = jobs.objectValue?["jobs"]?.arrayValue?.first?.objectValue?["id"]?.stringValue else { throw BenchError.failed("the sync did not start: \(jobs)") }
        var status = "running"
        var view: JSONValue = .null
        while status == "running" {
            try await Task.sleep(for: .milliseconds(100))
            view = try JSONValue.parse(Data(try runChecked([curl, "-sS", "-f", "\(base)/portal/integrations/\(integration)/sync/jobs/\(job)"] + auth).output.utf8))
            status = view.objectValue?["status"]?.stringValue ?? "?"
            guard Date().timeIntervalSince(started) < 1800 else { throw BenchError.failed("the sync took more than 30 minutes") }
        }
        let seconds = Date().timeIntervalSince(started)
        let expected = limit ?? records
        guard status == "completed", view.objectValue?["recordsProcessed"] == .int(Int64(expected)) else { throw BenchError.failed("the sync ended \(status): \(view)") }
        let statusFile = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let hwm = statusFile.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        return (seconds, hwm / 1024)
    }
}
