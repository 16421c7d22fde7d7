package import Foundation
package import PortalCore
package import Storage

/// The outcome of verifying one ledger.
package struct LedgerVerification: Sendable {
    package var slug: String
    /// Entries checked.
    package var size: Int64
    /// The root of the entries checked.
    package var root: Hash
    package var checkpointsChecked: Int
    /// The first problem: the sequence number it concerns and what is wrong. Nil when all is well.
    package var failure: (seq: Int64, message: String)?

    package var passed: Bool { failure == nil }
}

/// Where a verifier reads a ledger's entries and tiles from: the database, or an exported folder.
package protocol LedgerSource: Sendable {
    /// Entries with `seq >= from`, in order, at most `limit`; `hash` as stored (or computed, offline).
    func entries(from: Int64, limit: Int) async throws -> [LedgerEntryRow]
    /// The stored hashes of tile (level, index), concatenated; nil if missing.
    func tile(level: Int, index: Int64) async throws -> [UInt8]?
    /// Entries with `seq >= from`, in order, at most `limit`, as one buffer: what the verifier reads.
    func entryPage(from: Int64, limit: Int) async throws -> EntryPage
    /// The ledger's size now, for a source that may grow while it is read (the database); nil for one
    /// that does not (an exported folder), whose tiles must then match exactly.
    func currentSize() async throws -> Int64?
}

/// Entries in one buffer, so the verifier walks them without an allocation per entry.
package struct EntryPage: Sendable {
    /// The entries' bytes (and possibly framing between them, as in an entry bundle); may map a file.
    package var bytes: Data
    /// Each entry's sequence number and the range of its canonical bytes in ``bytes``.
    package var entries: [(seq: Int64, range: Range<Int>)]
    /// The stored hash of each entry, 32 bytes apiece; nil where the source stores none (an exported folder).
    package var hashes: [UInt8]?

    package init(bytes: Data, entries: [(seq: Int64, range: Range<Int>)], hashes: [UInt8]?) {
        self.bytes = bytes
        self.entries = entries
        self.hashes = hashes
    }
}

extension LedgerSource {
    /// A fixed source: nothing is appended while it is read.
    package func currentSize() async throws -> Int64? { nil }

    static var unmatchableHash: [UInt8] { [UInt8](repeating: 0, count: 32) }

    /// A page built from ``entries(from:limit:)``.
    package func entryPage(from: Int64, limit: Int) async throws -> EntryPage {
        let rows = try await entries(from: from, limit: limit)
        var page = EntryPage(bytes: Data(), entries: [], hashes: [])
        page.bytes.reserveCapacity(rows.reduce(0) { $0 + $1.bytes.count })
        page.hashes?.reserveCapacity(rows.count * 32)
        for row in rows {
            page.entries.append((row.seq, page.bytes.count..<(page.bytes.count + row.bytes.count)))
            page.bytes += row.bytes
            // A stored hash of the wrong length (a tampered row) is kept as 32 bytes no SHA-256 output is
            // known to match, so it fails the comparison as the original would.
            page.hashes! += row.hash.count == 32 ? row.hash : Self.unmatchableHash
        }
        return page
    }
}

