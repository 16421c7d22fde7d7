import Foundation
@testable import Ledger
import PortalCore
import Testing

/// Hostile archives for the offline verifiers (`portal ledger verify --bundle`, `portal report verify`),
/// issue 16 item 16: every one is a clear `PortalError`, never a trap, and no member is held in memory.
@Suite("Tar reader hardening")
struct TarReaderTests {
    /// A ustar header for `path` (at most 100 bytes) whose size field holds `size` verbatim (NUL-padded),
    /// of `type`, with a correct checksum: real bytes as a crafted bundle would carry them.
    static func header(_ path: String, size: [UInt8], type: UInt8 = UInt8(ascii: "0")) throws -> [UInt8] {
        var h = try Tar.fileHeader("placeholder", size: 0)
        for i in 0..<100 { h[i] = 0 }
        for (i, b) in path.utf8.enumerated() { h[i] = b }
        for i in 124..<136 { h[i] = 0 }
        for (i, b) in size.enumerated() { h[124 + i] = b }
        h[156] = type
        return checksummed(h)
    }

    /// `h` with its checksum field recomputed (ustar: the byte sum with the field read as spaces).
    static func checksummed(_ header: [UInt8]) -> [UInt8] {
        var h = header
        for i in 148..<156 { h[i] = 0x20 }
        let sum = h.reduce(0) { $0 + Int($1) }
        for (i, b) in (Array(String(sum, radix: 8).utf8).reversed() + [UInt8](repeating: UInt8(ascii: "0"), count: 6)).prefix(6).reversed().enumerated() { h[148 + i] = b }
        h[154] = 0
        h[155] = 0x20
        return h
    }

    /// An octal size field: the digits of `value`, NUL-terminated.
    static func octal(_ value: Int) -> [UInt8] { Array(String(value, radix: 8).utf8) + [0] }

