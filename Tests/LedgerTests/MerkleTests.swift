import Crypto
import Foundation
import Ledger
import PortalCore
import Testing

/// RFC 9162 hashing and proofs, against the transparency-dev conformance vectors (Apache-2.0, copied into
/// `Vectors/rfc9162` with their licence) and against trees built here.
@Suite("Merkle trees and proofs")
struct MerkleTests {
    static func vectorFiles(_ kind: String) throws -> [URL] {
        let base = try #require(Bundle.module.url(forResource: "Vectors", withExtension: nil)).appendingPathComponent("rfc9162/\(kind)")
        let enumerator = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil)
        var files: [URL] = []
        while let url = enumerator?.nextObject() as? URL {
            if url.pathExtension == "json" { files.append(url) }
        }
        return files.sorted { $0.path < $1.path }
    }

    static func hashes(_ value: Any?) -> [Hash] {
        (value as? [String] ?? []).map { Array(Data(base64Encoded: $0) ?? Data()) }
    }

    static func hash(_ value: Any?) -> Hash {
        Array(Data(base64Encoded: value as? String ?? "") ?? Data())
    }

    @Test("every inclusion vector, negative ones included")
    func inclusionVectors() throws {
        let files = try Self.vectorFiles("inclusion")
        #expect(files.count > 50)
        var negatives = 0
        for file in files {
            let v = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
            let wantErr = v["wantErr"] as? Bool ?? false
            let ok = Merkle.verifyInclusion(
                index: (v["leafIdx"] as? NSNumber)?.int64Value ?? -1, size: (v["treeSize"] as? NSNumber)?.int64Value ?? 0,
                leafHash: Self.hash(v["leafHash"]), proof: Self.hashes(v["proof"]), root: Self.hash(v["root"])
            )
            #expect(ok == !wantErr, "\(file.pathComponents.suffix(2).joined(separator: "/"))")
            if wantErr { negatives += 1 }
        }
        #expect(negatives > 30)
    }

    @Test("every consistency vector, negative ones included")
    func consistencyVectors() throws {
        let files = try Self.vectorFiles("consistency")
        #expect(files.count > 50)
        for file in files {
            let v = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
            let wantErr = v["wantErr"] as? Bool ?? false
            let ok = Merkle.verifyConsistency(
                size1: (v["size1"] as? NSNumber)?.int64Value ?? 0, size2: (v["size2"] as? NSNumber)?.int64Value ?? 0,
                root1: Self.hash(v["root1"]), root2: Self.hash(v["root2"]), proof: Self.hashes(v["proof"])
            )
            #expect(ok == !wantErr, "\(file.pathComponents.suffix(2).joined(separator: "/"))")
        }
    }

    static func leaves(_ n: Int) -> [Hash] { (0..<n).map { Merkle.leafHash(Array("leaf \($0)".utf8)) } }

    /// Plain recursive MTH straight from RFC 9162's definition, as the reference.
    static func mth(_ leaves: ArraySlice<Hash>) -> Hash {
        if leaves.isEmpty { return Merkle.emptyRoot }
        if leaves.count == 1 { return leaves.first! }
        let k = Int(Merkle.split(Int64(leaves.count)))
        return Merkle.nodeHash(mth(leaves.prefix(k)), mth(leaves.dropFirst(k)))
    }

    @Test("tiled trees: the edge's root, and proofs from tiles, match the reference for many sizes")
    func tiledTrees() throws {
        let all = Self.leaves(70_000)
        var edge = TileEdge(size: 0, tiles: [])
        var stored: [[Int64]: [Hash]] = [:]
        let checkSizes: Set<Int> = [1, 2, 3, 7, 8, 255, 256, 257, 511, 512, 513, 1000, 65_535, 65_536, 65_537, 70_000]
        for (i, leaf) in all.enumerated() {
            edge.append(leaf)
            let n = i + 1
            guard checkSizes.contains(n) else { continue }
            for tile in edge.changedTiles { stored[[Int64(tile.level), tile.index]] = tile.hashes }
            edge = TileEdge(size: edge.size, tiles: TileEdge.edgeIndices(size: edge.size).compactMap { key in
                stored[[Int64(key.level), key.index]].map { TileEdge.Tile(level: key.level, index: key.index, hashes: $0) }
            })
            let reference = Self.mth(all.prefix(n))
            #expect(try edge.root() == reference, "root at \(n)")
            let snapshot = stored
            var reader = TileHashes { level, index in snapshot[[Int64(level), index]] ?? [] }
            for index in [0, n / 3, n - 1] {
                let proof = try Merkle.inclusionProof(index: Int64(index), size: Int64(n)) { try reader.subtree($0, $1) }
                #expect(Merkle.verifyInclusion(index: Int64(index), size: Int64(n), leafHash: all[index], proof: proof, root: reference), "inclusion \(index) of \(n)")
            }
            for old in [1, n / 2, n - 1] where old > 0 && old < n {
                let proof = try Merkle.consistencyProof(old: Int64(old), new: Int64(n)) { try reader.subtree($0, $1) }
                #expect(Merkle.verifyConsistency(size1: Int64(old), size2: Int64(n), root1: Self.mth(all.prefix(old)), root2: reference, proof: proof), "consistency \(old)->\(n)")
                #expect(proof.count <= 2 * 17)
            }
        }
        // Level 1 holds the hash of each full level-0 tile; level 2 the hash of the first full level-1 tile.
        #expect(stored[[1, 0]]?.first == Self.mth(all.prefix(256)))
        #expect(stored[[2, 0]]?.count == 1)
        #expect(stored[[0, 273]]?.count == 70_000 % 256)
    }

    @Test("a tile's nodes are the roots of its complete groups of 2^k hashes, and nothing past its count")
    func tileNodes() throws {
        let hashes: [Hash] = (0..<256).map { Merkle.leafHash([UInt8(truncatingIfNeeded: $0), 7]) }
        for count in [0, 1, 2, 3, 127, 128, 200, 255, 256] {
            let nodes = TileNodes(hashes: Array(hashes.prefix(count)))
            #expect(nodes.count == count)
            for height in 0...8 {
                let group = 1 << height
                for index in 0..<(count / group) {
                    #expect(nodes.node(height: height, index: index) == Merkle.root(of: Array(hashes[index * group..<(index + 1) * group])), "count \(count), height \(height), index \(index)")
                }
                // A group the tile does not hold whole has no node.
                #expect(nodes.node(height: height, index: count / group) == nil)
            }
            #expect(nodes.node(height: 9, index: 0) == nil)
            #expect(nodes.node(height: 0, index: -1) == nil)
        }
        // Bytes and hashes give the same nodes; a trailing partial hash is ignored.
        let bytes = Array(hashes.prefix(5).joined()) + [1, 2, 3]
        #expect(TileNodes(tileBytes: bytes).node(height: 2, index: 0) == TileNodes(hashes: Array(hashes.prefix(5))).node(height: 2, index: 0))
        #expect(TileNodes(tileBytes: bytes).count == 5)
    }

    @Test("a compact range gives the root at every size")
    func compactRange() {
        let all = Self.leaves(600)
        var range = CompactRange()
        for (i, leaf) in all.enumerated() {
            range.append(leaf)
            if [1, 2, 3, 5, 255, 256, 257, 600].contains(i + 1) {
                #expect(range.root == Self.mth(all.prefix(i + 1)))
            }
        }
        #expect(CompactRange().root == Merkle.emptyRoot)
    }

    @Test("tile paths follow tlog-tiles")
    func tilePaths() throws {
        #expect(Tiles.indexPath(1_234_067) == "x001/x234/067")
        #expect(Tiles.indexPath(0) == "000")
        #expect(Tiles.path(level: 0, index: 5, width: 256) == "tile/0/005")
        #expect(Tiles.path(level: 1, index: 1_234_067, width: 3) == "tile/1/x001/x234/067.p/3")
        #expect(Tiles.path(level: nil, index: 2, width: 10) == "tile/entries/002.p/10")
        #expect(try Tiles.parse("0/x001/x234/067.p/3") == .init(level: 0, index: 1_234_067, width: 3))
        #expect(try Tiles.parse("entries/000") == .init(level: nil, index: 0, width: 256))
        for bad in ["0/1", "0/0001", "x/000", "0/000.p/0", "0/000.p/256", "0/x000/001", "0/001/002", "-1/000"] {
            #expect(throws: PortalError.self, "\(bad)") { try Tiles.parse(bad) }
        }
    }
}

