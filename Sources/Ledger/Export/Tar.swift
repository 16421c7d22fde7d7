package import Foundation
package import PortalCore

/// POSIX ustar archives with fixed metadata (mode 0644/0755, uid and gid 0, mtime 0), so an archive of the
/// same files is byte-identical whenever it is written.
package enum Tar {
    /// The header and padded content of one regular file.
    package static func file(_ path: String, _ content: [UInt8]) throws(PortalError) -> [UInt8] {
        var block = try header(path, size: content.count, type: "0", mode: "0000644")
        block += content
        block += [UInt8](repeating: 0, count: (512 - content.count % 512) % 512)
        return block
    }

    /// The header of a regular file of `size` bytes, for content streamed after it (then ``padding(_:)``).
    package static func fileHeader(_ path: String, size: Int) throws(PortalError) -> [UInt8] {
        try header(path, size: size, type: "0", mode: "0000644")
    }

    /// The zero bytes that pad `size` bytes of content to a whole block.
    package static func padding(_ size: Int) -> [UInt8] {
        [UInt8](repeating: 0, count: (512 - size % 512) % 512)
    }

    /// The header of a directory.
    package static func directory(_ path: String) throws(PortalError) -> [UInt8] {
        try header(path.hasSuffix("/") ? path : path + "/", size: 0, type: "5", mode: "0000755")
    }

    /// The end-of-archive marker: two zero blocks.
    package static let end = [UInt8](repeating: 0, count: 1024)

    private static func header(_ path: String, size: Int, type: Character, mode: String) throws(PortalError) -> [UInt8] {
        guard size >= 0 else { throw PortalError(.internal, "tar: a negative size for \(path)") }
        var name = Array(path.utf8)
        var prefix: [UInt8] = []
        if name.count > 100 {
            guard let split = name.prefix(155).lastIndex(of: UInt8(ascii: "/")), name.count - split - 1 <= 100 else {
                throw PortalError(.internal, "tar: path too long: \(path)")
            }
            prefix = Array(name[..<split])
            name = Array(name[(split + 1)...])
        }
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at offset: Int) { for (i, b) in bytes.enumerated() { h[offset + i] = b } }
        func octal(_ value: Int, width: Int) -> [UInt8] { Array(String(format: "%0\(width - 1)o", value).utf8) + [0] }
        put(name, at: 0)
        put(Array(mode.utf8) + [0], at: 100)
        put(octal(0, width: 8), at: 108)
        put(octal(0, width: 8), at: 116)
        put(sizeField(size), at: 124)
        put(octal(0, width: 12), at: 136)
        put([UInt8](repeating: 0x20, count: 8), at: 148)
        h[156] = UInt8(ascii: type.unicodeScalars.first!)
        put(Array("ustar".utf8) + [0], at: 257)
        put(Array("00".utf8), at: 263)
        put(Array("root".utf8), at: 265)
        put(Array("root".utf8), at: 297)
        put(prefix, at: 345)
        let checksum = h.reduce(0) { $0 + Int($1) }
        put(Array(String(format: "%06o", checksum).utf8) + [0, 0x20], at: 148)
        return h
    }

    /// The 12-byte size field: 11 octal digits and a NUL up to ustar's 8 GiB, GNU's base-256 form past it
    /// (0x80, then the size big-endian), which GNU tar and ``Reader`` read.
    static func sizeField(_ size: Int) -> [UInt8] {
        guard size >= 1 << 33 else { return Array(String(size, radix: 8).leftPadded(to: 11).utf8) + [0] }
        var field = [UInt8](repeating: 0, count: 12)
        field[0] = 0x80
        var rest = size
        for i in stride(from: 11, to: 0, by: -1) {
            field[i] = UInt8(truncatingIfNeeded: rest)
            rest >>= 8
        }
        return field
    }

    // MARK: Reading

    /// The bound on one member when the caller names none: 64 MiB, four times the largest member of a
    /// ledger export (an entry bundle: 256 entries of at most 64 KiB with their length prefixes).
    package static let defaultMemberLimit = 64 << 20

    /// One member of an archive being read: its path as stored, the safe relative components it is
    /// written under, what it is and how many content bytes follow its header.
    package struct Member: Sendable, Equatable {
        /// What a member is: only regular files and folders are accepted.
        package enum Kind: Sendable, Equatable { case file, directory }
        package var path: String
        package var components: [String]
        package var kind: Kind
        package var size: Int
    }

    /// What ``Reader`` reports, in archive order: a member's header, its content in pieces as the bytes
    /// arrive (never buffered whole), then its end.
    package enum Event {
        case start(Member)
        case content(ArraySlice<UInt8>)
        case end(Member)
    }

    /// The value of a numeric header field: octal digits (after optional spaces, ended by NUL or space), or
    /// GNU's base-256 form (first byte 0x80 to 0xBF), computed with checked arithmetic. Refuses negative
    /// values, anything but octal digits, and values past `Int.max` (messages that complete "has a size that").
    static func number(_ field: ArraySlice<UInt8>) throws(PortalError) -> Int {
        func refuse(_ why: String) -> PortalError { PortalError(.validationFailed, why) }
        if let first = field.first, first & 0x80 != 0 {
            // Base-256: bit 6 of the first byte is the sign; its low 6 bits are the value's highest.
            guard first & 0x40 == 0 else { throw refuse("is negative") }
            var value = Int(first & 0x3F)
            for byte in field.dropFirst() {
                let (shifted, o1) = value.multipliedReportingOverflow(by: 256)
                let (sum, o2) = shifted.addingReportingOverflow(Int(byte))
                guard !o1, !o2 else { throw refuse("is too large to represent") }
                value = sum
            }
            return value
        }
        var i = field.startIndex
        while i < field.endIndex, field[i] == 0x20 { i += 1 }
        if i < field.endIndex, field[i] == UInt8(ascii: "-") { throw refuse("is negative") }
        var value = 0
        var digits = 0
        while i < field.endIndex, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(field[i]) {
            let (shifted, o1) = value.multipliedReportingOverflow(by: 8)
            let (sum, o2) = shifted.addingReportingOverflow(Int(field[i] - UInt8(ascii: "0")))
            guard !o1, !o2 else { throw refuse("is too large to represent") }
            value = sum
            digits += 1
            i += 1
        }
        guard digits > 0, field[i...].allSatisfy({ $0 == 0 || $0 == 0x20 }) else { throw refuse("is not an octal number") }
        return value
    }

    /// A path as shown in an error: control characters replaced, at most 120 characters.
    static func shown(_ path: String) -> String {
        let clean = String(String.UnicodeScalarView(path.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
        return clean.count > 120 ? clean.prefix(120) + "..." : clean
    }

    /// Parses and checks one header block: checksum, path (relative, no `..`), type (file or folder) and size
    /// (a number no larger than `limit` of the member's normalized path).
    static func member(_ block: [UInt8], limit: (String) -> Int) throws(PortalError) -> Member {
        var check = block
        for i in 148..<156 { check[i] = 0x20 }
        guard let declared = try? number(block[148..<156]), declared == check.reduce(0, { $0 + Int($1) }) else {
            throw PortalError(.validationFailed, "the bundle's tar header checksum is wrong")
        }
        func string(_ range: Range<Int>) -> String {
            String(decoding: block[range].prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        // The prefix field is POSIX ustar's ("ustar\0"); GNU's format ("ustar  ") keeps other data there.
        let prefix = block[257..<263].elementsEqual(Array("ustar".utf8) + [0]) ? string(345..<500) : ""
        let name = string(0..<100)
        let path = prefix.isEmpty ? name : prefix + "/" + name
        let kind: Member.Kind
        switch block[156] {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): kind = .file
        case UInt8(ascii: "5"): kind = .directory
        case let other:
            let type = (0x21...0x7E).contains(other) ? String(UnicodeScalar(other)) : "\\x" + String(other, radix: 16)
            throw PortalError(.validationFailed, "the bundle's tar member '\(shown(path))' is of type '\(type)': only files and folders are expected")
        }
        let components = path.split(separator: "/").map(String.init).filter { $0 != "." }
        guard !path.hasPrefix("/"), !components.contains(".."), kind == .directory || !components.isEmpty else {
            throw PortalError(.validationFailed, "the bundle holds an unsafe path: '\(shown(path))'")
        }
        let size: Int
        do {
            size = try number(block[124..<136])
        } catch {
            throw PortalError(.validationFailed, "the bundle's tar member '\(shown(path))' has a size that \(error.message)")
        }
        let bound = kind == .directory ? 0 : limit(components.joined(separator: "/"))
        guard size <= bound else {
            throw PortalError(.validationFailed, "the bundle's tar member '\(shown(path))' declares \(size) bytes, more than the limit of \(bound) bytes")
        }
        return Member(path: path, components: components, kind: kind, size: size)
    }

    /// Reads an archive incrementally: feed bytes, get each member's header, content and end as they
    /// complete. Memory stays at one header block, whatever the members' sizes; a malformed header is a
    /// `validationFailed` error (never a trap), and ``ended`` tells whether the end marker was read.
    package struct Reader {
        private enum State {
            case header([UInt8])
            case content(Member, remaining: Int)
            case padding(Int)
            case ended
        }

        private var state = State.header([])
        private let limit: (String) -> Int

        /// Whether the end-of-archive marker was read.
        package var ended: Bool { if case .ended = state { true } else { false } }

        /// A reader refusing any file member larger than `limit(path)` bytes (`path` normalized: no `./`).
        package init(limit: @escaping (String) -> Int = { _ in Tar.defaultMemberLimit }) {
            self.limit = limit
        }

        /// Adds bytes and reports every event they complete to `handle` (a folder has no content events).
        package mutating func feed(_ bytes: [UInt8], _ handle: (Event) throws -> Void) throws {
            var offset = 0
            while offset < bytes.count {
                switch state {
                case .ended:
                    return
                case .header(var block):
                    let n = min(512 - block.count, bytes.count - offset)
                    block += bytes[offset..<offset + n]
                    offset += n
                    guard block.count == 512 else {
                        state = .header(block)
                        return
                    }
                    if block.allSatisfy({ $0 == 0 }) {
                        state = .ended
                        return
                    }
                    let member = try Tar.member(block, limit: limit)
                    try handle(.start(member))
                    state = .content(member, remaining: member.size)
                    if member.size == 0 { try finish(member, handle) }
                case .content(let member, let remaining):
                    let n = min(remaining, bytes.count - offset)
                    try handle(.content(bytes[offset..<offset + n]))
                    offset += n
                    if n == remaining { try finish(member, handle) } else { state = .content(member, remaining: remaining - n) }
                case .padding(let remaining):
                    let n = min(remaining, bytes.count - offset)
                    offset += n
                    state = n == remaining ? .header([]) : .padding(remaining - n)
                }
            }
        }

        /// Reports a member's end and moves past its padding.
        private mutating func finish(_ member: Member, _ handle: (Event) throws -> Void) throws {
            try handle(.end(member))
            let pad = Tar.padding(member.size).count
            state = pad > 0 ? .padding(pad) : .header([])
        }
    }

    /// Unpacks the `.tar.zst` at `bundle` into the folder `root`, streaming each member to disk as it is
    /// decompressed (memory stays bounded whatever the sizes). A member larger than `limit(path)`, a path
    /// leaving `root`, a link, a malformed header, bad zstd or a truncated archive is a `validationFailed`
    /// error saying which.
    package static func extract(bundle: String, into root: URL, limit: @escaping (String) -> Int = { _ in defaultMemberLimit }) throws(PortalError) {
        do {
            guard let handle = FileHandle(forReadingAtPath: bundle) else { throw PortalError(.validationFailed, "cannot read \(bundle)") }
            defer { try? handle.close() }
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            let decompressor = try ZstdDecompressor()
            var reader = Reader(limit: limit)
            let output = MemberWriter(root: root)
            defer { output.finish() }
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                try decompressor.decompress(Array(chunk)) { bytes in try reader.feed(bytes, output.handle) }
            }
            guard decompressor.frameComplete, reader.ended else { throw PortalError(.validationFailed, "the bundle is truncated") }
        } catch let error as PortalError {
            throw error
        } catch {
            throw PortalError(.validationFailed, "the bundle cannot be unpacked: \(error.localizedDescription)")
        }
    }
}

/// Writes the members ``Tar/Reader`` reports under a folder: folders created, files written as their
/// content arrives (never through a symbolic link).
private final class MemberWriter {
    let root: URL
    private var descriptor: Int32 = -1
    private var path = ""

    init(root: URL) { self.root = root }

    /// Acts on one event of the reader.
    func handle(_ event: Tar.Event) throws {
        switch event {
        case .start(let member):
            finish()
            let url = member.components.reduce(root) { $0.appendingPathComponent($1) }
            path = Tar.shown(member.path)
            if member.kind == .directory {
                try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
                return
            }
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            descriptor = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else { throw failure() }
        case .content(let bytes):
            try bytes.withUnsafeBytes { raw in
                guard let base = raw.baseAddress else { return }
                var done = 0
                while done < raw.count {
                    let n = write(descriptor, base + done, raw.count - done)
                    if n < 0, errno == EINTR { continue }
                    guard n > 0 else { throw failure() }
                    done += n
                }
            }
        case .end:
            finish()
        }
    }

    /// Closes the file being written, if any.
    func finish() {
        if descriptor >= 0 { close(descriptor) }
        descriptor = -1
    }

    /// The error for a file that cannot be written, with the system's reason.
    private func failure() -> PortalError {
        PortalError(.validationFailed, "the bundle's member '\(path)' cannot be written: \(String(cString: strerror(errno)))")
    }
}

extension String {
    /// The string with leading zeros up to `width` characters.
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
