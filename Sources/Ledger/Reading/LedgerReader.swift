package import Foundation
import PortalCore
import Synchronization
package import Storage

/// The read side for auditors: checkpoints, tiles, entry bundles, entries and proofs (DESIGN section 4.2),
/// all from stored rows with O(log n) tile reads.
package struct LedgerReader: Sendable {
    private let database: Database
    private let cache: TileCache

    /// `cachedTiles` bounds the tiles kept in memory for proofs (each at most 256 hashes and their 255 interior nodes, 16 KiB).
    package init(database: Database, cachedTiles: Int = 2_048) {
        self.database = database
        cache = TileCache(capacity: cachedTiles)
    }

    /// The stored head, if the ledger has entries.
    package func head(_ org: UUID) async throws -> LedgerHead? {
        try await database.read { db in try await LedgerStore(db).head(org) }
    }

    /// The latest signed checkpoint.
    package func latestCheckpoint(_ org: UUID) async throws -> LedgerCheckpointRow? {
        try await database.read { db in try await LedgerStore(db).latestCheckpoint(org) }
    }

    /// A hash tile's bytes (`width` hashes), or nil if the tree does not have it yet.
    package func tile(_ org: UUID, level: Int, index: Int64, width: Int) async throws -> Data? {
        guard let bytes = try await database.read({ db in try await LedgerStore(db).tile(org, level: level, index: index) }) else { return nil }
        let stored = bytes.count / 32
        guard stored >= width else { return nil }
        return Data(bytes.prefix(width * 32))
    }

    /// An entry bundle: `width` entries from `index * 256`, each as a big-endian uint16 length and its bytes.
    package func entryBundle(_ org: UUID, index: Int64, width: Int) async throws -> Data? {
        // An index whose first entry lies past Int64 is past every ledger: nil (404), never a trap.
        let (start, overflow) = index.multipliedReportingOverflow(by: Int64(Tiles.width))
        guard !overflow, start >= 0 else { return nil }
        let rows = try await database.read { db in try await LedgerStore(db).entries(org, from: start, limit: width) }
        guard rows.count == width, rows.last?.seq == start + Int64(width) - 1 else { return nil }
        var data = Data()
        for row in rows {
            data.append(UInt8(row.bytes.count >> 8))
            data.append(UInt8(row.bytes.count & 0xFF))
            data.append(contentsOf: row.bytes)
        }
        return data
    }

    /// Entries with `seq >= from`.
    package func entries(_ org: UUID, from: Int64, limit: Int) async throws -> [LedgerEntryRow] {
        try await database.read { db in try await LedgerStore(db).entries(org, from: from, limit: limit) }
    }

    /// Every entry of `org` below `size` (to the end of the ledger when nil), oldest first, in pages of at
    /// most `pageSize`: the one way reports, registers and data-subject exports read the ledger. Each page
    /// is its own read transaction (entries are append-only, so pages read apart agree), and only one page
    /// is held at a time, so memory does not grow with the ledger.
    package func pages(_ org: UUID, below size: Int64? = nil, pageSize: Int = 2_000) -> LedgerPages {
        LedgerPages(database: database, organizationID: org, size: size, pageSize: max(1, pageSize))
    }

    /// The inclusion proof of `seq` in the tree of `size`.
    package func inclusionProof(_ org: UUID, seq: Int64, size: Int64) async throws -> [Hash] {
        try await proof(org) { subtree in try Merkle.inclusionProof(index: seq, size: size, subtree: subtree) }
    }

    /// The consistency proof between sizes `old` and `new`.
    package func consistencyProof(_ org: UUID, old: Int64, new: Int64) async throws -> [Hash] {
        try await proof(org) { subtree in try Merkle.consistencyProof(old: old, new: new, subtree: subtree) }
    }

    /// Runs a proof computation twice: first to learn which tiles it reads (the set does not depend on
    /// hash values), then, with exactly those tiles, for real. Tiles come from the cache where it has
    /// them; the rest are read in one read transaction. A cached tile can be shorter than the stored one
    /// (it grew since), never different: if the computation needs more of it, the tiles are read afresh.
    private func proof(_ org: UUID, _ compute: ((Int64, Int64) throws -> Hash) throws -> [Hash]) async throws -> [Hash] {
        var needed: Set<TileCache.Key> = []
        var probe = TileHashes(nodes: { level, index in
            needed.insert(TileCache.Key(organizationID: org, level: level, index: index))
            return .placeholder
        })
        _ = try compute { try probe.subtree($0, $1) }
        var tiles: [TileCache.Key: TileNodes] = [:]
        for key in needed { tiles[key] = cache.get(key) }
        let missing = needed.filter { tiles[$0] == nil }
        if !missing.isEmpty {
            for (key, hashes) in try await fetch(missing) {
                cache.put(key, hashes)
                tiles[key] = hashes
            }
        }
        if let proof = try? Self.run(compute, org: org, tiles: tiles) { return proof }
        // A cached tile was shorter than this proof needs: read them all afresh.
        let fetched = try await fetch(needed)
        for (key, hashes) in fetched { cache.put(key, hashes) }
        return try Self.run(compute, org: org, tiles: fetched)
    }

    private static func run(_ compute: ((Int64, Int64) throws -> Hash) throws -> [Hash], org: UUID, tiles: [TileCache.Key: TileNodes]) throws -> [Hash] {
        var reader = TileHashes(nodes: { level, index in tiles[TileCache.Key(organizationID: org, level: level, index: index)] ?? TileNodes(hashes: []) })
        return try compute { try reader.subtree($0, $1) }
    }

    /// Reads tiles without a transaction: each is a prefix of what it will ever be, so tiles read a moment
    /// apart still agree for any size the caller may ask about (at most the head when it asked).
    private func fetch(_ keys: Set<TileCache.Key>) async throws -> [TileCache.Key: TileNodes] {
        try await database.readStatements { db in
            var tiles: [TileCache.Key: TileNodes] = [:]
            for key in keys {
                guard let bytes = try await LedgerStore(db).tile(key.organizationID, level: key.level, index: key.index) else {
                    throw PortalError(.storage, "ledger tile \(key.level)/\(key.index) is missing")
                }
                tiles[key] = TileNodes(tileBytes: bytes)
            }
            return tiles
        }
    }
}

