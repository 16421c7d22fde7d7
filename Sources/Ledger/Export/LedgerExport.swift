package import Foundation
package import PortalCore
package import Storage

/// Writes a ledger as a `.tar.zst` of a C2SP tlog-tiles folder (DESIGN section 4.2; issue "offline"):
/// `checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]` with exactly the bytes the HTTP API
/// serves, plus `checkpoints/<size>` (stored and published checkpoints up to the exported size) and
/// `keys/<algorithm>.vkey`. Entries and tiles are streamed a tile at a time, so memory does not grow with
/// the ledger.
package struct LedgerExporter: Sendable {
    private let database: Database

    package init(database: Database) { self.database = database }

    /// What an export wrote.
    package struct Summary: Sendable {
        package var size: Int64
        package var files: Int
        package var compressedBytes: Int64
    }

    /// Exports the ledger of `organizationID` as of `checkpoint`, handing compressed chunks to `sink`.
    package func export(
        organizationID: UUID, checkpoint: LedgerCheckpointRow, keys: [SignedNote.VerifierKey], publishedDirectory: String?, slug: String,
        sink: ([UInt8]) async throws -> Void
    ) async throws -> Summary {
        let compressor = try ZstdCompressor()
        var summary = Summary(size: checkpoint.size, files: 0, compressedBytes: 0)
        var pending: [[UInt8]] = []
        func add(_ bytes: [UInt8], end: Bool = false) async throws {
            try compressor.compress(bytes, end: end) { pending.append($0) }
            for chunk in pending {
                summary.compressedBytes += Int64(chunk.count)
                try await sink(chunk)
            }
            pending.removeAll(keepingCapacity: true)
        }
        func file(_ path: String, _ content: [UInt8]) async throws {
            try await add(try Tar.file(path, content))
            summary.files += 1
        }
        let size = checkpoint.size
        try await file("checkpoint", Array(checkpoint.note.utf8))
        for key in keys { try await file("keys/\(key.algorithm.rawValue).vkey", Array((key.text + "\n").utf8)) }

        var notes: [Int64: String] = [:]
        if let publishedDirectory {
            let folder = URL(fileURLWithPath: publishedDirectory).appendingPathComponent(slug).appendingPathComponent("checkpoints")
            for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] {
                if let n = Int64(name), n <= size, let note = try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8) { notes[n] = note }
            }
        }
        for row in try await database.read({ db in try await LedgerStore(db).checkpoints(organizationID) }) where row.size <= size {
            notes[row.size] = row.note
        }
        for (n, note) in notes.sorted(by: { $0.key < $1.key }) { try await file("checkpoints/\(n)", Array(note.utf8)) }

        // Entry bundles, a tile's worth at a time.
        var start: Int64 = 0
        while start < size {
            let width = Int(min(256, size - start))
            let rows = try await database.read { db in try await LedgerStore(db).entries(organizationID, from: start, limit: width) }
            guard rows.count == width else { throw PortalError(.storage, "the ledger lacks entries below its checkpoint (at \(start))") }
            var bundle: [UInt8] = []
            for row in rows {
                bundle.append(UInt8(row.bytes.count >> 8))
                bundle.append(UInt8(row.bytes.count & 0xFF))
                bundle += row.bytes
            }
            try await file(Tiles.path(level: nil, index: start / 256, width: width), bundle)
            start += Int64(width)
        }
        // Hash tiles of every level, trimmed to the exported size.
        var level = 0
        var count = size
        while count > 0 {
            for index in 0..<((count + 255) / 256) {
                let width = Int(min(256, count - index * 256))
                guard let bytes = try await database.read({ db in try await LedgerStore(db).tile(organizationID, level: level, index: index) }),
                      bytes.count >= width * 32
                else {
                    throw PortalError(.storage, "the ledger lacks tile \(level)/\(index)")
                }
                try await file(Tiles.path(level: level, index: index, width: width), Array(bytes.prefix(width * 32)))
            }
            count /= 256
            level += 1
        }
        try await add(Tar.end, end: true)
        return summary
    }
}