/// A checkpoint the entries must hash to: stored, published, exported, or held by the auditor.
package struct ExpectedCheckpoint: Sendable {
    package var size: Int64
    package var root: Hash
    /// Where it came from, for messages ("stored checkpoint", "published checkpoint 120", ...).
    package var source: String

    package init(size: Int64, root: Hash, source: String) {
        self.size = size
        self.root = root
        self.source = source
    }

    /// Verifies a signed checkpoint note with every key; nil and a message when it does not verify.
    package static func from(note: String, keys: [SignedNote.VerifierKey], source: String) -> Result<ExpectedCheckpoint, PortalError> {
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
package struct LedgerVerifier: Sendable {
    /// The pieces each page's scans and hashes are split into: one per core.
    static let parts = ProcessInfo.processInfo.activeProcessorCount

    private let pageSize: Int

    package init(pageSize: Int = 2_000) {
        self.pageSize = pageSize
    }

    /// Verifies the ledger of `organizationID` in `database` with the given verifier keys, its stored
    /// checkpoints and, optionally, those published in `publishedDirectory/<slug>/checkpoints/`.
    package func verify(
        database: Database, organizationID: UUID, slug: String, keys: [SignedNote.VerifierKey], publishedDirectory: String? = nil,
        progress: (Int64) -> Void = { _ in }
    ) async throws -> LedgerVerification {
        // Published checkpoints are read before the head: one is published only after its size is stored,
        // so none read first can lie beyond the head read after it (the other order races the checkpointer).
        var published: [ExpectedCheckpoint] = []
        if let publishedDirectory {
            let folder = URL(fileURLWithPath: publishedDirectory).appendingPathComponent(slug).appendingPathComponent("checkpoints")
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).sorted() {
                guard let note = try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8) else { continue }
                switch ExpectedCheckpoint.from(note: note, keys: keys, source: "published checkpoint \(name)") {
                case .success(let e): published.append(e)
                case .failure(let error): return failed(slug, 0, error.message)
                }
            }
        }
        // The head and the stored checkpoints in one read: the verification is as of this size, whatever
        // the sequencer appends meanwhile.
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
        expected += published
        return try await verify(
            source: DatabaseLedgerSource(database: database, organizationID: organizationID), slug: slug,
            size: head?.size ?? 0, head: head, checkpoints: expected, progress: progress
        )
    }

    private func failed(_ slug: String, _ seq: Int64, _ message: String) -> LedgerVerification {
        LedgerVerification(slug: slug, size: 0, root: Merkle.emptyRoot, checkpointsChecked: 0, failure: (seq, message))
    }

    /// Verifies `size` entries of `source` against its tiles, `head` (if any) and `checkpoints`.
    ///
    /// Works a tile (256 entries) at a time: the level-0 tile is read first, then each entry is scanned,
    /// hashed, checked and folded into the tree's right edge with no allocation (``ChainVerifier``); tiles
    /// completed by the chunk are compared with the stored ones after it.
    package func verify(
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
        var chain = ChainVerifier(slug: slug, checkpoints: expected)
        let progressEvery = Int64(max(Tiles.width, pageSize / Tiles.width * Tiles.width))
        // The next chunk is read, scanned and hashed while this one's ordered checks run; it is used only if
        // it starts where this one ended, and what reading it threw is thrown when it would have been read.
        var ahead: (start: Int64, chunk: Result<Chunk, any Error>)?
        while chain.nextSeq < size {
            let start = chain.nextSeq
            let chunkEnd = min(size, (start / Int64(Tiles.width) + 1) * Int64(Tiles.width))
            let chunk: Chunk
            if let loaded = ahead, loaded.start == start {
                chunk = try loaded.chunk.get()
            } else {
                chunk = try await Self.chunk(source, from: start, to: chunkEnd)
            }
            ahead = nil
            chain.leafTile = chunk.leafTile
            let page: EntryPage
            switch chunk.page {
            case .success(let read): page = read
            case .failure(let error): return fail(start, "entries from \(start) cannot be read: \(error.message)")
            }
            let nextEnd = min(size, chunkEnd + Int64(Tiles.width))
            async let next = chunkEnd < size ? Self.chunkResult(source, from: chunkEnd, to: nextEnd) : nil
            chain.check(page, chunk.work)
            if let failure = chain.failure { return fail(failure.seq, failure.message) }
            guard !page.entries.isEmpty else { break }
            // Every tile this chunk completed, and at the end every partial edge tile, must equal the stored one.
            var toCheck = chain.edge.takeCompleted()
            if chain.nextSeq == size { toCheck += chain.edge.edgeTiles() }
            for tile in toCheck {
                let bytes = try await source.tile(level: tile.level, index: tile.index)
                guard let bytes, try await Self.holds(bytes, tile, source: source) else {
                    let first = (tile.index * 256) << Int64(8 * tile.level)
                    return fail(first, "tile \(tile.level)/\(tile.index) does not match the hashes recomputed from the entries (from seq \(first))")
                }
            }
            if chain.nextSeq % progressEvery == 0 || chain.nextSeq == size { progress(chain.nextSeq) }
            if let loaded = await next { ahead = (chunkEnd, loaded) }
        }
        let nextSeq = chain.nextSeq
        if nextSeq < size { return fail(nextSeq, "entry \(nextSeq) is missing: the ledger has \(size) entries, the entries end at \(nextSeq)") }
        let root = chain.root()
        result.size = size
        result.root = root
        result.checkpointsChecked = chain.checkpointsChecked
        if let head, head.root != root {
            return fail(max(0, size - 1), "the stored head's root does not match the entries")
        }
        if let head, size > 0, head.lastHash != chain.lastHash {
            return fail(size - 1, "the stored head's last hash does not match entry \(size - 1)")
        }
        return result
    }
}

