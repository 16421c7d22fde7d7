import Foundation
import Ledger
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Synchronization
import Testing

/// A ledger verified while the sequencer appends to it: the verifier works as of the size it read first,
/// so a writer moving on never reads as tampering, and tampering is still caught.
@Suite("Verifying a moving ledger")
struct MovingLedgerTests {
    /// A database source that runs `between` once, the first time a tile is read: the moment a writer
    /// extends the partial tiles after the verifier has read the head.
    final class InterleavedSource: LedgerSource {
        let base: DatabaseLedgerSource
        let between: @Sendable () async throws -> Void
        let done = Mutex(false)

        init(base: DatabaseLedgerSource, between: @escaping @Sendable () async throws -> Void) {
            self.base = base
            self.between = between
        }

        func entries(from: Int64, limit: Int) async throws -> [LedgerEntryRow] {
            try await base.entries(from: from, limit: limit)
        }

        func tile(level: Int, index: Int64) async throws -> [UInt8]? {
            if done.withLock({ d in defer { d = true }; return !d }) { try await between() }
            return try await base.tile(level: level, index: index)
        }

        func currentSize() async throws -> Int64? { try await base.currentSize() }
    }

    /// What the verify-under-load test's tasks share.
    final class Tally: Sendable {
        let writing = Atomic<Bool>(true)
        let failures = Mutex<[String]>([])
        let verifications = Atomic<Int>(0)
    }

    @Test("entries appended between reading the head and reading the tiles are no tampering", arguments: Backend.available)
    func appendedWhileReading(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            try await ledger.sequencer.append((0..<300).map { ledger.event($0) })
            let head = try #require(try await ledger.db.read { db in try await LedgerStore(db).head(ledger.org.id) })
            let source = InterleavedSource(base: DatabaseLedgerSource(database: ledger.db, organizationID: ledger.org.id)) {
                // Extends the partial level-0 tile 1 (44 hashes) and the partial level-1 tile 0.
                try await ledger.sequencer.append((300..<340).map { ledger.event($0) })
            }
            let result = try await LedgerVerifier(pageSize: 97).verify(source: source, slug: ledger.org.slug, size: head.size, head: head, checkpoints: [])
            #expect(result.passed, "\(String(describing: result.failure))")
            #expect(result.size == 300)
            #expect(result.root == head.root)
            #expect(try await ledger.verify().size == 340)
        }
    }

    @Test("an edge tile longer than the ledger's current size is still tampering", arguments: Backend.available)
    func tileLongerThanLedger(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            try await ledger.sequencer.append((0..<300).map { ledger.event($0) })
            try await ledger.db.write { tx in
                let store = LedgerStore(tx)
                let stored = try #require(try await store.tile(ledger.org.id, level: 0, index: 1))
                #expect(stored.count == 44 * 32)
                try await store.putTile(ledger.org.id, level: 0, index: 1, hashes: stored + [UInt8](repeating: 7, count: 32))
            }
            let result = try await ledger.verify()
            #expect(result.failure?.message.contains("tile 0/1 does not match") == true, "\(String(describing: result.failure))")
        }
    }

    @Test("verify in a loop while appends stream in and checkpoints are cut: no false failure", arguments: Backend.available)
    func verifyUnderLoad(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            try await ledger.sequencer.append((0..<100).map { ledger.event($0) })
            let tally = Tally()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // 1,600 entries in batches of 1 to 61, from four concurrent writers, with a checkpoint
                    // (published) after every tenth batch: tiles at every level grow while the verifier reads.
                    try await withThrowingTaskGroup(of: Void.self) { writers in
                        for writer in 0..<4 {
                            writers.addTask {
                                var next = 100 + writer * 400
                                var batch = 0
                                while next < 100 + (writer + 1) * 400 {
                                    let count = min(1 + (batch * 7 + writer * 13) % 61, 100 + (writer + 1) * 400 - next)
                                    try await ledger.sequencer.append((next..<(next + count)).map { ledger.event($0) })
                                    next += count
                                    batch += 1
                                    if batch % 10 == 0 { _ = try await ledger.checkpointer.cut(organizationID: ledger.org.id, slug: ledger.org.slug) }
                                }
                            }
                        }
                        try await writers.waitForAll()
                    }
                    tally.writing.store(false, ordering: .releasing)
                }
                group.addTask {
                    // Verifies until the writers are done, and at least five times.
                    while tally.writing.load(ordering: .acquiring) || tally.verifications.load(ordering: .relaxed) < 5 {
                        let result = try await ledger.verify(published: true)
                        tally.verifications.add(1, ordering: .relaxed)
                        if let failure = result.failure { tally.failures.withLock { $0.append("seq \(failure.seq): \(failure.message)") } }
                    }
                }
                try await group.waitForAll()
            }
            #expect(tally.failures.withLock { $0 } == [], "false tamper verdicts while the ledger grew")
            #expect(tally.verifications.load(ordering: .relaxed) >= 5)
            _ = try await ledger.checkpointer.cut(organizationID: ledger.org.id, slug: ledger.org.slug)
            let final = try await ledger.verify(published: true)
            #expect(final.passed, "\(String(describing: final.failure))")
            #expect(final.size == 1_700)
        }
    }
}