/// A ledger exported as a tlog-tiles folder, read from disk.
package struct DirectoryLedgerSource: LedgerSource {
    package let root: URL

    package init(root: URL) { self.root = root }

    private func read(_ prefix: String, index: Int64) -> [UInt8]? {
        file(prefix, index: index).flatMap(Self.contents)
    }

    /// The file of tile or entry bundle `index` under `prefix`: the full one, else the partial one.
    private func file(_ prefix: String, index: Int64) -> String? {
        let full = root.appendingPathComponent(prefix + Tiles.indexPath(index)).path
        if FileManager.default.fileExists(atPath: full) { return full }
        let partials = full + ".p"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: partials), let name = names.first else { return nil }
        return partials + "/" + name
    }

    /// A file's bytes, read straight into one array (no `Data` and no second copy).
    static func contents(_ path: String) -> [UInt8]? {
        withRegularFile(path) { fd, size in readAll(fd, size) }
    }

    /// Opens `path` if it is a regular file and calls `body` with its descriptor and size.
    private static func withRegularFile<T>(_ path: String, _ body: (Int32, Int) -> T?) -> T? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        return body(fd, Int(status.st_size))
    }

    private static func readAll(_ fd: Int32, _ size: Int) -> [UInt8]? {
        var failed = false
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            var done = 0
            while done < size {
                let n = Foundation.read(fd, buffer.baseAddress! + done, size - done)
                if n < 0, errno == EINTR { continue }
                guard n > 0 else { failed = true; break }
                done += n
            }
            initialized = done
        }
        return failed ? nil : bytes
    }

    package func entries(from: Int64, limit: Int) async throws -> [LedgerEntryRow] {
        var rows: [LedgerEntryRow] = []
        var seq = from
        while rows.count < limit, let bundle = read("tile/entries/", index: seq / 256) {
            var offset = 0
            var position = seq / 256 * 256
            while offset + 2 <= bundle.count {
                let length = Int(bundle[offset]) << 8 | Int(bundle[offset + 1])
                guard offset + 2 + length <= bundle.count else { throw PortalError(.validationFailed, "entry bundle \(seq / 256) is truncated") }
                if position >= seq, rows.count < limit {
                    let bytes = Array(bundle[(offset + 2)..<(offset + 2 + length)])
                    rows.append(LedgerEntryRow(seq: position, bytes: bytes, hash: Merkle.leafHash(bytes)))
                }
                offset += 2 + length
                position += 1
            }
            if position <= seq { break }
            seq = position
        }
        return rows
    }

    package func tile(level: Int, index: Int64) async throws -> [UInt8]? {
        read("tile/\(level)/", index: index)
    }

    /// The entries of the bundles covering [from, from + limit), in place: no copy and no hash per entry
    /// (the verifier hashes each once). Reads one bundle when `from` and `limit` stay within a tile.
    package func entryPage(from: Int64, limit: Int) async throws -> EntryPage {
        var page = EntryPage(bytes: Data(), entries: [], hashes: nil)
        var seq = from
        while page.entries.count < limit, let bundle = mapBundle(index: seq / 256) {
            let base = page.bytes.count
            let first = seq / 256 * 256
            if page.bytes.isEmpty { page.bytes = bundle } else { page.bytes.append(bundle) }
            var next = first
            let truncated = bundle.withUnsafeBytes { bytes -> Bool in
                var offset = 0
                var position = first
                while offset + 2 <= bytes.count, page.entries.count < limit {
                    let length = Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
                    guard offset + 2 + length <= bytes.count else { return true }
                    if position >= seq { page.entries.append((position, (base + offset + 2)..<(base + offset + 2 + length))) }
                    offset += 2 + length
                    position += 1
                }
                next = position
                return false
            }
            if truncated { throw PortalError(.validationFailed, "entry bundle \(first / 256) is truncated") }
            // A bundle that ends before `seq` (a partial one) has nothing more to give.
            if next <= seq { break }
            seq = next
        }
        return page
    }

    /// An entry bundle (full or partial) mapped into memory rather than copied: reading it with `read(2)`
    /// spent a tenth of the verifier's time in the kernel's copy (the profile in docs/performance.md).
    private func mapBundle(index: Int64) -> Data? {
        file("tile/entries/", index: index).flatMap(Self.map)
    }

    static func map(_ path: String) -> Data? {
        withRegularFile(path) { fd, size in
            guard size > 0 else { return Data() }
            guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), address != MAP_FAILED else { return nil }
            return Data(bytesNoCopy: address, count: size, deallocator: .custom { pointer, count in munmap(pointer, count) })
        }
    }
}