extension LedgerVerifier {
    /// The entries `from..<to` (within one level-0 tile) with that tile, scanned and hashed.
    struct Chunk: Sendable {
        var leafTile: [UInt8]
        /// The entries, or what the source said of its own content (a truncated bundle): a finding.
        var page: Result<EntryPage, PortalError>
        var work: PageWork
    }

    /// Reads and prepares a chunk. A database that cannot be reached or fails is thrown, not a finding: no
    /// verdict, so no false tamper alarm.
    static func chunk(_ source: some LedgerSource, from start: Int64, to end: Int64) async throws -> Chunk {
        let leafTile = try await source.tile(level: 0, index: start / Int64(Tiles.width)) ?? []
        do {
            let page = try await source.entryPage(from: start, limit: Int(end - start))
            return Chunk(leafTile: leafTile, page: .success(page), work: await PageWork.compute(page, parts: parts))
        } catch let error as PortalError where error.code != .unavailable && error.code != .storage {
            return Chunk(leafTile: leafTile, page: .failure(error), work: PageWork(scanned: [], hashes: []))
        }
    }

    static func chunkResult(_ source: some LedgerSource, from start: Int64, to end: Int64) async -> Result<Chunk, any Error> {
        do {
            return .success(try await chunk(source, from: start, to: end))
        } catch {
            return .failure(error)
        }
    }

    /// Whether a stored tile holds the one recomputed for the size being verified: equal, or, while the
    /// ledger grows, longer by hashes the ledger's current size accounts for. A stored tile only grows at
    /// its end, so the partial tile of width w is the prefix of every later copy; hashes beyond what the
    /// current size allows are not growth but tampering. The current size is read after the tile, so a
    /// writer that moved on in between cannot make an honest tile look too long.
    static func holds(_ stored: [UInt8], _ tile: VerifyingEdge.Tile, source: some LedgerSource) async throws -> Bool {
        if stored == tile.bytes { return true }
        guard stored.count > tile.bytes.count, stored.count % 32 == 0, stored.starts(with: tile.bytes),
              let current = try await source.currentSize()
        else { return false }
        return stored.count / 32 <= Tiles.storedWidth(level: tile.level, index: tile.index, size: current)
    }
}

/// What each entry of a page needs that does not depend on the entries before it, its canonical scan and
/// its leaf hash (most of a verification's CPU), computed for the whole page split across the cores; the
/// chain, tile and tree checks then run over the results in order (``ChainVerifier/check(_:_:)``), so the
/// verdict and the first failure reported are those of a sequential scan.
struct PageWork: Sendable {
    var scanned: [Result<ScannedEntry, EntryScanner.Failure>]
    /// 32 bytes per entry.
    var hashes: [UInt8]

    /// Splits pages of at least 128 entries into `parts` child tasks.
    static func compute(_ page: EntryPage, parts: Int) async -> PageWork {
        let count = page.entries.count
        let parts = max(1, min(parts, count / 64))
        guard parts > 1 else { return compute(page, 0..<count) }
        let step = (count + parts - 1) / parts
        let pieces = await withTaskGroup(of: (Int, PageWork).self) { group in
            for k in 0..<parts {
                let range = (k * step)..<min(count, (k + 1) * step)
                group.addTask { (k, compute(page, range)) }
            }
            var pieces = [PageWork](repeating: PageWork(scanned: [], hashes: []), count: parts)
            for await (k, piece) in group { pieces[k] = piece }
            return pieces
        }
        return PageWork(scanned: pieces.flatMap(\.scanned), hashes: pieces.flatMap(\.hashes))
    }

    static func compute(_ page: EntryPage, _ range: Range<Int>) -> PageWork {
        var scanned: [Result<ScannedEntry, EntryScanner.Failure>] = []
        scanned.reserveCapacity(range.count)
        var hashes = [UInt8](repeating: 0, count: range.count * 32)
        page.bytes.withUnsafeBytes { bytes in
            hashes.withUnsafeMutableBytes { out in
                for (k, index) in range.enumerated() {
                    let entryBytes = UnsafeRawBufferPointer(rebasing: bytes[page.entries[index].range])
                    scanned.append(Result { () throws(EntryScanner.Failure) in try EntryScanner.scan(entryBytes) })
                    Merkle.leafHash(entryBytes, into: out.baseAddress! + k * 32)
                }
            }
        }
        return PageWork(scanned: scanned, hashes: hashes)
    }
}

