import Crypto
import Foundation

/// A 32-byte SHA-256 hash.
package typealias Hash = [UInt8]

/// RFC 9162 section 2 Merkle tree hashing, proofs and their verification. Pure functions, no I/O.
package enum Merkle {
    /// The hash of the empty tree: SHA-256 of nothing.
    package static let emptyRoot: Hash = Array(SHA256.hash(data: [UInt8]()))

    /// `SHA-256(0x00 || data)`.
    package static func leafHash(_ data: some Collection<UInt8>) -> Hash {
        var hasher = SHA256()
        hasher.update(data: [0x00])
        hasher.update(data: Array(data))
        return Array(hasher.finalize())
    }

    /// `SHA-256(0x01 || left || right)`.
    package static func nodeHash(_ left: Hash, _ right: Hash) -> Hash {
        var hasher = SHA256()
        hasher.update(data: [0x01])
        hasher.update(data: left)
        hasher.update(data: right)
        return Array(hasher.finalize())
    }

    /// The largest power of two strictly less than `n` (n > 1).
    package static func split(_ n: Int64) -> Int64 {
        var k: Int64 = 1
        while k << 1 < n { k <<= 1 }
        return k
    }

    /// The Merkle Tree Hash of a list of leaf hashes.
    package static func root(of leaves: [Hash]) -> Hash {
        guard !leaves.isEmpty else { return emptyRoot }
        var level = leaves
        // Pairwise reduction gives RFC 9162's MTH: an odd node is carried up unchanged.
        while level.count > 1 {
            var next: [Hash] = []
            next.reserveCapacity((level.count + 1) / 2)
            var i = 0
            while i + 1 < level.count { next.append(nodeHash(level[i], level[i + 1])); i += 2 }
            if i < level.count { next.append(level[i]) }
            level = next
        }
        return level[0]
    }

    // MARK: - Proofs from any hash source

    /// The inclusion proof of leaf `index` in the tree of `size` leaves (RFC 9162 2.1.3.1), built from
    /// `subtree(start, end)`, which returns the MTH of leaves [start, end).
    package static func inclusionProof(index: Int64, size: Int64, subtree: (Int64, Int64) throws -> Hash) rethrows -> [Hash] {
        var proof: [Hash] = []
        var m = index, start: Int64 = 0, end = size
        var tail: [Hash] = []
        while end - start > 1 {
            let k = split(end - start)
            if m < k {
                tail.append(try subtree(start + k, end))
                end = start + k
            } else {
                tail.append(try subtree(start, start + k))
                start += k
                m -= k
            }
        }
        proof = tail.reversed()
        return proof
    }

    /// The consistency proof between tree sizes `old` and `new` (RFC 9162 2.1.4.1).
    package static func consistencyProof(old: Int64, new: Int64, subtree: (Int64, Int64) throws -> Hash) rethrows -> [Hash] {
        guard old > 0, old < new else { return [] }
        var tail: [Hash] = []
        var m = old, start: Int64 = 0, end = new
        var complete = true
        while true {
            let n = end - start
            if m == n {
                if !complete { tail.append(try subtree(start, end)) }
                break
            }
            let k = split(n)
            if m <= k {
                tail.append(try subtree(start + k, end))
                end = start + k
            } else {
                tail.append(try subtree(start, start + k))
                start += k
                m -= k
                complete = false
            }
        }
        return tail.reversed()
    }

    // MARK: - Verification (RFC 9162 2.1.3.2 and 2.1.4.2)

    /// Whether `proof` shows leaf `leafHash` at `index` in the tree of `size` with root `root`.
    package static func verifyInclusion(index: Int64, size: Int64, leafHash: Hash, proof: [Hash], root: Hash) -> Bool {
        guard index >= 0, index < size, leafHash.count == 32, root.count == 32 else { return false }
        var fn = index, sn = size - 1
        var r = leafHash
        for p in proof {
            guard p.count == 32, sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                r = nodeHash(p, r)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                r = nodeHash(r, p)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && r == root
    }

    /// Whether `proof` shows the tree of `size1` with `root1` is a prefix of the tree of `size2` with `root2`.
    package static func verifyConsistency(size1: Int64, size2: Int64, root1: Hash, root2: Hash, proof: [Hash]) -> Bool {
        guard size1 >= 0, size2 >= size1 else { return false }
        // The empty tree proves nothing: only an empty tree with the empty root is consistent with itself.
        if size1 == 0 { return size2 == 0 && proof.isEmpty && root1 == emptyRoot && root2 == emptyRoot }
        if size1 == size2 { return proof.isEmpty && root1 == root2 }
        guard root1.count == 32, root2.count == 32 else { return false }
        guard !proof.isEmpty, proof.allSatisfy({ $0.count == 32 }) else { return false }
        var path = proof
        if size1 & (size1 - 1) == 0 { path.insert(root1, at: 0) }
        var fn = size1 - 1, sn = size2 - 1
        while fn & 1 == 1 { fn >>= 1; sn >>= 1 }
        var fr = path[0], sr = path[0]
        for c in path.dropFirst() {
            guard sn != 0 else { return false }
            if fn & 1 == 1 || fn == sn {
                fr = nodeHash(c, fr)
                sr = nodeHash(c, sr)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                sr = nodeHash(sr, c)
            }
            fn >>= 1
            sn >>= 1
        }
        return sn == 0 && fr == root1 && sr == root2
    }
}

/// A compact range: the hashes of the perfect subtrees covering leaves [0, size), left to right.
///
/// Appending a leaf merges equal-height subtrees; the root is the right-to-left fold. The verifier keeps
/// one of these while streaming entries, so it can compare the root at every checkpoint size in O(log n)
/// memory.
package struct CompactRange: Sendable, Equatable {
    package private(set) var size: Int64 = 0
    /// (height, hash) of each subtree, heights strictly decreasing.
    private var subtrees: [(height: Int, hash: Hash)] = []

    package init() {}

    package static func == (a: CompactRange, b: CompactRange) -> Bool {
        a.size == b.size && a.subtrees.map(\.hash) == b.subtrees.map(\.hash)
    }

    /// Appends one leaf hash.
    package mutating func append(_ leafHash: Hash) {
        var node = leafHash
        var height = 0
        while let last = subtrees.last, last.height == height {
            subtrees.removeLast()
            node = Merkle.nodeHash(last.hash, node)
            height += 1
        }
        subtrees.append((height, node))
        size += 1
    }

    /// The Merkle Tree Hash of the leaves appended so far.
    package var root: Hash {
        guard var acc = subtrees.last?.hash else { return Merkle.emptyRoot }
        for subtree in subtrees.dropLast().reversed() { acc = Merkle.nodeHash(subtree.hash, acc) }
        return acc
    }
}

// MARK: - Allocation-free hashing for the verifier's hot path

extension Merkle {
    /// Writes `SHA-256(0x00 || bytes)` to `out` (32 bytes).
    @inline(__always)
    package static func leafHash(_ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        var hasher = SHA256()
        withUnsafeBytes(of: UInt8(0)) { hasher.update(bufferPointer: $0) }
        hasher.update(bufferPointer: bytes)
        hasher.finalize().withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: 32) }
    }

    /// Writes `SHA-256(0x01 || left || right)` to `out`; `out` may be `left`.
    @inline(__always)
    static func nodeHash(_ left: UnsafeRawPointer, _ right: UnsafeRawPointer, into out: UnsafeMutableRawPointer) {
        var block: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt8) = (0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &block) { buffer in
            buffer[0] = 1
            (buffer.baseAddress! + 1).copyMemory(from: left, byteCount: 32)
            (buffer.baseAddress! + 33).copyMemory(from: right, byteCount: 32)
            var hasher = SHA256()
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<65]))
            hasher.finalize().withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: 32) }
        }
    }

    /// Replaces the first `count` (a power of two) hashes at `hashes` by their Merkle root, written to the
    /// first 32 bytes, reducing pairwise in place.
    static func reducePerfect(_ hashes: UnsafeMutableRawPointer, count: Int) {
        var n = count
        while n > 1 {
            for k in 0..<(n / 2) {
                nodeHash(hashes + 64 * k, hashes + 64 * k + 32, into: hashes + 32 * k)
            }
            n /= 2
        }
    }
}
