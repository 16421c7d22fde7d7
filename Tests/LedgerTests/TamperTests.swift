import Foundation
import Ledger
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// Each way of tampering with a stored ledger makes verification fail and name the first bad entry.
@Suite("Tamper detection")
struct TamperTests {
    /// A ledger of 600 entries with checkpoints at 250 and 600 (published), then `tamper`, then verify.
    func tampered(_ backend: Backend, _ tamper: @escaping (TestLedger, Transaction) async throws -> Void) async throws -> LedgerVerification {
        var outcome: LedgerVerification?
        try await TestLedger.with(backend) { ledger in
            try await ledger.sequencer.append((0..<250).map { ledger.event($0) })
            try await ledger.checkpointer.cut(organizationID: ledger.org.id, slug: "acme")
            try await ledger.sequencer.append((250..<600).map { ledger.event($0) })
            try await ledger.checkpointer.cut(organizationID: ledger.org.id, slug: "acme")
            let clean = try await ledger.verify(published: true)
            #expect(clean.passed, "the untampered ledger verifies: \(String(describing: clean.failure))")
            try await ledger.db.write { tx in try await tamper(ledger, tx) }
            outcome = try await ledger.verify(published: true)
        }
        return try #require(outcome)
    }

    static func entry(_ tx: Transaction, _ org: UUID, _ seq: Int64) async throws -> [UInt8] {
        Array(try await tx.raw("SELECT entry FROM ledger_entries WHERE organization_id = \(bind: org) AND seq = \(bind: seq)")
            .first()!.decode(column: "entry", as: Data.self))
    }

    static func setEntry(_ tx: Transaction, _ org: UUID, _ seq: Int64, bytes: [UInt8], hash: [UInt8]? = nil) async throws {
        try await tx.raw("""
            UPDATE ledger_entries SET entry = \(bind: Data(bytes)), hash = \(bind: Data(hash ?? Merkle.leafHash(bytes)))
            WHERE organization_id = \(bind: org) AND seq = \(bind: seq)
            """).run()
    }