/// Verifies an exported ledger with no database and no network.
package struct LedgerBundleVerifier: Sendable {
    package init() {}

    /// Unpacks `bundle` (a `.tar.zst`) into a new folder under `scratch` and returns it: members are
    /// streamed to disk, none larger than `limit(path)` bytes (``Tar/extract(bundle:into:limit:)``).
    package func unpack(bundle: String, into scratch: URL, limit: @escaping (String) -> Int = { _ in Tar.defaultMemberLimit }) throws -> URL {
        let root = scratch.appendingPathComponent("ledger-\(UUID().uuidString.prefix(8))")
        try Tar.extract(bundle: bundle, into: root, limit: limit)
        return root
    }

    /// Verifies an unpacked bundle: every key must sign its checkpoint; then chain, tiles, roots and the
    /// consistency of every included checkpoint, and of `since` (a checkpoint the auditor kept), if given.
    package func verify(folder: URL, keys: [SignedNote.VerifierKey], since: String?, progress: (Int64) -> Void = { _ in }) async throws -> LedgerVerification {
        guard let note = try? String(contentsOf: folder.appendingPathComponent("checkpoint"), encoding: .utf8) else {
            throw PortalError(.validationFailed, "the bundle has no checkpoint")
        }
        let latest: ExpectedCheckpoint
        switch ExpectedCheckpoint.from(note: note, keys: keys, source: "bundle's checkpoint") {
        case .success(let e): latest = e
        case .failure(let error): return Self.failed("?", 0, error.message)
        }
        let origin = note.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? ""
        let slug = origin.split(separator: "/").last.map(String.init) ?? origin
        var expected = [latest]
        let history = folder.appendingPathComponent("checkpoints")
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: history.path)) ?? []).sorted() {
            guard let text = try? String(contentsOf: history.appendingPathComponent(name), encoding: .utf8) else { continue }
            switch ExpectedCheckpoint.from(note: text, keys: keys, source: "bundled checkpoint \(name)") {
            case .success(let e): expected.append(e)
            case .failure(let error): return Self.failed(slug, 0, error.message)
            }
        }
        if let since {
            switch ExpectedCheckpoint.from(note: since, keys: keys, source: "checkpoint given with --since") {
            case .success(let e): expected.append(e)
            case .failure(let error): return Self.failed(slug, 0, error.message)
            }
        }
        return try await LedgerVerifier().verify(
            source: DirectoryLedgerSource(root: folder), slug: slug, size: latest.size, head: nil, checkpoints: expected, progress: progress
        )
    }

    static func failed(_ slug: String, _ seq: Int64, _ message: String) -> LedgerVerification {
        LedgerVerification(slug: slug, size: 0, root: Merkle.emptyRoot, checkpointsChecked: 0, failure: (seq, message))
    }
}

/// C2SP tlog-proof files (c2sp.org/tlog-proof): one entry with its inclusion proof and the checkpoint it
/// is proven against, for auditors sampling entries one by one. The entry's canonical bytes travel as the
/// `extra` line (they are authenticated by the proof, not trusted on their own).
package enum LedgerProofFile {
    package static let header = "c2sp.org/tlog-proof@v1"

    /// The proof file's text.
    package static func make(entry: [UInt8], index: Int64, proof: [Hash], checkpoint note: String) -> String {
        var text = "\(header)\nextra \(Data(entry).base64EncodedString())\nindex \(index)\n"
        for hash in proof { text += Data(hash).base64EncodedString() + "\n" }
        return text + "\n" + note
    }

    /// Verifies a proof file with every key; returns the entry it proves.
    package static func verify(_ text: String, keys: [SignedNote.VerifierKey]) throws(PortalError) -> LedgerEntry {
        guard let split = text.range(of: "\n\n") else { throw PortalError(.validationFailed, "not a tlog-proof: no checkpoint") }
        let lines = text[..<split.lowerBound].split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let note = String(text[split.upperBound...])
        guard lines.first == header, lines.count >= 3, lines[1].hasPrefix("extra "), lines[2].hasPrefix("index "),
              let entryBytes = Data(base64Encoded: String(lines[1].dropFirst(6))).map(Array.init),
              let index = Int64(lines[2].dropFirst(6)), index >= 0
        else {
            throw PortalError(.validationFailed, "not a ledger tlog-proof (header, extra and index lines expected)")
        }
        var proof: [Hash] = []
        for line in lines.dropFirst(3) {
            guard let hash = Data(base64Encoded: line), hash.count == 32 else { throw PortalError(.validationFailed, "a proof line is not a base64 SHA-256 hash") }
            proof.append(Array(hash))
        }
        let checkpoint = try Checkpoint(text: try SignedNote.verify(note, keys: keys))
        guard Merkle.verifyInclusion(index: index, size: checkpoint.size, leafHash: Merkle.leafHash(entryBytes), proof: proof, root: checkpoint.root) else {
            throw PortalError(.validationFailed, "the inclusion proof of entry \(index) does not lead to the checkpoint's root")
        }
        let entry = try LedgerEntry(canonical: entryBytes)
        guard entry.seq == index else { throw PortalError(.validationFailed, "the entry says it is entry \(entry.seq), the proof is for \(index)") }
        return entry
    }
}