@Suite("Canonical entries and signed notes")
struct EntryAndNoteTests {
    @Test("canonical JSON agrees with an independent encoder (Python's json) on entry-shaped documents")
    func canonicalAgainstPython() throws {
        let entry = LedgerEntry(
            seq: 42, time: "2026-11-25T16:30:00.123456Z", org: "acme", type: "integration.updated",
            actor: "01a213c9-420d-7377-8734-efee6b00db2b", integration: "01a213c9-4dc7-7286-a99b-c1244ab4efc2",
            data: ["changed": ["name", "config"], "note": "quote \" backslash \\ slash / tab \t nl \n ctl \u{01} ü € 🙂", "n": -7, "nested": ["z": 1, "a": [2, "x"]]],
            prev: LedgerEntry.zeroHash
        )
        let ours = try entry.canonicalBytes()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import json,sys; d=json.loads(sys.stdin.buffer.read()); sys.stdout.buffer.write(json.dumps(d, sort_keys=True, separators=(',', ':'), ensure_ascii=False).encode())"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        input.fileHandleForWriting.write(Data(ours))
        try input.fileHandleForWriting.close()
        let theirs = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(Array(theirs) == ours, "\(String(decoding: ours, as: UTF8.self))\n\(String(decoding: theirs, as: UTF8.self))")
        #expect(try LedgerEntry(canonical: ours) == entry)
        #expect(String(decoding: ours, as: UTF8.self).hasPrefix(#"{"actor":"#))
    }

