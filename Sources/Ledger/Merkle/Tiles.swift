import Foundation
package import PortalCore

/// C2SP tlog-tiles geometry: tiles of 256 hashes, level l+1 holding the hash of each full level-l tile.
package enum Tiles {
    /// Hashes per full tile (tile height 8).
    package static let width = 256
    package static let height = 8

    /// The path element of a tile index: zero-padded 3-digit elements, all but the last prefixed `x`
    /// (`1234067` is `x001/x234/067`).
    package static func indexPath(_ index: Int64) -> String {
        var elements: [String] = []
        var n = index
        repeat {
            elements.append(String(format: "%03lld", n % 1000))
            n /= 1000
        } while n > 0
        elements.reverse()
        return elements.enumerated().map { $0.offset < elements.count - 1 ? "x" + $0.element : $0.element }.joined(separator: "/")
    }

    /// `tile/<L>/<N>[.p/<W>]`, or `tile/entries/<N>[.p/<W>]` when `level` is nil.
    package static func path(level: Int?, index: Int64, width: Int) -> String {
        let head = level.map { "tile/\($0)/" } ?? "tile/entries/"
        return head + indexPath(index) + (width < Self.width ? ".p/\(width)" : "")
    }

    /// How many hashes tile (level, index) holds in a tree of `size` leaves: 256 for a full tile, the
    /// partial width for the edge tile, 0 for a tile the tree does not reach yet.
    package static func storedWidth(level: Int, index: Int64, size: Int64) -> Int {
        guard level >= 0, index >= 0, size > 0 else { return 0 }
        let shift = Int64(height) * Int64(level)
        guard shift < 63 else { return 0 }
        let count = size >> shift
        let full = count / Int64(width)
        if index < full { return width }
        return index == full ? Int(count % Int64(width)) : 0
    }

    /// A parsed tile request.
    package struct Request: Sendable, Equatable {
        /// nil for an entry bundle.
        package var level: Int?
        package var index: Int64
        /// 256 for a full tile.
        package var width: Int

        package init(level: Int?, index: Int64, width: Int) {
            self.level = level
            self.index = index
            self.width = width
        }
    }

    /// Parses the part of a path after `tile/`: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`.
    package static func parse(_ rest: String) throws(PortalError) -> Request {
        var parts = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2 else { throw PortalError.notFound("tile") }
        let levelText = parts.removeFirst()
        let level: Int?
        if levelText == "entries" {
            level = nil
        } else {
            guard let l = Int(levelText), (0...63).contains(l), String(l) == levelText else { throw PortalError.notFound("tile") }
            level = l
        }
        var width = Self.width
        if parts.count >= 2, parts[parts.count - 2].hasSuffix(".p") {
            guard let w = Int(parts.removeLast()), (1..<Self.width).contains(w) else { throw PortalError.notFound("tile") }
            width = w
            parts[parts.count - 1].removeLast(2)
        }
        var index: Int64 = 0
        for (i, element) in parts.enumerated() {
            let last = i == parts.count - 1
            var digits = element
            if !last {
                guard digits.hasPrefix("x") else { throw PortalError.notFound("tile") }
                digits.removeFirst()
            }
            guard digits.count == 3, let v = Int64(digits), v >= 0 else { throw PortalError.notFound("tile") }
            // An index past Int64 is past every tree: not found, never an overflow trap.
            let (scaled, overflowScaled) = index.multipliedReportingOverflow(by: 1000)
            let (sum, overflowSum) = scaled.addingReportingOverflow(v)
            guard !overflowScaled, !overflowSum else { throw PortalError.notFound("tile") }
            index = sum
        }
        guard indexPath(index) == parts.joined(separator: "/") else { throw PortalError.notFound("tile") }
        return Request(level: level, index: index, width: width)
    }
}

