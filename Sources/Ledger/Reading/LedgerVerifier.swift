public import Foundation
import PortalCore
import SQLKit
public import Storage

/// The outcome of verifying one ledger.
public struct LedgerVerification: Sendable {
    public var slug: String
    /// Entries checked.
    public var size: Int64
    /// The root of the entries checked.
    public var root: Hash
    public var checkpointsChecked: Int
    /// The first problem: the sequence number it concerns and what is wrong. Nil when all is well.
    public var failure: (seq: Int64, message: String)?

    public var passed: Bool { failure == nil }
}

/// Checks a ledger from its stored rows (DESIGN section 4; issue: "portal ledger verify"): every entry's
/// canonical form, sequence and `prev` link; every stored tile against hashes recomputed from the entries;
/// the head; every stored checkpoint's signatures and its root against the entries (so each is consistent
/// with the next); and any checkpoints published outside the database.
///
/// Entries are streamed in pages; memory stays O(page + log n).
public struct LedgerVerifier: Sendable {
    private let database: Database
    private let pageSize: Int

    public init(database: Database, pageSize: Int = 2_000) {
        self.database = database
        self.pageSize = pageSize
    }

    /// Verifies the ledger of `organizationID` with the given verifier keys and, optionally, the
    /// checkpoints published in `publishedDirectory/<slug>/checkpoints/`. `progress` gets the entries
    /// checked so far.
    public func verify(
        organizationID: UUID, slug: String, keys: [SignedNote.VerifierKey], publishedDirectory: String? = nil,
        progress: (Int64) -> Void = { _ in }
    ) async throws -> LedgerVerification {
        var result = LedgerVerification(slug: slug, size: 0, root: Merkle.emptyRoot, checkpointsChecked: 0, failure: nil)
        func fail(_ seq: Int64, _ message: String) -> LedgerVerification {
            result.failure = (seq, message)
            return result
        }
        let (head, stored) = try await database.read { db in
            (try await LedgerStore(db).head(organizationID), try await LedgerStore(db).checkpoints(organizationID))
        }
        // Checkpoints to hold the entries against: the stored ones (signatures checked) and published ones.
        var expected: [(size: Int64, root: Hash, source: String)] = []
        for checkpoint in stored {
            let text: String
            do {
                text = try SignedNote.verify(checkpoint.note, keys: keys)
            } catch {
                return fail(max(0, checkpoint.size - 1), "the stored checkpoint of size \(checkpoint.size) fails signature verification: \(error.message)")
            }
            guard let parsed = try? Checkpoint(text: text), parsed.size == checkpoint.size, parsed.root == checkpoint.root else {
                return fail(max(0, checkpoint.size - 1), "the stored checkpoint of size \(checkpoint.size) does not match its signed text")
            }
            expected.append((checkpoint.size, checkpoint.root, "stored checkpoint"))
        }
        if let publishedDirectory {
            let folder = URL(fileURLWithPath: publishedDirectory).appendingPathComponent(slug).appendingPathComponent("checkpoints")
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            for name in names {
                guard let note = try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8) else { continue }
                let text: String
                do {
                    text = try SignedNote.verify(note, keys: keys)
                } catch {
                    return fail(0, "the published checkpoint \(name) fails signature verification: \(error.message)")
                }
                guard let parsed = try? Checkpoint(text: text) else { return fail(0, "the published checkpoint \(name) is malformed") }
                expected.append((parsed.size, parsed.root, "published checkpoint"))
            }
        }
        expected.sort { $0.size < $1.size }
        let size = head?.size ?? 0
        if let beyond = expected.last(where: { $0.size > size }) {
            return fail(size, "the ledger has \(size) entries but a \(beyond.source) covers \(beyond.size): entries from seq \(size) were removed")
        }

