import Foundation
import Integrations
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import Storage

/// The auditor's side on one large ledger (SQLite or PostgreSQL): proof latency, verification throughput against
/// `openssl dgst -sha256` over the same canonical bytes, and export plus offline verification (time and
/// peak memory of the `portal` processes) at two sizes, to show memory does not grow with the ledger.
struct LargeLedgerBenchmark {
    var backend: Backend = .sqlite
    var portal: String
    var entries: Int
    var smallEntries: Int
    var samples: Int
    /// Keep the bundles, keys and unpacked folder here (for profiling) instead of a temporary folder.
    var keep: String?
    /// The parts to run: export (with offline verification), soc2, size, proofs, verify (throughput).
    var parts: Set<String> = LargeLedgerBenchmark.allParts

    static let allParts: Set<String> = ["export", "soc2", "size", "proofs", "verify"]

    func run(report: Report) async throws {
        let work = keep.map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory.appendingPathComponent("portal-bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { if keep == nil { try? FileManager.default.removeItem(at: work) } }
        let keyFile = work.appendingPathComponent("master.key").path
        try MasterKeyRing.writeKeyFile(keyFile, keys: [MasterKeyRing.generateBase64()])

        try await TestDatabase.with(backend, logger: benchLogger) { test, db in
            var settings = PortalSettings()
            settings.databaseURL = test.url
            settings.masterKeyFile = keyFile
            let services = try PortalServices(settings: settings, database: db, logger: benchLogger)
            let organizationID = try await benchOrganization(db)
            let ledger = Grower(database: db, organizationID: organizationID)
            let vkeys = try await services.checkpointer.verifierKeys(slug: "bench").map(\.text)
            if keep != nil { try vkeys.joined(separator: "\n").write(to: work.appendingPathComponent("vkeys"), atomically: true, encoding: .utf8) }
            let cli = CLI(portal: portal, databaseURL: test.url, keyFile: keyFile, vkeys: vkeys)

            print("\n== Export and offline verification (\(backend); the portal CLI's processes, peak RSS from GNU time)")
            let grownSmall = try await timed { try await ledger.grow(to: smallEntries) }.seconds
            print("  built \(smallEntries) entries in \(String(format: "%.1f", grownSmall)) s (\(rate(smallEntries, grownSmall)), batches of 4096)")
            guard let smallCheckpoint = try await services.checkpointer.cut(organizationID: organizationID, slug: "bench") else {
                throw BenchError.failed("no checkpoint was cut")
            }
            let small = parts.contains("export") || parts.contains("verify") ? try cli.exportAndVerify(entries: smallEntries, bundle: work.appendingPathComponent("small.tar.zst").path) : nil
            let smallReport = parts.contains("soc2") ? try cli.soc2(at: smallCheckpoint.size, bundle: work.appendingPathComponent("small-soc2.tar.zst").path) : nil

            let grownLarge = try await timed { try await ledger.grow(to: entries) }.seconds
            print("  built \(entries - smallEntries) more entries in \(String(format: "%.1f", grownLarge)) s (\(rate(entries - smallEntries, grownLarge)))")
            guard let largeCheckpoint = try await services.checkpointer.cut(organizationID: organizationID, slug: "bench") else {
                throw BenchError.failed("no checkpoint was cut")
            }
            let largeBundle = work.appendingPathComponent("large.tar.zst").path
            let large = small != nil ? try cli.exportAndVerify(entries: entries, bundle: largeBundle) : nil
            if let smallReport {
                let largeReport = try cli.soc2(at: largeCheckpoint.size, bundle: work.appendingPathComponent("large-soc2.tar.zst").path)
                let reportGrowth = Double(largeReport.maxRSSKiB) / Double(smallReport.maxRSSKiB)
                report.add(
                    "SOC 2 bundle of a period of \(formatted(Double(entries))) entries: time, peak RSS", String(format: "%.1f s, %@", largeReport.seconds, mebibytes(largeReport.maxRSSKiB)),
                    baseline: "\(formatted(Double(smallEntries))) entries: \(String(format: "%.1f s, %@", smallReport.seconds, mebibytes(smallReport.maxRSSKiB)))",
                    ratio: reportGrowth, target: "peak RSS flat (ratio ≤ 1.25 for 10× the entries)", met: reportGrowth <= 1.25
                )
            }
            if let small, let large {
                for (name, s, l) in [("export", small.export, large.export), ("offline verify", small.verify, large.verify)] {
                    let growth = Double(l.maxRSSKiB) / Double(s.maxRSSKiB)
                    report.add(
                        "\(name) of \(formatted(Double(entries))) entries: time, peak RSS", String(format: "%.1f s, %@", l.seconds, mebibytes(l.maxRSSKiB)),
                        baseline: "\(formatted(Double(smallEntries))) entries: \(String(format: "%.1f s, %@", s.seconds, mebibytes(s.maxRSSKiB)))",
                        ratio: growth, target: "peak RSS flat (ratio ≤ 1.25 for 10× the entries)", met: growth <= 1.25
                    )
                }
            }

            if parts.contains("size") {
                let bytes = try await db.bytesOnDisk()
                report.add(
                    "database size per entry, \(backend), \(formatted(Double(entries))) entries (entries, tiles, checkpoints, indexes)",
                    String(format: "%.0f bytes (%@ in all)", Double(bytes) / Double(entries), mebibytes(Int(bytes / 1024)))
                )
            }
            if parts.contains("proofs") {
                print("\n== Proof latency on the \(formatted(Double(entries)))-entry ledger (\(backend), LedgerReader: tiles cached in memory, misses read without a transaction)")
                try await proofLatency(db: db, organizationID: organizationID, small: smallCheckpoint, large: largeCheckpoint, report: report)
            }
            if parts.contains("verify"), large != nil {
                print("\n== Verification throughput, one core (exported folder on disk) vs openssl dgst -sha256 over the same canonical bytes")
                try await verificationThroughput(bundle: largeBundle, work: work, checkpoint: largeCheckpoint, report: report)
            }
        }
    }

    private func proofLatency(db: Database, organizationID: UUID, small: LedgerCheckpointRow, large: LedgerCheckpointRow, report: Report) async throws {
        let reader = LedgerReader(database: db)
        let size = large.size
        var generator = SystemRandomNumberGenerator()
        var inclusion: [Double] = []
        var checked = 0
        for i in 0..<samples {
            let seq = Int64.random(in: 0..<size, using: &generator)
            let start = ContinuousClock.now
            let proof = try await reader.inclusionProof(organizationID, seq: seq, size: size)
            inclusion.append(seconds(since: start))
            if i < 200 {
                guard let entry = try await reader.entries(organizationID, from: seq, limit: 1).first,
                      Merkle.verifyInclusion(index: seq, size: size, leafHash: entry.hash, proof: proof, root: large.root)
                else { throw BenchError.failed("the inclusion proof of \(seq) does not verify") }
                checked += 1
            }
        }
        var consistency: [Double] = []
        for _ in 0..<samples {
            let old = Int64.random(in: 1..<size, using: &generator)
            let start = ContinuousClock.now
            _ = try await reader.consistencyProof(organizationID, old: old, new: size)
            consistency.append(seconds(since: start))
        }
        let proof = try await reader.consistencyProof(organizationID, old: small.size, new: size)
        guard Merkle.verifyConsistency(size1: small.size, size2: size, root1: small.root, root2: large.root, proof: proof) else {
            throw BenchError.failed("the consistency proof \(small.size) -> \(size) does not verify")
        }
        print("  \(checked) inclusion proofs and the consistency proof \(small.size) -> \(size) verified against the signed roots")
        for (name, values) in [("inclusion", inclusion), ("consistency", consistency)] {
            let p = Percentiles(values)
            report.add(
                "\(name) proof latency, \(backend), \(formatted(Double(size))) entries (\(values.count) samples)",
                "p50 \(milliseconds(p.p50)), p99 \(milliseconds(p.p99)), max \(milliseconds(p.max))",
                target: backend == .sqlite ? "p99 < 1 ms" : "p99 < 2 ms", met: p.p99 < (backend == .sqlite ? 0.001 : 0.002)
            )
        }
    }

    private func verificationThroughput(bundle: String, work: URL, checkpoint: LedgerCheckpointRow, report: Report) async throws {
        let folder = try LedgerBundleVerifier().unpack(bundle: bundle, into: work)
        let source = DirectoryLedgerSource(root: folder)
        let size = checkpoint.size
        var best = Double.infinity
        for _ in 0..<3 {
            let (result, elapsed) = try await timed {
                try await LedgerVerifier().verify(
                    source: source, slug: "bench", size: size, head: nil,
                    checkpoints: [ExpectedCheckpoint(size: size, root: checkpoint.root, source: "benchmark checkpoint")]
                )
            }
            guard result.passed else { throw BenchError.failed("verification failed: \(result.failure.map { "\($0.seq): \($0.message)" } ?? "")") }
            best = min(best, elapsed)
        }
        // The baseline hashes exactly the canonical entry bytes, concatenated, in one stream.
        let canonical = work.appendingPathComponent("canonical.bin")
        guard FileManager.default.createFile(atPath: canonical.path, contents: nil) else { throw BenchError.failed("cannot write \(canonical.path)") }
        let handle = try FileHandle(forWritingTo: canonical)
        var bytes = 0
        var from: Int64 = 0
        while from < size {
            let rows = try await source.entries(from: from, limit: 4096)
            for row in rows {
                try handle.write(contentsOf: row.bytes)
                bytes += row.bytes.count
            }
            from += Int64(rows.count)
        }
        try handle.close()
        guard let openssl = which("openssl") else { throw BenchError.failed("openssl is not installed") }
        var opensslBest = Double.infinity
        for _ in 0..<3 {
            opensslBest = min(opensslBest, try runChecked([openssl, "dgst", "-sha256", canonical.path]).seconds)
        }
        // Where the time goes: the canonical-form scan and the leaf hash alone, over the same bytes in memory.
        let page = try await source.entryPage(from: 0, limit: Int(min(size, 65_536)))
        let (scanned, scanSeconds) = page.bytes.withUnsafeBytes { bytes in
            let start = ContinuousClock.now
            var valid = 0
            for _ in 0..<5 { for entry in page.entries where LedgerEntry.isCanonical(UnsafeRawBufferPointer(rebasing: bytes[entry.range])) { valid += 1 } }
            return (valid, seconds(since: start))
        }
        let hashSeconds = page.bytes.withUnsafeBytes { bytes in
            var digest = [UInt8](repeating: 0, count: 32)
            let start = ContinuousClock.now
            for _ in 0..<5 {
                for entry in page.entries { digest.withUnsafeMutableBytes { Merkle.leafHash(UnsafeRawBufferPointer(rebasing: bytes[entry.range]), into: $0.baseAddress!) } }
            }
            return seconds(since: start)
        }
        guard scanned == 5 * page.entries.count else { throw BenchError.failed("an entry failed the canonical scan") }
        print("  breakdown over \(page.entries.count) entries in memory: canonical scan alone \(rate(scanned, scanSeconds)), leaf hash alone \(rate(scanned, hashSeconds))")
        let ours = Double(size) / best
        let theirs = Double(size) / opensslBest
        print("  \(formatted(Double(bytes) / Double(size))) bytes per entry on average; openssl hashes \(formatted(Double(bytes) / opensslBest / 1e6)) MB/s")
        report.add(
            "verification, \(formatted(Double(size))) entries (best of 3)", formatted(ours) + " entries/s",
            baseline: "openssl " + formatted(theirs) + " entries/s", ratio: ours / theirs,
            target: "≥ 0.50 and ≥ 1,000,000 entries/s", met: ours / theirs >= 0.5 && ours >= 1_000_000
        )
    }
}

/// Grows the benchmark ledger through the sequencer, in large batches.
struct Grower {
    let database: Database
    let organizationID: UUID

