import Foundation
import Ledger
import PortalCore
import PortalTestSupport
import Storage

/// Append throughput: `writers` tasks each append one event at a time and wait for it to be durable (the
/// sequencer's group commit), against plain INSERTs of the same rows into the same table of a fresh
/// database, in 512-row transactions, at the same durability (SQLite WAL with synchronous=FULL; PostgreSQL
/// defaults, with fsync on).
struct AppendBenchmark {
    var writers: Int
    var eventsPerWriter: Int
    var rounds: Int

    func run(_ backend: Backend, report: Report) async throws {
        var ledgerRates: [Double] = []
        var plainRates: [Double] = []
        for round in 1...rounds {
            let (rows, organizationID, ledgerSeconds, batches) = try await TestDatabase.with(backend, logger: benchLogger) { _, db in
                try await appendThroughSequencer(db)
            }
            let plainSeconds = try await TestDatabase.with(backend, logger: benchLogger) { _, db in
                try await insertPlain(db, rows: rows, organizationID: organizationID)
            }
            ledgerRates.append(Double(rows.count) / ledgerSeconds)
            plainRates.append(Double(rows.count) / plainSeconds)
            print("  \(backend) round \(round): ledger \(rate(rows.count, ledgerSeconds)) (\(batches) batches, \(rows.count / max(1, batches)) entries each), plain INSERTs \(rate(rows.count, plainSeconds)) (\(rows.count) rows)")
        }
        // Each round's ledger and baseline run back to back, so the ratio is taken per round (the machine's
        // load drifts between rounds) and the median ratio is reported.
        let ratio = Percentiles(zip(ledgerRates, plainRates).map { $0 / $1 }).p50
        report.add(
            "append, \(backend), \(writers) writers (median of \(rounds) rounds)", formatted(Percentiles(ledgerRates).p50) + " entries/s",
            baseline: formatted(Percentiles(plainRates).p50) + " rows/s", ratio: ratio, target: "≥ 0.70", met: ratio >= 0.7
        )
    }

    /// Runs the sequencer as the server does and `writers` concurrent appenders; returns the rows it wrote.
    private func appendThroughSequencer(_ db: Database) async throws -> ([LedgerEntryRow], UUID, Double, Int) {
        let organizationID = try await benchOrganization(db)
        let integrationID = UUID()
        let sequencer = LedgerSequencer(database: db, logger: benchLogger)
        let (writers, perWriter) = (self.writers, eventsPerWriter)
        // The events exist before the clock starts: what is measured is the ledger, not the load generator.
        let events = (0..<writers).map { w in
            (0..<perWriter).map { i in sampleEvent(organizationID: organizationID, integrationID: integrationID, n: w * perWriter + i) }
        }
        let elapsed = try await withThrowingTaskGroup(of: Void.self) { group -> Double in
            group.addTask { try await sequencer.run() }
            let (_, elapsed) = try await timed {
                try await withThrowingTaskGroup(of: Void.self) { appenders in
                    for w in 0..<writers {
                        let mine = events[w]
                        appenders.addTask {
                            for event in mine { try await sequencer.append([event]) }
                        }
                    }
                    try await appenders.waitForAll()
                }
            }
            group.cancelAll()
            return elapsed
        }
        let total = writers * perWriter
        let rows = try await db.read { tx in try await LedgerStore(tx).entries(organizationID, from: 0, limit: total) }
        guard rows.count == total else { throw BenchError.failed("the ledger holds \(rows.count) entries, \(total) were appended") }
        return (rows, organizationID, elapsed, sequencer.statistics.batches)
    }

    /// The baseline: the same rows into the same table, 512 to a transaction, one writer.
    private func insertPlain(_ db: Database, rows: [LedgerEntryRow], organizationID: UUID) async throws -> Double {
        _ = try await benchOrganization(db, id: organizationID)
        let (_, elapsed) = try await timed {
            for start in stride(from: 0, to: rows.count, by: 512) {
                let chunk = Array(rows[start..<min(start + 512, rows.count)])
                try await db.write { tx in
                    let store = LedgerStore(tx)
                    for row in chunk { try await store.insertEntry(organizationID, row) }
                }
            }
        }
        return elapsed
    }
}