/// Every perfect subtree's hash within one tile: the stored hashes (height 0) and, for each height
/// 1...8, the hash of each complete group of `2^height` of them. Built once when a tile is read (at most
/// 255 hashes, allocation-free), so a proof looks its nodes up instead of hashing up to 255 per node.
/// One contiguous buffer: 16 KiB for a full tile.
package struct TileNodes: Sendable {
    /// The hashes the tile holds (a partial tile holds fewer than 256).
    package let count: Int
    private let bytes: [UInt8]

    /// A tile's stored bytes: `count` hashes of 32 bytes (a trailing partial hash is ignored).
    package init(tileBytes: some Collection<UInt8>) {
        let count = min(tileBytes.count / 32, Tiles.width)
        var bytes = [UInt8](repeating: 0, count: 32 * Self.rowStart(count: count, height: Tiles.height + 1))
        bytes.withUnsafeMutableBytes { buffer in
            let base = buffer.baseAddress!
            let copied: Void? = tileBytes.withContiguousStorageIfAvailable { source in
                base.copyMemory(from: source.baseAddress!, byteCount: count * 32)
            }
            if copied == nil {
                for (i, byte) in tileBytes.prefix(count * 32).enumerated() { base.storeBytes(of: byte, toByteOffset: i, as: UInt8.self) }
            }
            for height in 1...Tiles.height {
                let below = base + 32 * Self.rowStart(count: count, height: height - 1)
                let row = base + 32 * Self.rowStart(count: count, height: height)
                for j in 0..<(count >> height) {
                    Merkle.nodeHash(below + 64 * j, below + 64 * j + 32, into: row + 32 * j)
                }
            }
        }
        self.count = count
        self.bytes = bytes
    }

    /// The nodes of a tile's stored hashes.
    package init(hashes: [Hash]) {
        self.init(tileBytes: hashes.joined())
    }

    private init(placeholderCount count: Int) {
        self.count = count
        bytes = [UInt8](repeating: 0, count: 32 * Self.rowStart(count: count, height: Tiles.height + 1))
    }

    /// A full tile of zero hashes: stands in for every tile when only the set of tiles a computation reads
    /// matters (that set never depends on hash values).
    package static let placeholder = TileNodes(placeholderCount: Tiles.width)

    /// The hash of the `index`-th group of `2^height` stored hashes, or nil when the tile does not hold
    /// that whole group.
    package func node(height: Int, index: Int) -> Hash? {
        guard (0...Tiles.height).contains(height), index >= 0, index < count >> height else { return nil }
        let start = 32 * (Self.rowStart(count: count, height: height) + index)
        return Array(bytes[start..<start + 32])
    }

    /// Nodes stored before row `height`: rows hold `count >> h` nodes each.
    private static func rowStart(count: Int, height: Int) -> Int {
        var start = 0
        for h in 0..<height { start += count >> h }
        return start
    }
}

/// Computes Merkle hashes of a tiled tree from its tiles, fetched through `tile(level, index)`.
///
/// A node at height `h` lies in the level-`h/8` tiles: it is the hash of `2^(h%8)` consecutive hashes of
/// one tile, looked up in the tile's ``TileNodes``. Proofs therefore read O(log n) tiles, never rebuild the
/// tree, and hash only the O(log n) nodes that are not perfect subtrees.
package struct TileHashes {
    private let tile: (Int, Int64) throws -> TileNodes
    private var cache: [Int64: TileNodes] = [:]

    /// `nodes(level, index)` returns the nodes of that tile as stored (partial or full).
    package init(nodes: @escaping (Int, Int64) throws -> TileNodes) {
        self.tile = nodes
    }

    /// `tile(level, index)` returns the stored hashes of that tile (partial or full).
    package init(tile: @escaping (Int, Int64) throws -> [Hash]) {
        self.tile = { level, index in TileNodes(hashes: try tile(level, index)) }
    }

    private mutating func nodes(level: Int, index: Int64) throws -> TileNodes {
        let key = Int64(level) << 56 | index
        if let cached = cache[key] { return cached }
        let value = try tile(level, index)
        cache[key] = value
        return value
    }

    /// The hash of the perfect subtree of height `height` whose leftmost leaf is `index << height`.
    package mutating func node(height: Int, index: Int64) throws -> Hash {
        let level = height / Tiles.height
        let k = height % Tiles.height
        let first = index << Int64(k)
        let tileIndex = first / Int64(Tiles.width)
        let offset = Int(first % Int64(Tiles.width))
        let stored = try nodes(level: level, index: tileIndex)
        guard let hash = stored.node(height: k, index: offset >> k) else {
            throw PortalError(.storage, "ledger tile \(level)/\(tileIndex) has \(stored.count) hashes, \(offset + (1 << k)) needed")
        }
        return hash
    }

    /// The Merkle Tree Hash of leaves [start, end), for a range that RFC 9162's recursive split produces.
    package mutating func subtree(_ start: Int64, _ end: Int64) throws -> Hash {
        let n = end - start
        if n <= 0 { return Merkle.emptyRoot }
        if n & (n - 1) == 0, start % n == 0 {
            return try node(height: n.trailingZeroBitCount, index: start / n)
        }
        let k = Merkle.split(n)
        return Merkle.nodeHash(try subtree(start, start + k), try subtree(start + k, end))
    }
}

