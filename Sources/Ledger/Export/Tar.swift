import Foundation
public import PortalCore

/// POSIX ustar archives with fixed metadata (mode 0644/0755, uid and gid 0, mtime 0), so an archive of the
/// same files is byte-identical whenever it is written.
public enum Tar {
    /// The header and padded content of one regular file.
    public static func file(_ path: String, _ content: [UInt8]) throws(PortalError) -> [UInt8] {
        var block = try header(path, size: content.count, type: "0", mode: "0000644")
        block += content
        block += [UInt8](repeating: 0, count: (512 - content.count % 512) % 512)
        return block
    }

    /// The header of a regular file of `size` bytes, for content streamed after it (then ``padding(_:)``).
    public static func fileHeader(_ path: String, size: Int) throws(PortalError) -> [UInt8] {
        try header(path, size: size, type: "0", mode: "0000644")
    }

    /// The zero bytes that pad `size` bytes of content to a whole block.
    public static func padding(_ size: Int) -> [UInt8] {
        [UInt8](repeating: 0, count: (512 - size % 512) % 512)
    }

    /// The header of a directory.
    public static func directory(_ path: String) throws(PortalError) -> [UInt8] {
        try header(path.hasSuffix("/") ? path : path + "/", size: 0, type: "5", mode: "0000755")
    }

    /// The end-of-archive marker: two zero blocks.
    public static let end = [UInt8](repeating: 0, count: 1024)

    private static func header(_ path: String, size: Int, type: Character, mode: String) throws(PortalError) -> [UInt8] {
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
        put(octal(size, width: 12), at: 124)
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

    /// Reads an archive incrementally: feed bytes, get each complete member.
    public struct Reader {
        private var buffer: [UInt8] = []
        private var pending: (path: String, size: Int, type: UInt8)?
        public private(set) var ended = false

        public init() {}

        /// Adds bytes and calls `member` for every member completed by them (directories have empty content).
        public mutating func feed(_ bytes: [UInt8], member: (String, UInt8, [UInt8]) throws -> Void) throws {
            buffer += bytes
            var offset = 0
            defer { buffer.removeFirst(offset) }
            while !ended {
                if let header = pending {
                    let padded = (header.size + 511) / 512 * 512
                    guard buffer.count - offset >= padded else { return }
                    try member(header.path, header.type, Array(buffer[offset..<offset + header.size]))
                    offset += padded
                    pending = nil
                    continue
                }
                guard buffer.count - offset >= 512 else { return }
                let block = Array(buffer[offset..<offset + 512])
                offset += 512
                if block.allSatisfy({ $0 == 0 }) { ended = true; return }
                func string(_ range: Range<Int>) -> String {
                    String(decoding: block[range].prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                let declared = Int(string(148..<156).trimmingCharacters(in: .whitespaces), radix: 8) ?? -1
                var check = block
                for i in 148..<156 { check[i] = 0x20 }
                guard declared == check.reduce(0, { $0 + Int($1) }) else { throw PortalError(.validationFailed, "the bundle's tar header checksum is wrong") }
                guard let size = Int(string(124..<136).trimmingCharacters(in: .whitespaces), radix: 8) else {
                    throw PortalError(.validationFailed, "the bundle has a malformed tar header")
                }
                let prefix = string(345..<500)
                let name = string(0..<100)
                let path = prefix.isEmpty ? name : prefix + "/" + name
                guard !path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
                    throw PortalError(.validationFailed, "the bundle holds an unsafe path: \(path)")
                }
                pending = (path, size, block[156])
            }
        }
    }
}