    @Test("non-canonical bytes, floats and booleans are refused")
    func refusesNonCanonical() throws {
        let entry = LedgerEntry(seq: 0, time: "t", org: "o", type: "x", actor: "a", integration: nil, data: ["k": "v"], prev: LedgerEntry.zeroHash)
        let bytes = try entry.canonicalBytes()
        let spaced = Array(String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: ",", with: ", ").utf8)
        #expect(throws: PortalError.self) { try LedgerEntry(canonical: spaced) }
        #expect(throws: PortalError.self) { try CanonicalJSON.encode(["x": .double(1.5)]) }
        #expect(throws: PortalError.self) { try CanonicalJSON.encode(["x": true]) }
        var big = entry
        big.data = ["blob": .string(String(repeating: "a", count: 70_000))]
        #expect(throws: PortalError.self) { try big.canonicalBytes() }
    }

    @Test("the C2SP signed-note example verifies, and fails after a one-byte change")
    func signedNoteExample() throws {
        let url = try #require(Bundle.module.url(forResource: "Vectors", withExtension: nil)).appendingPathComponent("signed-note.json")
        let v = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let key = try SignedNote.VerifierKey(text: v["vkey"] as! String)
        #expect(key.algorithm == .ed25519 && key.name == "example.com/foo")
        let note = (v["text"] as! String) + "\n" + (v["signature_line"] as! String) + "\n"
        #expect(try SignedNote.verify(note, keys: [key]) == v["text"] as! String)
        let altered = note.replacingOccurrences(of: "example message", with: "example messagf")
        #expect(throws: PortalError.self) { try SignedNote.verify(altered, keys: [key]) }
    }

    @Test("checkpoints are signed with Ed25519 and ML-DSA-65; each key verifies its own line")
    func dualSignature() throws {
        let name = "portal.example.com/ledger/acme"
        let ed = try SignedNote.Signer.ed25519(name: name, privateKey: Array(Curve25519.Signing.PrivateKey().rawRepresentation))
        let ml = try SignedNote.Signer.mlDSA65(name: name, seed: (0..<32).map { _ in UInt8.random(in: 0...255) })
        let checkpoint = Checkpoint(origin: name, size: 20_852_163, root: Array(Data(base64Encoded: "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")!))
        #expect(checkpoint.text == "portal.example.com/ledger/acme\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
        let note = try SignedNote.sign(checkpoint.text, with: [ed, ml])
        let text = try SignedNote.verify(note, keys: [ed.verifierKey, ml.verifierKey])
        #expect(try Checkpoint(text: text) == checkpoint)
        #expect(try SignedNote.VerifierKey(text: ml.verifierKey.text) == ml.verifierKey)
        #expect(ml.verifierKey.text.hasPrefix(name + "+"))
        // ML-DSA signatures are randomized: signing twice gives different lines, both valid.
        #expect(try ml.signatureLine(for: checkpoint.text) != ml.signatureLine(for: checkpoint.text))
        // A verifier that only knows Ed25519 ignores the other line.
        #expect(try SignedNote.verify(note, keys: [ed.verifierKey]) == checkpoint.text)
        let otherKey = try SignedNote.Signer.ed25519(name: name, privateKey: Array(Curve25519.Signing.PrivateKey().rawRepresentation))
        #expect(throws: PortalError.self) { try SignedNote.verify(note, keys: [otherKey.verifierKey]) }
        // A changed size breaks both signatures.
        let forged = note.replacingOccurrences(of: "20852163", with: "20852164")
        #expect(throws: PortalError.self) { try SignedNote.verify(forged, keys: [ml.verifierKey]) }
        #expect(throws: PortalError.self) { try SignedNote.verify(forged, keys: [ed.verifierKey]) }
    }
}