        var range = CompactRange()
        var edge = TileEdge(size: 0, tiles: [])
        var lastHash = [UInt8](repeating: 0, count: 32)
        var nextSeq: Int64 = 0
        var expectedIndex = 0
        var lastMatched: Int64 = 0
        var storedTiles: [[Int64]: [Hash]] = [:]
        while nextSeq < size {
            let page = try await database.read { db -> ([LedgerEntryRow], [[Int64]: [Hash]]) in
                let rows = try await LedgerStore(db).entries(organizationID, from: nextSeq, limit: pageSize)
                // The level-0 tiles this page's leaves live in, to compare leaf by leaf.
                var tiles: [[Int64]: [Hash]] = [:]
                if let first = rows.first?.seq, let last = rows.last?.seq {
                    for index in (first / 256)...(last / 256) {
                        if let bytes = try await LedgerStore(db).tile(organizationID, level: 0, index: index) {
                            tiles[[0, index]] = LedgerTiles.split(bytes)
                        }
                    }
                }
                return (rows, tiles)
            }
            storedTiles = page.1
            guard !page.0.isEmpty else { break }
            for row in page.0 {
                guard row.seq == nextSeq else { return fail(nextSeq, "entry \(nextSeq) is missing (the next stored entry is \(row.seq))") }
                let entry: LedgerEntry
                do {
                    entry = try LedgerEntry(canonical: row.bytes)
                } catch {
                    return fail(row.seq, "entry \(row.seq) is not a canonical ledger entry: \(error.message)")
                }
                let hash = Merkle.leafHash(row.bytes)
                guard entry.seq == row.seq else { return fail(row.seq, "entry \(row.seq) says it is entry \(entry.seq) (entries were moved)") }
                guard entry.org == slug else { return fail(row.seq, "entry \(row.seq) belongs to ledger '\(entry.org)'") }
                guard hash == row.hash else { return fail(row.seq, "entry \(row.seq): its bytes do not hash to its stored hash (the entry was changed)") }
                guard entry.prev == Hex.encode(lastHash) else { return fail(row.seq, "entry \(row.seq): prev does not match the hash of entry \(row.seq - 1) (the chain is broken)") }
                let tile = storedTiles[[0, row.seq / 256]]
                let offset = Int(row.seq % 256)
                guard let tile, tile.count > offset, tile[offset] == hash else {
                    return fail(row.seq, "entry \(row.seq): the Merkle tile does not hold its hash (the tile or the entry was changed)")
                }
                range.append(hash)
                edge.append(hash)
                lastHash = hash
                nextSeq += 1
                while expectedIndex < expected.count, expected[expectedIndex].size == nextSeq {
                    let checkpoint = expected[expectedIndex]
                    guard range.root == checkpoint.root else {
                        return fail(lastMatched, "the entries before seq \(nextSeq) do not hash to the root of the \(checkpoint.source) of size \(checkpoint.size); the ledger was rewritten at or after seq \(lastMatched) (the last matching checkpoint)")
                    }
                    lastMatched = nextSeq
                    result.checkpointsChecked += 1
                    expectedIndex += 1
                }
            }
            // Every tile completed in this page, and at the end every partial edge tile, must equal the stored one.
            let finished = nextSeq == size
            let toCheck = edge.changedTiles.filter { $0.hashes.count == Tiles.width } + (finished ? edge.tiles.values.sorted { $0.level < $1.level } : [])
            for tile in toCheck {
                let bytes = try await database.read { db in try await LedgerStore(db).tile(organizationID, level: tile.level, index: tile.index) }
                let first = (tile.index * 256) << Int64(8 * tile.level)
                guard let bytes, bytes.count == tile.hashes.count * 32, LedgerTiles.split(bytes).elementsEqual(tile.hashes) else {
                    return fail(first, "tile \(tile.level)/\(tile.index) does not match the hashes recomputed from the entries (from seq \(first))")
                }
            }
            edge = TileEdge(size: edge.size, tiles: TileEdge.edgeIndices(size: edge.size).compactMap { key in edge.tiles[key.level] })
            progress(nextSeq)
        }
        if nextSeq < size { return fail(nextSeq, "entry \(nextSeq) is missing: the head says \(size) entries, the table ends at \(nextSeq)") }
        result.size = size
        result.root = range.root
        if let head, head.root != range.root {
            return fail(max(0, size - 1), "the stored head's root does not match the entries")
        }
        if let head, size > 0, head.lastHash != lastHash {
            return fail(size - 1, "the stored head's last hash does not match entry \(size - 1)")
        }
        return result
    }
}
