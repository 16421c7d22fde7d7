import Crypto
import Foundation
import Ledger
import Logging
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// A sealer for the ledger's signing keys in tests: AES-GCM under one key (the real one is the vault).
struct TestSealer: SecretSealer {
    let key = SymmetricKey(size: .bits256)

    func seal(_ plaintext: Data, organizationID: UUID, context: String, in db: Transaction) async throws -> JSONValue {
        ["ct": .string(try AES.GCM.seal(plaintext, using: key, authenticating: Data(context.utf8)).combined!.base64EncodedString())]
    }

    func open(_ envelope: JSONValue, organizationID: UUID, context: String, in db: Transaction) async throws -> Data {
        try AES.GCM.open(AES.GCM.SealedBox(combined: Data(base64Encoded: envelope.objectValue?["ct"]?.stringValue ?? "")!), using: key, authenticating: Data(context.utf8))
    }
}

/// A ledger on a fresh database: an organization, a sequencer and a checkpointer.
struct TestLedger {
    let test: TestDatabase
    let db: Database
    let org: Organization
    let sequencer: LedgerSequencer
    let checkpointer: LedgerCheckpointer
    let sealer: TestSealer
    let publishDirectory: String

    func event(_ i: Int, type: String = "test.event") -> AuditEvent {
        AuditEvent(organizationID: org.id, rawType: type, actor: "system:test", data: ["i": .int(Int64(i)), "note": .string("entry \(i)")], time: Date())
    }

    func verify(published: Bool = false) async throws -> LedgerVerification {
        try await LedgerVerifier(pageSize: 97).verify(
            database: db, organizationID: org.id, slug: org.slug, keys: try await checkpointer.verifierKeys(slug: org.slug),
            publishedDirectory: published ? publishDirectory : nil
        )
    }

    static func with(_ backend: Backend, _ body: (TestLedger) async throws -> Void) async throws {
        try await TestDatabase.with(backend) { (test: TestDatabase, db: Database) async throws in
            let org = Organization(id: IdentifierGenerator.shared.next(), slug: "acme", name: "Acme", createdAt: Date())
            try await db.write { try await OrganizationStore($0).insert(org) }
            let publish = FileManager.default.temporaryDirectory.appendingPathComponent("published-\(UUID().uuidString)").path
            let sealer = TestSealer()
            let ledger = TestLedger(
                test: test, db: db, org: org, sequencer: LedgerSequencer(database: db, logger: quietLogger),
                checkpointer: LedgerCheckpointer(database: db, sealer: sealer, logger: quietLogger, configuration: .init(originPrefix: "portal.example", publishDirectory: publish)),
                sealer: sealer, publishDirectory: publish
            )
            // The sequencer runs as it does in the server, for the whole test.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await ledger.sequencer.run() }
                do {
                    try await body(ledger)
                } catch {
                    group.cancelAll()
                    throw error
                }
                group.cancelAll()
            }
            try? FileManager.default.removeItem(atPath: publish)
        }
    }
}

