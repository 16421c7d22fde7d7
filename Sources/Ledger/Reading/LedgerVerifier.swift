public import Foundation
public import PortalCore
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

/// Where a verifier reads a ledger's entries and tiles from: the database, or an exported folder.
public protocol LedgerSource: Sendable {
    /// Entries with `seq >= from`, in order, at most `limit`; `hash` as stored (or computed, offline).
    func entries(from: Int64, limit: Int) async throws -> [LedgerEntryRow]
    /// The stored hashes of tile (level, index), concatenated; nil if missing.
    func tile(level: Int, index: Int64) async throws -> [UInt8]?
}

/// A checkpoint the entries must hash to: stored, published, exported, or held by the auditor.
public struct ExpectedCheckpoint: Sendable {
    public var size: Int64
    public var root: Hash
    /// Where it came from, for messages ("stored checkpoint", "published checkpoint 120", ...).
    public var source: String

    public init(size: Int64, root: Hash, source: String) {
        self.size = size
        self.root = root
        self.source = source
    }

    /// Verifies a signed checkpoint note with every key; nil and a message when it does not verify.
    public static func from(note: String, keys: [SignedNote.VerifierKey], source: String) -> Result<ExpectedCheckpoint, PortalError> {
        do {
            let checkpoint = try Checkpoint(text: try SignedNote.verify(note, keys: keys))
            return .success(ExpectedCheckpoint(size: checkpoint.size, root: checkpoint.root, source: source))
        } catch {
            return .failure(PortalError(.validationFailed, "the \(source) fails verification: \(error.message)"))
        }
    }
}

/// Checks a ledger (DESIGN section 4; `portal ledger verify`): every entry's canonical form, sequence and
/// `prev` link; every tile against hashes recomputed from the entries; the head; and that the entries hash
/// to the root of every given checkpoint (stored, published, exported or the auditor's own), which makes
/// those checkpoints consistent with each other.
///
/// Entries are streamed in pages; memory stays O(page + log n).
public struct LedgerVerifier: Sendable {
    private let pageSize: Int

    public init(pageSize: Int = 2_000) {
        self.pageSize = pageSize
    }