/// The right edge of a tiled tree: the last tile of every level, which is all that changes on append.
package struct TileEdge: Sendable {
    package struct Tile: Sendable, Equatable {
        package var level: Int
        package var index: Int64
        package var hashes: [Hash]

        package init(level: Int, index: Int64, hashes: [Hash]) {
            self.level = level
            self.index = index
            self.hashes = hashes
        }
    }

    package private(set) var size: Int64
    /// The rightmost tile of each level, by level.
    package private(set) var tiles: [Int: Tile]
    /// Levels whose edge tile changed since the edge was loaded.
    private var dirtyLevels: Set<Int> = []
    /// Tiles that filled up (and so left the edge) since the edge was loaded.
    private var completed: [Tile] = []

    /// An edge loaded from storage: `tiles` holds the last tile of each level of a tree of `size` leaves.
    package init(size: Int64, tiles: [Tile]) {
        self.size = size
        self.tiles = Dictionary(uniqueKeysWithValues: tiles.map { ($0.level, $0) })
    }

    /// The last tile index at each level for a tree of `size`, which storage should load.
    package static func edgeIndices(size: Int64) -> [(level: Int, index: Int64)] {
        var result: [(Int, Int64)] = []
        var count = size
        var level = 0
        while count > 0 {
            // The tile that holds the last hash of this level (or the next one to fill).
            result.append((level, (count - 1) / Int64(Tiles.width)))
            count /= Int64(Tiles.width)
            level += 1
        }
        return result
    }

    /// Appends a leaf hash, completing and hashing full tiles up the levels.
    package mutating func append(_ leafHash: Hash) {
        var hash = leafHash
        var level = 0
        var position = size
        while true {
            let index = position / Int64(Tiles.width)
            var tile = tiles[level] ?? Tile(level: level, index: index, hashes: [])
            if tile.index != index { tile = Tile(level: level, index: index, hashes: []) }
            tile.hashes.append(hash)
            tiles[level] = tile
            dirtyLevels.insert(level)
            guard tile.hashes.count == Tiles.width else { break }
            completed.append(tile)
            hash = Merkle.root(of: tile.hashes)
            position = index
            level += 1
        }
        size += 1
    }

    /// The same edge with no pending changes: only the last tile of each level, as storage would load it.
    package func clean() -> TileEdge {
        TileEdge(size: size, tiles: Self.edgeIndices(size: size).compactMap { key in tiles[key.level].flatMap { $0.index == key.index ? $0 : nil } })
    }

    /// The tiles changed by appends, to be written back.
    package var changedTiles: [Tile] {
        var byKey: [[Int64]: Tile] = [:]
        for tile in completed { byKey[[Int64(tile.level), tile.index]] = tile }
        for level in dirtyLevels { if let tile = tiles[level] { byKey[[Int64(level), tile.index]] = tile } }
        return byKey.values.sorted { ($0.level, $0.index) < ($1.level, $1.index) }
    }

    /// The root of the tree, from the edge tiles alone.
    package func root() throws -> Hash {
        let snapshot = tiles
        var reader = TileHashes { level, index in
            guard let tile = snapshot[level], tile.index == index else {
                throw PortalError(.storage, "the ledger edge lacks tile \(level)/\(index)")
            }
            return tile.hashes
        }
        return try reader.subtree(0, size)
    }
}