    @Test("changing an entry's bytes (and even its stored hash) is caught at that entry", arguments: Backend.available)
    func changedEntry(backend: Backend) async throws {
        let result = try await tampered(backend) { ledger, tx in
            var bytes = try await Self.entry(tx, ledger.org.id, 123)
            let text = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "entry 123", with: "entry 124")
            bytes = Array(text.utf8)
            try await Self.setEntry(tx, ledger.org.id, 123, bytes: bytes)
        }
        #expect(result.failure?.seq == 123, "\(String(describing: result.failure))")
    }

    @Test("changing bytes but not the stored hash is caught at that entry", arguments: Backend.available)
    func changedBytesOnly(backend: Backend) async throws {
        let result = try await tampered(backend) { ledger, tx in
            let original = try await Self.entry(tx, ledger.org.id, 42)
            let bytes = Array(String(decoding: original, as: UTF8.self).replacingOccurrences(of: "entry 42", with: "entry 43").utf8)
            try await Self.setEntry(tx, ledger.org.id, 42, bytes: bytes, hash: Merkle.leafHash(original))
        }
        #expect(result.failure?.seq == 42)
        #expect(result.failure?.message.contains("changed") == true)
    }

    @Test("a page's entries are scanned and hashed in parallel, yet the first bad entry in order is reported", arguments: [Backend.sqlite])
    func firstFailureInOrder(backend: Backend) async throws {
        // A tile of 256 entries is split across the cores: a problem in its second half (seq 200, not
        // canonical) must not hide one in its first half (seq 60, changed bytes), nor be missed alone.
        let both = try await tampered(backend) { ledger, tx in
            let original = try await Self.entry(tx, ledger.org.id, 60)
            try await Self.setEntry(tx, ledger.org.id, 60, bytes: Array(String(decoding: original, as: UTF8.self).replacingOccurrences(of: "entry 60", with: "entry 61").utf8), hash: Merkle.leafHash(original))
            try await Self.setEntry(tx, ledger.org.id, 200, bytes: Array(#"{"not":"an entry"}"#.utf8))
        }
        #expect(both.failure?.seq == 60, "\(String(describing: both.failure))")
        let second = try await tampered(backend) { ledger, tx in
            try await Self.setEntry(tx, ledger.org.id, 200, bytes: Array(#"{"not":"an entry"}"#.utf8))
        }
        #expect(second.failure?.seq == 200 && second.failure?.message.contains("not a canonical ledger entry") == true, "\(String(describing: second.failure))")
    }

    @Test("deleting a row is caught at the missing sequence number", arguments: Backend.available)
    func deletedRow(backend: Backend) async throws {
        let result = try await tampered(backend) { ledger, tx in
            try await tx.raw("DELETE FROM ledger_entries WHERE organization_id = \(bind: ledger.org.id) AND seq = 300").run()
        }
        #expect(result.failure?.seq == 300)
        #expect(result.failure?.message.contains("missing") == true)
    }

    @Test("swapping two rows is caught at the first of them", arguments: Backend.available)
    func swappedRows(backend: Backend) async throws {
        let result = try await tampered(backend) { ledger, tx in
            let a = try await Self.entry(tx, ledger.org.id, 200), b = try await Self.entry(tx, ledger.org.id, 201)
            try await Self.setEntry(tx, ledger.org.id, 200, bytes: b)
            try await Self.setEntry(tx, ledger.org.id, 201, bytes: a)
        }
        #expect(result.failure?.seq == 200)
    }

    @Test("truncating the tail is caught at the first missing entry", arguments: Backend.available)
    func truncatedTail(backend: Backend) async throws {
        let result = try await tampered(backend) { ledger, tx in
            try await tx.raw("DELETE FROM ledger_entries WHERE organization_id = \(bind: ledger.org.id) AND seq >= 550").run()
        }
        #expect(result.failure?.seq == 550)
    }

    @Test("truncating the tail with head, tiles and stored checkpoints rewound is caught by the published checkpoint", arguments: Backend.available)
    func truncatedConsistently(backend: Backend) async throws {
        let result = try await tampered(backend) { ledger, tx in
            // Rebuild everything for the first 400 entries, as an attacker with the database would.
            let rows = try await LedgerStore(tx).entries(ledger.org.id, from: 0, limit: 400)
            try await Self.rebuild(tx, ledger.org.id, rows)
            try await tx.raw("DELETE FROM ledger_checkpoints WHERE organization_id = \(bind: ledger.org.id) AND size > 400").run()
        }
        #expect(result.failure?.seq == 400, "\(String(describing: result.failure))")
    }

    @Test("rewriting the tail consistently (chain, tiles, head rebuilt) is caught by the published checkpoint", arguments: Backend.available)
    func rewrittenTail(backend: Backend) async throws {
        let result = try await tampered(backend) { ledger, tx in
            var rows = try await LedgerStore(tx).entries(ledger.org.id, from: 0, limit: 600)
            var prev = rows[299].hash
            for i in 300..<600 {
                var entry = try LedgerEntry(canonical: rows[i].bytes)
                if i == 300 { entry.data = ["i": 300, "note": "a different story"] }
                entry.prev = Hex.encode(prev)
                let bytes = try entry.canonicalBytes()
                rows[i] = LedgerEntryRow(seq: Int64(i), bytes: bytes, hash: Merkle.leafHash(bytes))
                prev = rows[i].hash
            }
            try await Self.rebuild(tx, ledger.org.id, rows)
            try await tx.raw("DELETE FROM ledger_checkpoints WHERE organization_id = \(bind: ledger.org.id) AND size > 250").run()
        }
        let failure = try #require(result.failure)
        #expect(failure.seq == 250, "the last matching checkpoint bounds the rewrite: \(failure)")
        #expect(failure.message.contains("published checkpoint"))
    }

    @Test("altering a tile is caught at the first entry it covers", arguments: Backend.available)
    func alteredTile(backend: Backend) async throws {
        let result = try await tampered(backend) { ledger, tx in
            var bytes = try #require(try await LedgerStore(tx).tile(ledger.org.id, level: 0, index: 1))
            bytes[32 * 10] ^= 0xFF
            try await LedgerStore(tx).putTile(ledger.org.id, level: 0, index: 1, hashes: bytes)
        }
        #expect(result.failure?.seq == 266)
    }

    @Test("altering a level-1 tile is caught", arguments: Backend.available)
    func alteredUpperTile(backend: Backend) async throws {
        let result = try await tampered(backend) { ledger, tx in
            var bytes = try #require(try await LedgerStore(tx).tile(ledger.org.id, level: 1, index: 0))
            bytes[0] ^= 0x01
            try await LedgerStore(tx).putTile(ledger.org.id, level: 1, index: 0, hashes: bytes)
        }
        #expect(result.failure?.seq == 0, "\(String(describing: result.failure))")
        #expect(result.failure?.message.contains("tile 1/000") == true || result.failure?.message.contains("tile 1/0") == true)
    }

    /// Rewrites entries from the first row's seq on, the tiles and the head, consistently with `rows`.
    static func rebuild(_ tx: Transaction, _ org: UUID, _ rows: [LedgerEntryRow]) async throws {
        try await tx.raw("DELETE FROM ledger_entries WHERE organization_id = \(bind: org)").run()
        try await tx.raw("DELETE FROM ledger_tiles WHERE organization_id = \(bind: org)").run()
        var edge = TileEdge(size: 0, tiles: [])
        for row in rows {
            try await LedgerStore(tx).insertEntry(org, row)
            edge.append(row.hash)
        }
        for tile in edge.changedTiles {
            try await LedgerStore(tx).putTile(org, level: tile.level, index: tile.index, hashes: tile.hashes.flatMap { $0 })
        }
        try await LedgerStore(tx).setHead(org, LedgerHead(size: edge.size, root: try edge.root(), lastHash: rows.last!.hash), at: Date())
    }
}

/// A database that cannot be reached mid-verification yields no verdict: the verification throws, so that
/// neither `portal ledger verify` nor the ledger watch reports (or records) tampering that did not happen.
@Suite("Verification without a verdict")
struct VerificationOutageTests {
    /// A source whose entries cannot be read, as a database restarting under the verifier.
    struct Unreachable: LedgerSource {
        let code: PortalError.Code
        func entries(from: Int64, limit: Int) async throws -> [LedgerEntryRow] { throw PortalError(code, "the database cannot be reached") }
        func tile(level: Int, index: Int64) async throws -> [UInt8]? { nil }
        func entryPage(from: Int64, limit: Int) async throws -> EntryPage { throw PortalError(code, "the database cannot be reached") }
        func currentSize() async throws -> Int64? { 600 }
    }

    @Test("an unreachable or failing database is thrown, not reported as a failure", arguments: [PortalError.Code.unavailable, .storage])
    func outage(code: PortalError.Code) async throws {
        await #expect(throws: PortalError.self) {
            _ = try await LedgerVerifier().verify(source: Unreachable(code: code), slug: "acme", size: 600, head: nil, checkpoints: [])
        }
    }

    @Test("a source's own unreadable content is still a failure at its sequence number")
    func contentProblem() async throws {
        let result = try await LedgerVerifier().verify(source: Unreachable(code: .validationFailed), slug: "acme", size: 600, head: nil, checkpoints: [])
        #expect(result.failure?.seq == 0)
        #expect(result.failure?.message.contains("cannot be read") == true)
    }
}