    /// `tar` compressed with zstd into a file under `directory`; returns its path.
    static func bundle(_ tar: [UInt8], in directory: URL) throws -> String {
        var compressed: [UInt8] = []
        try ZstdCompressor().compress(tar, end: true) { compressed += $0 }
        let path = directory.appendingPathComponent("crafted-\(UUID().uuidString.prefix(8)).tar.zst").path
        try Data(compressed).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Runs `body` with a fresh scratch folder, removed afterwards.
    static func withScratch<T>(_ body: (URL) throws -> T) throws -> T {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tar-tests-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: url) }
        return try body(url)
    }

    /// Unpacks the zstd-compressed `tar` as `portal ledger verify --bundle` does; the error it throws, if any.
    static func unpackError(_ tar: [UInt8]) throws -> PortalError? {
        try withScratch { dir in
            let path = try bundle(tar, in: dir)
            do {
                _ = try LedgerBundleVerifier().unpack(bundle: path, into: dir.appendingPathComponent("out"))
                return nil
            } catch let error as PortalError {
                return error
            }
        }
    }

    @Test("a tar header whose size is -1 is a clear error, not a trap")
    func negativeSize() throws {
        let tar = try Self.header("checkpoint", size: Array("-1".utf8) + [0]) + [UInt8](repeating: 0, count: 512) + Tar.end
        let error = try #require(try Self.unpackError(tar))
        #expect(error.code == .validationFailed)
        #expect(error.message.contains("negative"), "\(error.message)")
    }

    @Test("a tar size that is not octal is a clear error")
    func nonOctalSize() throws {
        for field in ["0000000009a", "12 34", "+17", "0x10", ""] {
            let tar = try Self.header("checkpoint", size: Array(field.utf8) + [0]) + [UInt8](repeating: 0, count: 512) + Tar.end
            let error = try #require(try Self.unpackError(tar), "size field '\(field)'")
            #expect(error.code == .validationFailed)
            #expect(error.message.contains("not an octal number"), "'\(field)': \(error.message)")
        }
    }

    @Test("a declared size of 2^62 (GNU base-256) or 64 GiB (octal) is refused before anything is buffered")
    func hugeSizes() throws {
        // 2^62 as GNU tar writes sizes past ustar's 8 GiB: 0x80, then the value big-endian in 11 bytes.
        var base256 = [UInt8](repeating: 0, count: 12)
        base256[0] = 0x80
        for i in 0..<8 { base256[11 - i] = UInt8(truncatingIfNeeded: (1 << 62) >> (8 * i)) }
        let huge = try Self.header("tile/entries/000", size: base256) + [UInt8](repeating: 0x41, count: 4096)
        let error = try #require(try Self.unpackError(huge))
        #expect(error.message.contains("4611686018427387904") && error.message.contains("limit"), "\(error.message)")

        // The largest octal size field holds (12 digits, no terminator): 64 GiB - 1.
        let octal = try Self.header("tile/entries/000", size: Array("777777777777".utf8)) + [UInt8](repeating: 0x41, count: 4096)
        let refused = try #require(try Self.unpackError(octal))
        #expect(refused.message.contains("68719476735") && refused.message.contains("limit"), "\(refused.message)")
    }

    @Test("a ledger bundle's member larger than the limit is refused, not read into memory")
    func memberPastTheLimit() throws {
        // 80 MiB of zeros (compresses to a few KiB): more than any member of a ledger export can be.
        let size = 80 << 20
        let tar = try Tar.file("tile/entries/000", [UInt8](repeating: 0, count: size)) + Tar.end
        let error = try #require(try Self.unpackError(tar))
        #expect(error.code == .validationFailed)
        #expect(error.message.contains("\(size)") && error.message.contains("limit"), "\(error.message)")
    }

    @Test("a truncated archive is a clear error")
    func truncated() throws {
        let whole = try Tar.file("checkpoint", [UInt8](repeating: 0x61, count: 2000)) + Tar.end
        for cut in [100, 512, 1000, 2560] {
            let error = try #require(try Self.unpackError(Array(whole.prefix(cut))), "cut at \(cut)")
            #expect(error.message.contains("truncated"), "cut at \(cut): \(error.message)")
        }
    }

    @Test("paths that leave the folder are refused, and nothing is written outside it")
    func pathTraversal() throws {
        let name = "escaped-\(UUID().uuidString.prefix(8))"
        for path in ["../\(name)", "a/../../\(name)", "/tmp/\(name)", "..", "a/.."] {
            let tar = try Self.header(path, size: Self.octal(5)) + Array("owned".utf8) + [UInt8](repeating: 0, count: 507) + Tar.end
            let error = try #require(try Self.unpackError(tar), "path \(path)")
            #expect(error.code == .validationFailed)
            #expect(error.message.contains("unsafe path"), "\(path): \(error.message)")
        }
        #expect(!FileManager.default.fileExists(atPath: FileManager.default.temporaryDirectory.appendingPathComponent(name).path))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/\(name)"))
    }

    @Test("links and other member types are refused; files and folders unpack")
    func memberTypes() throws {
        let link = try Self.header("checkpoint", size: Self.octal(0), type: UInt8(ascii: "2")) + Tar.end
        let error = try #require(try Self.unpackError(link))
        #expect(error.message.contains("type"), "\(error.message)")

        let good = try Tar.directory("tile") + Tar.file("tile/0/000", [1, 2, 3]) + Tar.file("checkpoint", Array("note\n".utf8)) + Tar.end
        try Self.withScratch { dir in
            let root = try LedgerBundleVerifier().unpack(bundle: try Self.bundle(good, in: dir), into: dir)
            #expect(try Data(contentsOf: root.appendingPathComponent("tile/0/000")) == Data([1, 2, 3]))
            #expect(try String(contentsOf: root.appendingPathComponent("checkpoint"), encoding: .utf8) == "note\n")
        }
    }

    /// The error message of parsing `field` as a size, or its value.
    static func parsed(_ field: [UInt8]) -> Result<Int, PortalError> {
        do { return .success(try Tar.number(field[...])) } catch { return .failure(error) }
    }

    @Test("size fields parse with checked arithmetic: octal, GNU base-256, and clear refusals")
    func sizeFields() throws {
        #expect(try Self.parsed(Array("00000000017".utf8) + [0]).get() == 15)
        #expect(try Self.parsed(Array("     17 ".utf8) + [0]).get() == 15)
        #expect(try Self.parsed(Array("777777777777".utf8)).get() == (1 << 36) - 1)
        var base256 = [UInt8](repeating: 0, count: 12)
        base256[0] = 0x80
        base256[4] = 0x40 // 0x40 << 56 = 2^62
        #expect(try Self.parsed(base256).get() == 1 << 62)
        let refusals: [([UInt8], String)] = [
            (Array("-1".utf8) + [0], "is negative"),
            (Array("  -0000001".utf8), "is negative"),
            ([0xFF] + [UInt8](repeating: 0xFF, count: 11), "is negative"),
            (Array("0000000009a".utf8) + [0], "is not an octal number"),
            (Array("12 34".utf8), "is not an octal number"),
            (Array("+17".utf8), "is not an octal number"),
            ([0, 0, 0], "is not an octal number"),
            ([], "is not an octal number"),
            (Array(String(repeating: "7", count: 30).utf8), "is too large to represent"),
            ([0x80] + [UInt8](repeating: 0xFF, count: 11), "is too large to represent"),
        ]
        for (field, words) in refusals {
            switch Self.parsed(field) {
            case .success(let value): Issue.record("\(field) parsed as \(value)")
            case .failure(let error): #expect(error.message == words, "\(field): \(error.message)")
            }
        }
    }

    @Test("the size field written past ustar's 8 GiB is GNU base-256, and reads back")
    func sizeFieldWriting() throws {
        #expect(Tar.sizeField(15) == Array("00000000017".utf8) + [0])
        #expect(Tar.sizeField((1 << 33) - 1) == Array("77777777777".utf8) + [0])
        for size in [1 << 33, 1 << 40, Int.max] {
            let header = try Tar.fileHeader("populations/cc6.7.csv", size: size)
            let member = try Tar.member(header, limit: { _ in Int.max })
            #expect(member.size == size && member.kind == .file && member.components == ["populations", "cc6.7.csv"])
        }
        #expect(throws: PortalError.self) { try Tar.fileHeader("x", size: -1) }
    }

    @Test("a member's content is handed on as it arrives, never buffered whole")
    func streaming() throws {
        let size = 3 << 20
        let tar = try Tar.file("./tile/entries/000", [UInt8](repeating: 0x5A, count: size)) + Tar.end
        var reader = Tar.Reader()
        var started: Tar.Member?
        var received = 0
        var largest = 0
        var ends = 0
        var offset = 0
        while offset < tar.count {
            let piece = Array(tar[offset..<min(offset + 4000, tar.count)])
            let before = received
            try reader.feed(piece) { event in
                switch event {
                case .start(let member): started = member
                case .content(let bytes):
                    received += bytes.count
                    largest = max(largest, bytes.count)
                case .end: ends += 1
                }
            }
            // Once the header is in, every piece's content is handed on at once.
            if offset >= 512, received < size { #expect(received - before == piece.count) }
            offset += piece.count
        }
        #expect(started?.components == ["tile", "entries", "000"] && started?.size == size)
        #expect(received == size && largest <= 4000 && ends == 1 && reader.ended)
    }
}