    func grow(to target: Int) async throws {
        let sequencer = LedgerSequencer(database: database, logger: benchLogger, configuration: .init(batchSize: 4096))
        let integrationID = UUID()
        let organizationID = self.organizationID
        let current = Int(try await database.read { db in try await LedgerStore(db).head(organizationID)?.size } ?? 0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sequencer.run() }
            try await withThrowingTaskGroup(of: Void.self) { appenders in
                // Two appenders keep a batch waiting while the previous one commits.
                for lane in 0..<2 {
                    appenders.addTask {
                        var n = current + lane * 4096
                        while n < target {
                            let count = min(4096, target - n)
                            try await sequencer.append((0..<count).map { sampleEvent(organizationID: organizationID, integrationID: integrationID, n: n + $0) })
                            n += 2 * 4096
                        }
                    }
                }
                try await appenders.waitForAll()
            }
            group.cancelAll()
        }
    }
}

/// The `portal` CLI, for the runs whose memory is measured.
struct CLI {
    var portal: String
    var databaseURL: String
    var keyFile: String
    var vkeys: [String]

    struct Runs {
        var export: ChildRun
        var verify: ChildRun
    }

    /// `portal report soc2` of today's period, cut at `at`: every entry of the benchmark ledger is a call, so
    /// the whole ledger goes through CC6.7's population.
    func soc2(at: Int64, bundle: String) throws -> ChildRun {
        let today = String(Timestamp.rfc3339(Date()).prefix(10))
        let run = try runMeasured([
            portal, "report", "soc2", "--org", "bench", "--from", today, "--to", today, "--at", String(at), "--out", bundle, "--database", databaseURL, "--master-key-file", keyFile,
        ])
        let bytes = (try? FileManager.default.attributesOfItem(atPath: bundle)[.size] as? Int) ?? 0
        print("  SOC 2 bundle at tree size \(at): \(String(format: "%.2f", run.seconds)) s, peak RSS \(mebibytes(run.maxRSSKiB)), \(formatted(Double(bytes) / 1_048_576)) MiB .tar.zst")
        return run
    }

    func exportAndVerify(entries: Int, bundle: String) throws -> Runs {
        let export = try runMeasured([portal, "ledger", "export", "--org", "bench", "--out", bundle, "--database", databaseURL, "--master-key-file", keyFile])
        let bytes = (try? FileManager.default.attributesOfItem(atPath: bundle)[.size] as? Int) ?? 0
        print("  export of \(entries) entries: \(String(format: "%.2f", export.seconds)) s, peak RSS \(mebibytes(export.maxRSSKiB)), \(formatted(Double(bytes) / 1_048_576)) MiB .tar.zst")
        let verify = try runMeasured([portal, "ledger", "verify", "--bundle", bundle] + vkeys.flatMap { ["--vkey", $0] })
        print("  offline verification: \(String(format: "%.2f", verify.seconds)) s, peak RSS \(mebibytes(verify.maxRSSKiB))")
        return Runs(export: export, verify: verify)
    }
}