/// Hash tiles read for proofs, kept in memory with their interior nodes (``TileNodes``, 16 KiB for a full
/// tile: 32 MiB for the default 2,048). A stored tile only ever grows at its end (the ledger is
/// append-only), so a cached copy is a valid prefix for ever: it serves any proof that needs no more of
/// it. Bounded; the oldest insertion is evicted first.
final class TileCache: Sendable {
    struct Key: Hashable, Sendable {
        var organizationID: UUID
        var level: Int
        var index: Int64
    }

    private struct State {
        var tiles: [Key: TileNodes] = [:]
        var order: [Key] = []
        var next = 0
    }

    private let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) { self.capacity = capacity }

    func get(_ key: Key) -> TileNodes? { state.withLock { $0.tiles[key] } }

    /// Keeps `hashes` unless a longer copy of the tile is already cached.
    func put(_ key: Key, _ hashes: TileNodes) {
        guard capacity > 0 else { return }
        state.withLock { s in
            if let cached = s.tiles[key] {
                if cached.count < hashes.count { s.tiles[key] = hashes }
                return
            }
            if s.order.count < capacity {
                s.order.append(key)
            } else {
                s.tiles[s.order[s.next]] = nil
                s.order[s.next] = key
                s.next = (s.next + 1) % capacity
            }
            s.tiles[key] = hashes
        }
    }
}

/// The pages of ``LedgerReader/pages(_:below:pageSize:)``: `for try await page in reader.pages(org)`.
package struct LedgerPages: AsyncSequence, Sendable {
    package typealias Element = [LedgerEntryRow]

    let database: Database
    let organizationID: UUID
    let size: Int64?
    let pageSize: Int

    package struct AsyncIterator: AsyncIteratorProtocol {
        let pages: LedgerPages
        var next: Int64 = 0
        var done = false

        package mutating func next() async throws -> [LedgerEntryRow]? {
            guard !done else { return nil }
            if let size = pages.size, next >= size { return nil }
            let (org, from, limit) = (pages.organizationID, next, pages.pageSize)
            var page = try await pages.database.read { db in try await LedgerStore(db).entries(org, from: from, limit: limit) }
            if let size = pages.size { page.removeAll { $0.seq >= size } }
            guard let last = page.last else {
                done = true
                return nil
            }
            next = last.seq + 1
            if page.count < limit { done = true }
            return page
        }
    }

    package func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(pages: self)
    }
}