@Suite("Ledger on storage")
struct LedgerStorageTests {
    @Test("appends chain, tile and verify; the head's root is the reference MTH", arguments: Backend.available)
    func appendAndVerify(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            try await ledger.sequencer.append((0..<300).map { ledger.event($0) })
            // 400 concurrent callers: group commit batches them.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 300..<700 { group.addTask { try await ledger.sequencer.append([ledger.event(i)]) } }
                try await group.waitForAll()
            }
            try await ledger.sequencer.drainAll()
            let rows = try await LedgerReader(database: ledger.db).entries(ledger.org.id, from: 0, limit: 10_000)
            #expect(rows.map(\.seq) == Array(0..<700))
            let leaves = rows.map { Merkle.leafHash($0.bytes) }
            let head = try #require(try await LedgerReader(database: ledger.db).head(ledger.org.id))
            #expect(head.size == 700)
            #expect(head.root == Merkle.root(of: leaves))
            let first = try LedgerEntry(canonical: rows[0].bytes)
            #expect(first.prev == LedgerEntry.zeroHash && first.org == "acme" && first.actor == "system:test")
            #expect(try LedgerEntry(canonical: rows[1].bytes).prev == Hex.encode(rows[0].hash))
            let result = try await ledger.verify()
            #expect(result.passed, "\(String(describing: result.failure))")
            #expect(result.size == 700 && result.root == head.root)
        }
    }

    @Test("an event recorded in a transaction that rolls back never reaches the ledger; one that commits always does", arguments: Backend.available)
    func outboxIsTransactional(backend: Backend) async throws {
        struct Abort: Error {}
        try await TestLedger.with(backend) { ledger in
            await #expect(throws: Abort.self) {
                try await ledger.db.write { tx in
                    try await ledger.sequencer.record(ledger.event(1, type: "rolled.back"), in: tx)
                    throw Abort()
                }
            }
            // A process records an event together with its state change, then dies before sequencing it:
            // its own sequencer never runs, and its connections are closed.
            let url = ledger.test.url
            _ = try await Database.withDatabase(url: url, logger: quietLogger) { db in
                try await db.write { tx in
                    try await OrganizationStore(tx).insert(Organization(id: IdentifierGenerator.shared.next(), slug: "state-change", name: "x", createdAt: Date()))
                    try await LedgerSequencer(database: db, logger: quietLogger).record(ledger.event(2, type: "committed"), in: tx)
                }
            }
            // Any other process's sequencer (here, this test's) finds it in the outbox.
            try await ledger.sequencer.drainAll()
            let rows = try await LedgerReader(database: ledger.db).entries(ledger.org.id, from: 0, limit: 10)
            #expect(rows.count == 1)
            #expect(try LedgerEntry(canonical: rows[0].bytes).type == "committed")
            #expect(try await ledger.verify().passed)
        }
    }

    @Test("a batch computed on a head another instance moved writes nothing; the sequencer reloads and chains after it", arguments: Backend.available)
    func staleEdge(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            // This instance appends and keeps its edge.
            try await ledger.sequencer.append((0..<10).map { ledger.event($0) })
            let cachedHead = try #require(try await LedgerReader(database: ledger.db).head(ledger.org.id))
            // Another instance appends behind its back.
            try await Database.withDatabase(url: ledger.test.url, logger: quietLogger) { other in
                let sequencer = LedgerSequencer(database: other, logger: quietLogger)
                try await sequencer.whileRunning { try await sequencer.append((10..<15).map { ledger.event($0) }) }
            }
            // A conditional append on the stale head is refused whole: no entry, tile or head written.
            let stale = LedgerEntryRow(seq: 10, bytes: Array("stale".utf8), hash: [UInt8](repeating: 7, count: 32))
            let moved = try await ledger.db.write { tx in
                try await LedgerStore(tx).append(
                    ledger.org.id, expected: cachedHead, entries: [stale], tiles: [LedgerTileRow(level: 0, index: 0, hashes: [UInt8](repeating: 7, count: 32))],
                    head: LedgerHead(size: 11, root: [UInt8](repeating: 7, count: 32), lastHash: stale.hash), at: Date()
                )
            }
            #expect(!moved)
            let afterRefusal = try #require(try await LedgerReader(database: ledger.db).head(ledger.org.id))
            #expect(afterRefusal.size == 15)
            // This instance's next batch starts from its stale edge, is refused, reloads and chains after the other's.
            try await ledger.sequencer.append((15..<18).map { ledger.event($0) })
            let rows = try await LedgerReader(database: ledger.db).entries(ledger.org.id, from: 0, limit: 100)
            #expect(rows.map(\.seq) == Array(0..<18))
            #expect(try LedgerEntry(canonical: rows[15].bytes).prev == Hex.encode(rows[14].hash))
            let result = try await ledger.verify()
            #expect(result.passed, "\(String(describing: result.failure))")
        }
    }

    @Test("a sequencer cancelled right after its appenders finish stops every time", .timeLimit(.minutes(2)), arguments: [Backend.sqlite])
    func cancelledSequencerStops(backend: Backend) async throws {
        // The append benchmark's shape, many times over: appenders, then the loop cancelled at once. With the
        // loop run under the writer thread's executor preference this deadlocked (docs/decisions.md).
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let org = Organization(id: IdentifierGenerator.shared.next(), slug: "acme", name: "Acme", createdAt: Date())
            try await db.write { try await OrganizationStore($0).insert(org) }
            for round in 0..<60 {
                let sequencer = LedgerSequencer(database: db, logger: quietLogger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await sequencer.run() }
                    try await withThrowingTaskGroup(of: Void.self) { appenders in
                        for writer in 0..<8 {
                            appenders.addTask {
                                let event = AuditEvent(organizationID: org.id, rawType: "test.event", actor: "system:test", data: ["round": .int(Int64(round)), "writer": .int(Int64(writer))], time: Date())
                                try await sequencer.append([event])
                            }
                        }
                        try await appenders.waitForAll()
                    }
                    group.cancelAll()
                }
            }
            let head = try #require(try await LedgerReader(database: db).head(org.id))
            #expect(head.size == 480)
        }
    }

    @Test("two instances appending to one ledger at once produce one chain", arguments: Backend.available)
    func twoWriters(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            let url = ledger.test.url
            try await withThrowingTaskGroup(of: Void.self) { group in
                for instance in 0..<2 {
                    group.addTask {
                        try await Database.withDatabase(url: url, logger: quietLogger) { db in
                            let sequencer = LedgerSequencer(database: db, logger: quietLogger)
                            try await withThrowingTaskGroup(of: Void.self) { inner in
                                inner.addTask { try await sequencer.run() }
                                for batch in 0..<10 {
                                    // Half through the outbox, half appended directly with group commit.
                                    try await db.write { tx in
                                        for i in 0..<10 { try await sequencer.record(ledger.event(instance * 10_000 + batch * 100 + i), in: tx) }
                                    }
                                    sequencer.wake()
                                    try await sequencer.append((0..<10).map { ledger.event(instance * 10_000 + batch * 100 + 50 + $0) })
                                }
                                try await sequencer.drainAll()
                                inner.cancelAll()
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let head = try await LedgerReader(database: ledger.db).head(ledger.org.id)
            #expect(head?.size == 400)
            let result = try await ledger.verify()
            #expect(result.passed, "\(String(describing: result.failure))")
        }
    }

    @Test("checkpoints: signed with both keys, same keys for every instance, published, proofs verify", arguments: Backend.available)
    func checkpointsAndProofs(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            try await ledger.sequencer.append((0..<100).map { ledger.event($0) })
            let first = try #require(try await ledger.checkpointer.cut(organizationID: ledger.org.id, slug: "acme"))
            try await ledger.sequencer.append((100..<300).map { ledger.event($0) })
            let second = try #require(try await ledger.checkpointer.cut(organizationID: ledger.org.id, slug: "acme"))
            #expect(first.size == 100 && second.size == 300)
            // Cutting again without growth returns the same checkpoint.
            #expect(try await ledger.checkpointer.cut(organizationID: ledger.org.id, slug: "acme")?.size == 300)

            let keys = try await ledger.checkpointer.verifierKeys(slug: "acme")
            #expect(keys.map(\.algorithm) == [.ed25519, .mlDSA65])
            #expect(keys.allSatisfy { $0.name == "portal.example/ledger/acme" })
            let text = try SignedNote.verify(second.note, keys: keys)
            let checkpoint = try Checkpoint(text: text)
            #expect(checkpoint.origin == "portal.example/ledger/acme" && checkpoint.size == 300)

            // Another instance (a new checkpointer on the same database) loads the same keys.
            let other = LedgerCheckpointer(database: ledger.db, sealer: ledger.sealer, logger: quietLogger, configuration: .init(originPrefix: "portal.example"))
            #expect(try await other.verifierKeys(slug: "acme") == keys)

            // Published outside the database.
            let published = try String(contentsOfFile: ledger.publishDirectory + "/acme/checkpoint", encoding: .utf8)
            #expect(published == second.note)
            #expect(FileManager.default.fileExists(atPath: ledger.publishDirectory + "/acme/checkpoints/100"))

            let reader = LedgerReader(database: ledger.db)
            let rows = try await reader.entries(ledger.org.id, from: 0, limit: 300)
            for seq in [0, 1, 99, 150, 255, 256, 299] as [Int64] {
                let proof = try await reader.inclusionProof(ledger.org.id, seq: seq, size: 300)
                #expect(Merkle.verifyInclusion(index: seq, size: 300, leafHash: rows[Int(seq)].hash, proof: proof, root: checkpoint.root), "seq \(seq)")
            }
            let consistency = try await reader.consistencyProof(ledger.org.id, old: 100, new: 300)
            #expect(Merkle.verifyConsistency(size1: 100, size2: 300, root1: first.root, root2: second.root, proof: consistency))
            #expect(!Merkle.verifyConsistency(size1: 100, size2: 300, root1: second.root, root2: first.root, proof: consistency))
            // Tiles are served as stored: 256 hashes in the full level-0 tile, 44 in the partial one.
            #expect(try await reader.tile(ledger.org.id, level: 0, index: 0, width: 256)?.count == 8192)
            #expect(try await reader.tile(ledger.org.id, level: 0, index: 1, width: 44)?.count == 44 * 32)
            #expect(try await reader.tile(ledger.org.id, level: 0, index: 1, width: 45) == nil)
            let bundle = try #require(try await reader.entryBundle(ledger.org.id, index: 0, width: 2))
            #expect(Int(bundle[0]) << 8 | Int(bundle[1]) == rows[0].bytes.count)

            let result = try await ledger.verify(published: true)
            #expect(result.passed && result.checkpointsChecked >= 3)
        }
    }

    @Test("proofs from cached tiles stay right as the tiles they were read from grow", arguments: Backend.available)
    func proofsFromGrowingCachedTiles(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            // One reader for the whole test: its tile cache holds the partial tiles of each earlier size.
            let reader = LedgerReader(database: ledger.db)
            var appended = 0
            var roots: [Int64: Hash] = [:]
            for size in [3, 200, 257, 300, 513, 700] {
                try await ledger.sequencer.append((appended..<size).map { ledger.event($0) })
                appended = size
                let head = try #require(try await reader.head(ledger.org.id))
                roots[head.size] = head.root
                let rows = try await reader.entries(ledger.org.id, from: 0, limit: size)
                for seq in Set([0, size / 2, size - 1]) {
                    let proof = try await reader.inclusionProof(ledger.org.id, seq: Int64(seq), size: head.size)
                    #expect(Merkle.verifyInclusion(index: Int64(seq), size: head.size, leafHash: rows[seq].hash, proof: proof, root: head.root), "seq \(seq) of \(size)")
                }
                for (old, oldRoot) in roots where old < head.size {
                    let proof = try await reader.consistencyProof(ledger.org.id, old: old, new: head.size)
                    #expect(Merkle.verifyConsistency(size1: old, size2: head.size, root1: oldRoot, root2: head.root, proof: proof), "\(old) -> \(size)")
                }
            }
            // A reader without a cache gives the same proofs.
            let uncached = LedgerReader(database: ledger.db, cachedTiles: 0)
            #expect(try await uncached.inclusionProof(ledger.org.id, seq: 100, size: 700) == (try await reader.inclusionProof(ledger.org.id, seq: 100, size: 700)))
        }
    }

    @Test("checkpoints older than the retention are pruned, except the latest and kept ones", arguments: [Backend.sqlite])
    func retention(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            let clock = ManualWallClock(Date(timeIntervalSince1970: 1_795_000_000))
            let cutter = LedgerCheckpointer(database: ledger.db, sealer: ledger.sealer, clock: clock, logger: quietLogger, configuration: .init(originPrefix: "p"))
            for round in 0..<6 {
                try await ledger.sequencer.append([ledger.event(round)])
                try await cutter.cut(organizationID: ledger.org.id, slug: "acme")
                clock.advance(by: 1200)
            }
            clock.advance(by: 86_400)
            try await ledger.sequencer.append([ledger.event(99)])
            try await cutter.cut(organizationID: ledger.org.id, slug: "acme")
            let sizes = try await ledger.db.read { try await LedgerStore($0).checkpoints(ledger.org.id) }.map(\.size)
            // Kept: the first of each hour (sizes 1 and 4: cuts 20 minutes apart from 7 minutes into an hour), and the newest.
            #expect(sizes == [1, 4, 7])
        }
    }
}