/// The verifier's per-entry state and checks: the chain link, the entry's canonical form, its hash against
/// the stored hash and the level-0 tile, and the tree's right edge for tiles and checkpoint roots.
struct ChainVerifier {
    let slug: [UInt8]
    let checkpoints: [ExpectedCheckpoint]
    private var checkpointIndex = 0
    private(set) var checkpointsChecked = 0
    private var lastMatched: Int64 = 0
    private(set) var nextSeq: Int64 = 0
    /// The previous entry's hash, and its lowercase hex as `prev` must spell it.
    private(set) var lastHash = [UInt8](repeating: 0, count: 32)
    private var lastHex = [UInt8](repeating: UInt8(ascii: "0"), count: 64)
    private var hash = [UInt8](repeating: 0, count: 32)
    /// The stored level-0 tile of the entries being checked.
    var leafTile: [UInt8] = []
    var edge = VerifyingEdge()
    private(set) var failure: (seq: Int64, message: String)?

    init(slug: String, checkpoints: [ExpectedCheckpoint]) {
        self.slug = Array(slug.utf8)
        self.checkpoints = checkpoints
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Checks the entries of a page in order, stopping at the first failure, with the scans and hashes of
    /// `work` (computed for the page beforehand, in parallel).
    mutating func check(_ page: EntryPage, _ work: PageWork) {
        page.bytes.withUnsafeBytes { bytes in
            work.hashes.withUnsafeBytes { leaves in
                for (index, entry) in page.entries.enumerated() {
                    let entryBytes = UnsafeRawBufferPointer(rebasing: bytes[entry.range])
                    let leaf = UnsafeRawBufferPointer(rebasing: leaves[(index * 32)..<(index * 32 + 32)])
                    let go: Bool
                    if let hashes = page.hashes {
                        go = hashes.withUnsafeBytes {
                            check(seq: entry.seq, bytes: entryBytes, scanned: work.scanned[index], leaf: leaf, storedHash: UnsafeRawBufferPointer(rebasing: $0[(index * 32)..<(index * 32 + 32)]))
                        }
                    } else {
                        go = check(seq: entry.seq, bytes: entryBytes, scanned: work.scanned[index], leaf: leaf, storedHash: nil)
                    }
                    if !go { return }
                }
            }
        }
    }

    /// Checks one entry, given its scan (or why it is not canonical) and its leaf hash; false (with
    /// ``failure`` set) stops the scan.
    mutating func check(
        seq: Int64, bytes: UnsafeRawBufferPointer, scanned result: Result<ScannedEntry, EntryScanner.Failure>, leaf: UnsafeRawBufferPointer,
        storedHash: UnsafeRawBufferPointer?
    ) -> Bool {
        guard seq == nextSeq else { return stop(nextSeq, "entry \(nextSeq) is missing (the next stored entry is \(seq))") }
        let scanned: ScannedEntry
        switch result {
        case .success(let entry): scanned = entry
        case .failure(let error): return stop(seq, "entry \(seq) is not a canonical ledger entry: \(error.message)")
        }
        hash.withUnsafeMutableBytes { $0.copyMemory(from: leaf) }
        guard scanned.seq == seq else { return stop(seq, "entry \(seq) says it is entry \(scanned.seq) (entries were moved)") }
        guard Self.equal(bytes, scanned.org, slug) else {
            return stop(seq, "entry \(seq) belongs to ledger '\(String(decoding: bytes[scanned.org], as: UTF8.self))'")
        }
        if let storedHash, storedHash.count != 32 || hash.withUnsafeBytes({ memcmp(storedHash.baseAddress!, $0.baseAddress!, 32) != 0 }) {
            return stop(seq, "entry \(seq): its bytes do not hash to its stored hash (the entry was changed)")
        }
        guard Self.equal(bytes, scanned.prev, lastHex) else {
            return stop(seq, "entry \(seq): prev does not match the hash of entry \(seq - 1) (the chain is broken)")
        }
        let offset = Int(seq % Int64(Tiles.width)) * 32
        let leaf = hash
        let inTile = leafTile.count >= offset + 32 && leafTile.withUnsafeBytes { tile in
            leaf.withUnsafeBytes { memcmp(tile.baseAddress! + offset, $0.baseAddress!, 32) == 0 }
        }
        guard inTile else { return stop(seq, "entry \(seq): the Merkle tile does not hold its hash (the tile or the entry was changed)") }
        leaf.withUnsafeBytes { edge.append($0.baseAddress!) }
        swap(&lastHash, &hash)
        lastHex.withUnsafeMutableBufferPointer { hex in
            for k in 0..<32 {
                let byte = leaf[k]
                hex[2 * k] = Self.hexDigits[Int(byte >> 4)]
                hex[2 * k + 1] = Self.hexDigits[Int(byte & 0xF)]
            }
        }
        nextSeq += 1
        while checkpointIndex < checkpoints.count, checkpoints[checkpointIndex].size == nextSeq {
            let checkpoint = checkpoints[checkpointIndex]
            guard root() == checkpoint.root else {
                return stop(lastMatched, "the entries before seq \(nextSeq) do not hash to the root of the \(checkpoint.source) (size \(checkpoint.size)); the ledger was rewritten at or after seq \(lastMatched) (the last matching checkpoint)")
            }
            lastMatched = nextSeq
            checkpointsChecked += 1
            checkpointIndex += 1
        }
        return true
    }

    /// Whether `bytes[range]` equals `expected`.
    @inline(__always)
    private static func equal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ expected: [UInt8]) -> Bool {
        guard range.count == expected.count else { return false }
        guard !expected.isEmpty else { return true }
        return expected.withUnsafeBytes { memcmp(bytes.baseAddress! + range.lowerBound, $0.baseAddress!, expected.count) == 0 }
    }

