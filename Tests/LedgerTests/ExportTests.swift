import Foundation
import Ledger
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// Export, offline verification and proof files (issue "ledger for auditors offline").
@Suite("Offline verification")
struct ExportTests {
    /// Exports a 600-entry ledger to a file and returns (file, keys, first checkpoint note).
    func exported(_ ledger: TestLedger, to directory: URL) async throws -> (String, [SignedNote.VerifierKey], String) {
        try await ledger.sequencer.append((0..<300).map { ledger.event($0) })
        let early = try #require(try await ledger.checkpointer.cut(organizationID: ledger.org.id, slug: "acme"))
        try await ledger.sequencer.append((300..<600).map { ledger.event($0) })
        let checkpoint = try #require(try await ledger.checkpointer.cut(organizationID: ledger.org.id, slug: "acme"))
        let keys = try await ledger.checkpointer.verifierKeys(slug: "acme")
        let path = directory.appendingPathComponent("acme.tar.zst").path
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        let summary = try await LedgerExporter(database: ledger.db).export(
            organizationID: ledger.org.id, checkpoint: checkpoint, keys: keys, publishedDirectory: ledger.publishDirectory, slug: "acme"
        ) { try handle.write(contentsOf: $0) }
        try handle.close()
        #expect(summary.size == 600)
        return (path, keys, early.note)
    }

    func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("export-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("an exported bundle verifies offline, unpacks with zstd and tar, and holds the served bytes", arguments: Backend.available)
    func roundTrip(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            let dir = try scratch()
            defer { try? FileManager.default.removeItem(at: dir) }
            let (bundle, keys, early) = try await exported(ledger, to: dir)
            let verifier = LedgerBundleVerifier()
            let folder = try verifier.unpack(bundle: bundle, into: dir)
            let result = try await verifier.verify(folder: folder, keys: keys, since: early)
            #expect(result.passed, "\(String(describing: result.failure))")
            #expect(result.size == 600 && result.checkpointsChecked >= 3)
            // The folder holds exactly what the read API serves.
            let reader = LedgerReader(database: ledger.db)
            let tile = try Data(contentsOf: folder.appendingPathComponent("tile/0/001"))
            #expect(tile == (try await reader.tile(ledger.org.id, level: 0, index: 1, width: 256)))
            let partial = try Data(contentsOf: folder.appendingPathComponent("tile/0/002.p/88"))
            #expect(partial == (try await reader.tile(ledger.org.id, level: 0, index: 2, width: 88)))
            let bundleData = try Data(contentsOf: folder.appendingPathComponent("tile/entries/002.p/88"))
            #expect(bundleData == (try await reader.entryBundle(ledger.org.id, index: 2, width: 88)))
            #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("keys/ml-dsa-65.vkey").path))
            // The system tools read it too.
            let tools = Process()
            tools.executableURL = URL(fileURLWithPath: "/bin/sh")
            tools.arguments = ["-c", "zstd -q -t '\(bundle)' && tar --zstd -tf '\(bundle)' | grep -qx 'tile/1/000.p/2'"]
            try tools.run()
            tools.waitUntilExit()
            #expect(tools.terminationStatus == 0)
        }
    }

    @Test("a tampered bundle, a wrong key and an inconsistent --since checkpoint each fail", arguments: [Backend.sqlite])
    func failures(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            let dir = try scratch()
            defer { try? FileManager.default.removeItem(at: dir) }
            let (bundle, keys, _) = try await exported(ledger, to: dir)
            let verifier = LedgerBundleVerifier()

            // A changed entry inside the unpacked folder.
            let folder = try verifier.unpack(bundle: bundle, into: dir)
            let entries = folder.appendingPathComponent("tile/entries/001")
            var bytes = try Data(contentsOf: entries)
            let at = try #require(bytes.range(of: Data("entry 300".utf8)))
            bytes[at.upperBound - 1] = UInt8(ascii: "1")
            try bytes.write(to: entries)
            let tampered = try await verifier.verify(folder: folder, keys: keys, since: nil)
            #expect(tampered.failure?.seq == 300, "\(String(describing: tampered.failure))")

            // A flipped byte in the compressed file: zstd's checksum or the tar structure catches it.
            var raw = try Data(contentsOf: URL(fileURLWithPath: bundle))
            raw[raw.count / 2] ^= 0x40
            let corrupt = dir.appendingPathComponent("corrupt.tar.zst").path
            try raw.write(to: URL(fileURLWithPath: corrupt))
            #expect(throws: (any Error).self) {
                let f = try verifier.unpack(bundle: corrupt, into: dir)
                _ = f
            }

