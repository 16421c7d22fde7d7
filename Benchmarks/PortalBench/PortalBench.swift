import ArgumentParser
import Foundation
import Integrations
import Ledger
import Logging
import PortalCore
import PortalServer
import PortalTestSupport
import Storage

/// `make bench`: the ledger's and the gateway's performance figures (issues 4 and 5, DESIGN section 8) in one release-mode run,
/// each against a baseline measured in the same run on the same machine.
@main
struct PortalBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portal-bench",
        abstract: "Ledger and gateway benchmarks: append vs plain INSERTs (SQLite, PostgreSQL), verification vs openssl, proof latency, export and offline verification; the gateway's proxy vs nginx under wrk."
    )

    @Option(help: "The portal executable for the export and offline-verification runs (built in release mode).")
    var portal: String = ".build/release/portal"

    @Option(help: "Concurrent writers in the append benchmark.")
    var writers: Int = 64

    @Option(help: "Events each writer appends, one at a time, per round.")
    var eventsPerWriter: Int = 400

    @Option(help: "Rounds of the append benchmark (ledger and baseline alternate; the median is reported).")
    var rounds: Int = 5

    @Option(help: "Entries of the large ledger (proofs, verification, export).")
    var entries: Int = 1_000_000

    @Option(help: "Entries of the small ledger whose export and verification memory is compared with the large one's.")
    var smallEntries: Int = 100_000

    @Option(help: "Proofs of each kind sampled for latency.")
    var samples: Int = 10_000

    @Option(help: "Write the figures as a Markdown table to this file as well.")
    var markdown: String?

    @Flag(help: "Skip the PostgreSQL append benchmark even when PORTAL_TEST_POSTGRES_URL is set.")
    var noPostgres = false

    @Option(help: "Seconds of each wrk run in the gateway and webhook benchmarks.")
    var gatewaySeconds: Int = 10

    @Option(help: "wrk connections in the gateway and webhook benchmarks.")
    var gatewayConnections: Int = 32

    @Option(help: "Requests per console page and per API call it is compared with.")
    var consoleSamples: Int = 200

    @Option(help: "Run only one part: append, large, gateway, webhooks, sync, monitoring, console or scaleout (for profiling).")
    var only: String?

    @Option(help: "Records in the sync benchmark's full sync.")
    var syncRecords: Int = 100_000

    @Option(help: "Keep the large ledger's bundles, verifier keys and unpacked folder in this folder (for profiling).")
    var keep: String?

    @Option(help: "Backends of the large-ledger benchmark, comma-separated: sqlite, postgres (PostgreSQL needs PORTAL_TEST_POSTGRES_URL).")
    var largeBackends: String = "sqlite"

    @Option(help: "Parts of the large-ledger benchmark, comma-separated: export, soc2, size, proofs, verify (default: all).")
    var largeParts: String?

    func run() async throws {
        let portalPath = URL(fileURLWithPath: portal).standardizedFileURL.path
        guard FileManager.default.isExecutableFile(atPath: portalPath) else {
            throw ValidationError("no portal executable at \(portalPath); build it with 'swift build -c release --product portal'")
        }
        // The servers started here call out through integrations made a moment before (no approvals), and
        // measure one token as fast as it goes (no API rate limit) (issue 21).
        setenv("PORTAL_APPROVALS", "off", 1)
        setenv("PORTAL_API_TOKEN_RATE", "off", 1)
        setenv("PORTAL_API_ORG_RATE", "off", 1)
        let report = Report()
        let started = ContinuousClock.now
        print("portal-bench: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory >> 30) GiB, \(Timestamp.rfc3339(Date()))")

        if only == nil || only == "append" {
            let append = AppendBenchmark(writers: writers, eventsPerWriter: eventsPerWriter, rounds: rounds)
            print("\n== Append: \(writers) concurrent writers, durable group commit, vs plain INSERTs in 512-row transactions")
            try await append.run(.sqlite, report: report)
            if Backend.available.contains(.postgres), !noPostgres {
                try await append.run(.postgres, report: report)
            } else {
                print("  PostgreSQL: skipped (PORTAL_TEST_POSTGRES_URL is not set; 'make bench' starts a server)")
            }
        }
        if only == "verify-folder", let keep {
            // Profiling aid: verify an unpacked bundle folder (of --entries entries) ten times.
            let source = DirectoryLedgerSource(root: URL(fileURLWithPath: keep))
            let (_, elapsed) = try await timed {
                for _ in 0..<10 {
                    let result = try await LedgerVerifier().verify(source: source, slug: "bench", size: Int64(entries), head: nil, checkpoints: [])
                    guard result.passed else { throw BenchError.failed("verification failed") }
                }
            }
            print("verified \(entries) entries ten times: \(rate(entries * 10, elapsed))")
        }
        if only == nil || only == "large" {
            for name in largeBackends.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                guard let backend = Backend(rawValue: name), Backend.available.contains(backend) else {
                    throw ValidationError("--large-backends: \(name) is not an available backend (sqlite; postgres with PORTAL_TEST_POSTGRES_URL)")
                }
                var large = LargeLedgerBenchmark(backend: backend, portal: portalPath, entries: entries, smallEntries: smallEntries, samples: samples, keep: keep)
                if let largeParts {
                    large.parts = Set(largeParts.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                    guard large.parts.isSubset(of: LargeLedgerBenchmark.allParts) else {
                        throw ValidationError("--large-parts: one of \(LargeLedgerBenchmark.allParts.sorted().joined(separator: ", "))")
                    }
                }
                try await large.run(report: report)
            }
        }

        if only == nil || only == "gateway" {
            let gateway = GatewayBenchmark(portal: portalPath, duration: gatewaySeconds, connections: gatewayConnections, rounds: min(rounds, 3))
            try await gateway.run(report: report)
        }

        if only == nil || only == "webhooks" {
            let webhooks = WebhookBenchmark(portal: portalPath, duration: gatewaySeconds, connections: gatewayConnections, rounds: min(rounds, 3))
            try await webhooks.run(report: report)
        }

        if only == nil || only == "sync" {
            try await SyncBenchmark(portal: portalPath, records: syncRecords).run(report: report)
        }

        if only == nil || only == "monitoring" {
            try await MonitoringBenchmark(portal: portalPath, duration: gatewaySeconds, connections: gatewayConnections, rounds: min(rounds, 3)).run(report: report)
        }

        if only == nil || only == "console" {
            try await ConsoleBenchmark(portal: portalPath, samples: consoleSamples).run(report: report)
        }

        if only == nil || only == "scaleout" {
            try await ScaleOutBenchmark(portal: portalPath, duration: gatewaySeconds, connections: gatewayConnections, rounds: min(rounds, 3)).run(report: report)
        }

        print("\n== Summary (\(String(format: "%.0f", seconds(since: started))) s)\n")
        print(report.markdown)
        if let markdown {
            try report.markdown.write(toFile: markdown, atomically: true, encoding: .utf8)
        }
        if report.rows.contains(where: { $0.met == false }) {
            print("portal-bench: at least one target was missed (see the table)")
        }
    }
}

/// A realistic entry: one gateway call as the gateway records it.
func sampleEvent(organizationID: UUID, integrationID: UUID, n: Int) -> AuditEvent {
    AuditEvent(
        organizationID: organizationID, type: .requestCompleted, actor: "tok_0192f0c4-7b1e-7cc2-9a51-3f0e8d6b2a41",
        integrationID: integrationID,
        data: [
            "method": "GET", "endpoint": "/v1/users/{id}", "host": "api.example.test", "status": 200, "outcome": "success",
            "durationMicros": .int(Int64(800 + n % 4000)), "attempt": 1, "cache": "miss",
            "requestId": .string(UUID().uuidString.lowercased()),
        ],
        time: Date()
    )
}

let benchLogger: Logger = {
    var logger = Logger(label: "portal.bench")
    logger.logLevel = .error
    return logger
}()

/// Creates (or finds) the organization `slug` and returns its id.
func benchOrganization(_ database: Database, slug: String = "bench", id: UUID = UUID()) async throws -> UUID {
    try await database.write { db in
        try await OrganizationStore(db).findOrCreate(slug: slug, name: "Benchmark", id: id, at: Date()).0.id
    }
}