    private mutating func stop(_ seq: Int64, _ message: String) -> Bool {
        failure = (seq, message)
        return false
    }

    /// The root of the entries checked so far.
    func root() -> Hash { edge.root() }
}

/// The right edge of the tree being verified: the hashes of the current tile of each level in one
/// contiguous buffer per level, and the tiles completed since they were last taken.
struct VerifyingEdge {
    struct Tile: Equatable {
        var level: Int
        var index: Int64
        var bytes: [UInt8]
    }

    private(set) var size: Int64 = 0
    private var levels: [[UInt8]] = []
    private var indices: [Int64] = []
    private var completed: [Tile] = []
    private var scratch = [UInt8](repeating: 0, count: Tiles.width * 32)
    private var carry = [UInt8](repeating: 0, count: 32)

    /// Appends a leaf hash (32 bytes at `hash`), hashing every tile it completes into the level above.
    mutating func append(_ hash: UnsafeRawPointer) {
        carry.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: hash, byteCount: 32) }
        var level = 0
        var position = size
        while true {
            if levels.count == level {
                levels.append([])
                levels[level].reserveCapacity(Tiles.width * 32)
                indices.append(0)
            }
            let index = position / Int64(Tiles.width)
            if indices[level] != index {
                indices[level] = index
                levels[level].removeAll(keepingCapacity: true)
            }
            levels[level].append(contentsOf: carry)
            guard levels[level].count == Tiles.width * 32 else { break }
            completed.append(Tile(level: level, index: index, bytes: levels[level]))
            scratch.replaceSubrange(0..<(Tiles.width * 32), with: levels[level])
            scratch.withUnsafeMutableBytes { Merkle.reducePerfect($0.baseAddress!, count: Tiles.width) }
            carry.replaceSubrange(0..<32, with: scratch[0..<32])
            position = index
            level += 1
        }
        size += 1
    }

    /// Full tiles completed since the last call.
    mutating func takeCompleted() -> [Tile] {
        defer { completed.removeAll(keepingCapacity: true) }
        return completed
    }

    /// The last tile of every level of the tree, as storage holds them.
    func edgeTiles() -> [Tile] {
        TileEdge.edgeIndices(size: size).compactMap { key in
            key.level < levels.count && indices[key.level] == key.index ? Tile(level: key.level, index: key.index, bytes: levels[key.level]) : nil
        }
    }

    /// The Merkle root of the leaves appended, from the edge tiles.
    func root() -> Hash {
        guard size > 0 else { return Merkle.emptyRoot }
        let tiles = edgeTiles().map { TileEdge.Tile(level: $0.level, index: $0.index, hashes: LedgerTiles.split($0.bytes)) }
        // The edge always holds what the root needs; an empty hash would fail every comparison.
        return (try? TileEdge(size: size, tiles: tiles).root()) ?? []
    }
}

/// A ledger as stored in the database.
package struct DatabaseLedgerSource: LedgerSource {
    let database: Database
    let organizationID: UUID

    package init(database: Database, organizationID: UUID) {
        self.database = database
        self.organizationID = organizationID
    }

    package func entries(from: Int64, limit: Int) async throws -> [LedgerEntryRow] {
        try await database.read { db in try await LedgerStore(db).entries(organizationID, from: from, limit: limit) }
    }

    package func tile(level: Int, index: Int64) async throws -> [UInt8]? {
        try await database.read { db in try await LedgerStore(db).tile(organizationID, level: level, index: index) }
    }

    package func currentSize() async throws -> Int64? {
        try await database.read { db in try await LedgerStore(db).head(organizationID)?.size ?? 0 }
    }
}
