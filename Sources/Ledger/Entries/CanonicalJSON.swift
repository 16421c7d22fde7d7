import Crypto
import Foundation
package import PortalCore

/// The JSON Canonicalization Scheme (RFC 8785) for ledger entries, which hold only objects, arrays,
/// strings and integers (DESIGN section 4.1).
///
/// Keys are sorted by UTF-16 code units (for the ASCII keys entries use, byte order); strings are escaped
/// exactly as ECMAScript's `JSON.stringify` does (`"`, `\`, and control characters; `/` and non-ASCII
/// characters are written as they are); integers in plain decimal. Booleans, null and fractional numbers
/// are refused, so every entry has exactly one encoding.
package enum CanonicalJSON {
    /// The canonical UTF-8 bytes of `value`; throws for values outside the ledger's subset.
    package static func encode(_ value: JSONValue) throws(PortalError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        try write(value, into: &out, full: false)
        return out
    }

    /// Full RFC 8785 of any JSON value (booleans, null and numbers in ECMAScript form included), for
    /// digests of free-form documents such as an integration's configuration.
    package static func encodeAny(_ value: JSONValue) -> [UInt8] {
        var out: [UInt8] = []
        // Cannot throw in full mode: every JSON value has a canonical form.
        try? write(value, into: &out, full: true)
        return out
    }

    /// Lowercase hex SHA-256 of ``encodeAny(_:)``.
    package static func digest(_ value: JSONValue) -> String {
        Hex.encode(SHA256.hash(data: encodeAny(value)))
    }

    /// ECMAScript's Number::toString for a finite double (RFC 8785 section 3.2.2.3).
    static func ecmaScriptNumber(_ d: Double) -> String {
        if d == 0 { return "0" }
        guard d.isFinite else { return "null" }
        var text = "\(abs(d))"
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exponent = Int(text[text.index(after: e)...]) ?? 0
            text = String(text[..<e])
        }
        var integerPart = text
        var fraction = ""
        if let dot = text.firstIndex(of: ".") {
            integerPart = String(text[..<dot])
            fraction = String(text[text.index(after: dot)...])
        }
        var digits = integerPart + fraction
        var n = integerPart.count + exponent
        while digits.hasPrefix("0") && digits.count > 1 { digits.removeFirst(); n -= 1 }
        while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
        let k = digits.count
        let sign = d < 0 ? "-" : ""
        if k <= n && n <= 21 { return sign + digits + String(repeating: "0", count: n - k) }
        if 0 < n && n <= 21 { return sign + digits.prefix(n) + "." + digits.dropFirst(n) }
        if -6 < n && n <= 0 { return sign + "0." + String(repeating: "0", count: -n) + digits }
        let e = n - 1
        let mantissa = k == 1 ? digits : digits.prefix(1) + "." + digits.dropFirst()
        return sign + mantissa + "e" + (e >= 0 ? "+" : "-") + String(abs(e))
    }

    private static func write(_ value: JSONValue, into out: inout [UInt8], full: Bool) throws(PortalError) {
        switch value {
        case .string(let s):
            writeString(s, into: &out)
        case .int(let i):
            out.append(contentsOf: String(i).utf8)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                try write(item, into: &out, full: full)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            let keys = members.keys.sorted { $0.utf16.lexicographicallyPrecedes($1.utf16) }
            for (i, key) in keys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                try write(members[key]!, into: &out, full: full)
            }
            out.append(UInt8(ascii: "}"))
        case .null where full: out.append(contentsOf: "null".utf8)
        case .bool(let b) where full: out.append(contentsOf: (b ? "true" : "false").utf8)
        case .double(let d) where full: out.append(contentsOf: ecmaScriptNumber(d).utf8)
        case .null, .bool, .double:
            throw PortalError(.internal, "ledger entries hold only objects, arrays, strings and integers, not \(value.kindName)")
        }
    }

    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x08: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0C: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x00..<0x20:
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