    /// Verifies the ledger of `organizationID` in `database` with the given verifier keys, its stored
    /// checkpoints and, optionally, those published in `publishedDirectory/<slug>/checkpoints/`.
    public func verify(
        database: Database, organizationID: UUID, slug: String, keys: [SignedNote.VerifierKey], publishedDirectory: String? = nil,
        progress: (Int64) -> Void = { _ in }
    ) async throws -> LedgerVerification {
        let (head, stored) = try await database.read { db in
            (try await LedgerStore(db).head(organizationID), try await LedgerStore(db).checkpoints(organizationID))
        }
        var expected: [ExpectedCheckpoint] = []
        for checkpoint in stored {
            switch ExpectedCheckpoint.from(note: checkpoint.note, keys: keys, source: "stored checkpoint of size \(checkpoint.size)") {
            case .success(let e) where e.size == checkpoint.size && e.root == checkpoint.root: expected.append(e)
            case .success: return failed(slug, max(0, checkpoint.size - 1), "the stored checkpoint of size \(checkpoint.size) does not match its signed text")
            case .failure(let error): return failed(slug, max(0, checkpoint.size - 1), error.message)
            }
        }
        if let publishedDirectory {
            let folder = URL(fileURLWithPath: publishedDirectory).appendingPathComponent(slug).appendingPathComponent("checkpoints")
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).sorted() {
                guard let note = try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8) else { continue }
                switch ExpectedCheckpoint.from(note: note, keys: keys, source: "published checkpoint \(name)") {
                case .success(let e): expected.append(e)
                case .failure(let error): return failed(slug, 0, error.message)
                }
            }
        }
        return try await verify(
            source: DatabaseLedgerSource(database: database, organizationID: organizationID), slug: slug,
            size: head?.size ?? 0, head: head, checkpoints: expected, progress: progress
        )
    }

    private func failed(_ slug: String, _ seq: Int64, _ message: String) -> LedgerVerification {
        LedgerVerification(slug: slug, size: 0, root: Merkle.emptyRoot, checkpointsChecked: 0, failure: (seq, message))
    }

    /// Verifies `size` entries of `source` against its tiles, `head` (if any) and `checkpoints`.
    public func verify(
        source: some LedgerSource, slug: String, size: Int64, head: LedgerHead?, checkpoints: [ExpectedCheckpoint],
        progress: (Int64) -> Void = { _ in }
    ) async throws -> LedgerVerification {
        var result = LedgerVerification(slug: slug, size: 0, root: Merkle.emptyRoot, checkpointsChecked: 0, failure: nil)
        func fail(_ seq: Int64, _ message: String) -> LedgerVerification {
            result.failure = (seq, message)
            return result
        }
        let expected = checkpoints.sorted { $0.size < $1.size }
        if let beyond = expected.last(where: { $0.size > size }) {
            return fail(size, "the ledger has \(size) entries but a \(beyond.source) covers \(beyond.size): entries from seq \(size) were removed")
        }
        var range = CompactRange()
        var edge = TileEdge(size: 0, tiles: [])
        var lastHash = [UInt8](repeating: 0, count: 32)
        var nextSeq: Int64 = 0
        var expectedIndex = 0
        var lastMatched: Int64 = 0
        var leafTile: (index: Int64, hashes: [Hash])?
        while nextSeq < size {
            let rows: [LedgerEntryRow]
            do {
                rows = try await source.entries(from: nextSeq, limit: Int(min(Int64(pageSize), size - nextSeq)))
            } catch let error as PortalError {
                return fail(nextSeq, "entries from \(nextSeq) cannot be read: \(error.message)")
            }
            guard !rows.isEmpty else { break }
            for row in rows {
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
                let tileIndex = row.seq / 256
                if leafTile?.index != tileIndex {
                    leafTile = (tileIndex, LedgerTiles.split(try await source.tile(level: 0, index: tileIndex) ?? []))
                }
                let offset = Int(row.seq % 256)
                guard let leaves = leafTile?.hashes, leaves.count > offset, leaves[offset] == hash else {
                    return fail(row.seq, "entry \(row.seq): the Merkle tile does not hold its hash (the tile or the entry was changed)")
                }
                range.append(hash)
                edge.append(hash)
                lastHash = hash
                nextSeq += 1
                while expectedIndex < expected.count, expected[expectedIndex].size == nextSeq {
                    let checkpoint = expected[expectedIndex]
                    guard range.root == checkpoint.root else {
                        return fail(lastMatched, "the entries before seq \(nextSeq) do not hash to the root of the \(checkpoint.source) (size \(checkpoint.size)); the ledger was rewritten at or after seq \(lastMatched) (the last matching checkpoint)")
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
                let bytes = try await source.tile(level: tile.level, index: tile.index)
                let first = (tile.index * 256) << Int64(8 * tile.level)
                guard let bytes, bytes.count == tile.hashes.count * 32, LedgerTiles.split(bytes).elementsEqual(tile.hashes) else {
                    return fail(first, "tile \(tile.level)/\(tile.index) does not match the hashes recomputed from the entries (from seq \(first))")
                }
            }
            edge = TileEdge(size: edge.size, tiles: TileEdge.edgeIndices(size: edge.size).compactMap { key in edge.tiles[key.level] })
            progress(nextSeq)
        }
        if nextSeq < size { return fail(nextSeq, "entry \(nextSeq) is missing: the ledger has \(size) entries, the entries end at \(nextSeq)") }
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

/// A ledger as stored in the database.
public struct DatabaseLedgerSource: LedgerSource {
    let database: Database
    let organizationID: UUID

    public init(database: Database, organizationID: UUID) {
        self.database = database
        self.organizationID = organizationID
    }

    public func entries(from: Int64, limit: Int) async throws -> [LedgerEntryRow] {
        try await database.read { db in try await LedgerStore(db).entries(organizationID, from: from, limit: limit) }
    }

    public func tile(level: Int, index: Int64) async throws -> [UInt8]? {
        try await database.read { db in try await LedgerStore(db).tile(organizationID, level: level, index: index) }
    }
}