            // A key that did not sign it.
            let impostor = try SignedNote.Signer.ed25519(name: keys[0].name, privateKey: (0..<32).map { _ in UInt8.random(in: 0...255) }).verifierKey
            let clean = try verifier.unpack(bundle: bundle, into: dir)
            let wrong = try await verifier.verify(folder: clean, keys: [impostor], since: nil)
            #expect(wrong.failure?.message.contains("no signature") == true)

            // A checkpoint from a different history of the same size range.
            let forked = try await TestLedger.forkedCheckpoint(like: ledger, size: 300)
            let inconsistent = try await verifier.verify(folder: clean, keys: keys, since: forked)
            #expect(inconsistent.failure != nil)
            #expect(inconsistent.failure?.message.contains("--since") == true)
        }
    }

    @Test("tlog-proof files verify, and fail when the entry, the proof or the key is wrong", arguments: [Backend.sqlite])
    func proofFiles(backend: Backend) async throws {
        try await TestLedger.with(backend) { ledger in
            try await ledger.sequencer.append((0..<40).map { ledger.event($0) })
            let checkpoint = try #require(try await ledger.checkpointer.cut(organizationID: ledger.org.id, slug: "acme"))
            let keys = try await ledger.checkpointer.verifierKeys(slug: "acme")
            let reader = LedgerReader(database: ledger.db)
            let row = try #require(try await reader.entries(ledger.org.id, from: 17, limit: 1).first)
            let proof = try await reader.inclusionProof(ledger.org.id, seq: 17, size: checkpoint.size)
            let text = LedgerProofFile.make(entry: row.bytes, index: 17, proof: proof, checkpoint: checkpoint.note)
            #expect(text.hasPrefix("c2sp.org/tlog-proof@v1\nextra "))
            #expect(try LedgerProofFile.verify(text, keys: keys).seq == 17)
            #expect(try LedgerProofFile.verify(text, keys: [keys[1]]).seq == 17)
            let otherEntry = try #require(try await reader.entries(ledger.org.id, from: 18, limit: 1).first)
            let swapped = LedgerProofFile.make(entry: otherEntry.bytes, index: 17, proof: proof, checkpoint: checkpoint.note)
            #expect(throws: PortalError.self) { try LedgerProofFile.verify(swapped, keys: keys) }
            let wrongIndex = text.replacingOccurrences(of: "index 17", with: "index 16")
            #expect(throws: PortalError.self) { try LedgerProofFile.verify(wrongIndex, keys: keys) }
            #expect(throws: PortalError.self) { try LedgerProofFile.verify(text, keys: [SignedNote.VerifierKey(name: keys[0].name, algorithm: .ed25519, publicKey: [UInt8](repeating: 7, count: 32))]) }
        }
    }
}

extension TestLedger {
    /// A correctly signed checkpoint (same keys, same origin) of a different ledger history of `size`.
    static func forkedCheckpoint(like ledger: TestLedger, size: Int64) async throws -> String {
        let keys = try await ledger.checkpointer.signingKeys()
        var range = CompactRange()
        for i in 0..<size { range.append(Merkle.leafHash(Array("fork \(i)".utf8))) }
        let origin = ledger.checkpointer.origin(slug: "acme")
        return try SignedNote.sign(Checkpoint(origin: origin, size: size, root: range.root).text, with: keys.signers(name: origin))
    }
}
