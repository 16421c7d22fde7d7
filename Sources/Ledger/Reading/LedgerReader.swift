public import Foundation
import PortalCore
import SQLKit
public import Storage

/// The read side for auditors: checkpoints, tiles, entry bundles, entries and proofs (DESIGN section 4.2),
/// all from stored rows with O(log n) tile reads.
public struct LedgerReader: Sendable {
    private let database: Database

    public init(database: Database) { self.database = database }

    /// The stored head, if the ledger has entries.
    public func head(_ org: UUID) async throws -> LedgerHead? {
        try await database.read { db in try await LedgerStore(db).head(org) }
    }

    /// The latest signed checkpoint.
    public func latestCheckpoint(_ org: UUID) async throws -> LedgerCheckpointRow? {
        try await database.read { db in try await LedgerStore(db).latestCheckpoint(org) }
    }

    /// A hash tile's bytes (`width` hashes), or nil if the tree does not have it yet.
    public func tile(_ org: UUID, level: Int, index: Int64, width: Int) async throws -> Data? {
        guard let bytes = try await database.read({ db in try await LedgerStore(db).tile(org, level: level, index: index) }) else { return nil }
        let stored = bytes.count / 32
        guard stored >= width else { return nil }
        return Data(bytes.prefix(width * 32))
    }

    /// An entry bundle: `width` entries from `index * 256`, each as a big-endian uint16 length and its bytes.
    public func entryBundle(_ org: UUID, index: Int64, width: Int) async throws -> Data? {
        let start = index * Int64(Tiles.width)
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
    public func entries(_ org: UUID, from: Int64, limit: Int) async throws -> [LedgerEntryRow] {
        try await database.read { db in try await LedgerStore(db).entries(org, from: from, limit: limit) }
    }

    /// The inclusion proof of `seq` in the tree of `size`.
    public func inclusionProof(_ org: UUID, seq: Int64, size: Int64) async throws -> [Hash] {
        try await proof(org) { subtree in try Merkle.inclusionProof(index: seq, size: size, subtree: subtree) }
    }

    /// The consistency proof between sizes `old` and `new`.
    public func consistencyProof(_ org: UUID, old: Int64, new: Int64) async throws -> [Hash] {
        try await proof(org) { subtree in try Merkle.consistencyProof(old: old, new: new, subtree: subtree) }
    }

    /// Runs a proof computation twice: first to learn which tiles it reads (the set does not depend on
    /// hash values), then, after one read transaction fetched exactly those, for real.
    private func proof(_ org: UUID, _ compute: ((Int64, Int64) throws -> Hash) throws -> [Hash]) async throws -> [Hash] {
        var needed: Set<[Int64]> = []
        var probe = TileHashes { level, index in
            needed.insert([Int64(level), index])
            return [Hash](repeating: [UInt8](repeating: 0, count: 32), count: Tiles.width)
        }
        _ = try compute { try probe.subtree($0, $1) }
        let wanted = needed
        let tiles = try await database.read { db -> [[Int64]: [Hash]] in
            var tiles: [[Int64]: [Hash]] = [:]
            for key in wanted {
                guard let bytes = try await LedgerStore(db).tile(org, level: Int(key[0]), index: key[1]) else {
                    throw PortalError(.storage, "ledger tile \(key[0])/\(key[1]) is missing")
                }
                tiles[key] = LedgerTiles.split(bytes)
            }
            return tiles
        }
        var reader = TileHashes { level, index in tiles[[Int64(level), index]] ?? [] }
        return try compute { try reader.subtree($0, $1) }
    }
}
