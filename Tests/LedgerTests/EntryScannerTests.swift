import Foundation
@testable import Ledger
import PortalCore
import Testing

/// The verifier's single-pass scanner must accept exactly the bytes `LedgerEntry(canonical:)` accepts
/// (parse, then compare with the re-encoding), and report the fields that parser reports.
@Suite("Entry scanner")
struct EntryScannerTests {
    /// Entries with every kind of value the subset allows: escapes, non-ASCII keys (which sort by UTF-16,
    /// so U+FF61 comes after U+1F600's surrogates), nesting, extreme integers, no integration.
    static let corpus: [LedgerEntry] = {
        let data: [JSONValue] = [
            [:],
            ["k": "v"],
            ["note": "quote \" backslash \\ slash / tab \t nl \n cr \r ff \u{0C} bs \u{08} ctl \u{01}\u{1F} del \u{7F} ü € 🙂", "n": -7],
            ["nested": ["z": 1, "a": [2, "x", [], [:], ["deep": [[["x": .int(Int64.min)]]]]]], "max": .int(Int64.max), "zero": 0],
            ["\u{1F600}": 1, "\u{FF61}": 2, "a\u{01}": 3, "a": 4, "é": 5, "A": 6, "": 7],
        ]
        return data.enumerated().map { index, data in
            LedgerEntry(
                seq: Int64(index * 1000), time: "2026-11-25T16:30:00.123456Z", org: "acme", type: "request.completed",
                actor: "01a213c9-420d-7377-8734-efee6b00db2b", integration: index % 2 == 0 ? nil : "01a213c9-4dc7-7286-a99b-c1244ab4efc2",
                data: data, prev: index == 0 ? LedgerEntry.zeroHash : String(repeating: "ab", count: 32)
            )
        }
    }()

    static func scan(_ bytes: [UInt8]) -> ScannedEntry? {
        bytes.withUnsafeBytes { try? EntryScanner.scan($0) }
    }

    static func parse(_ bytes: [UInt8]) -> LedgerEntry? {
        try? LedgerEntry(canonical: bytes)
    }

    @Test("canonical entries are accepted, with the parser's seq, org and prev")
    func acceptsCanonical() throws {
        for entry in Self.corpus {
            let bytes = try entry.canonicalBytes()
            let scanned = try #require(Self.scan(bytes), "\(String(decoding: bytes, as: UTF8.self))")
            #expect(scanned.seq == entry.seq)
            #expect(Array(bytes[scanned.org]) == Array(entry.org.utf8))
            #expect(Array(bytes[scanned.prev]) == Array(entry.prev.utf8))
        }
    }

    @Test("every one-byte change, deletion and insertion is judged as the parser judges it")
    func agreesWithParserOnMutations() throws {
        // Bytes that matter to the grammar, plus a non-ASCII lead byte and an invalid one.
        let alphabet: [UInt8] = Array(#"{}[]":,\-09eu "#.utf8) + [0x01, 0xC3]
        var checked = 0
        var accepted = 0
        for entry in Self.corpus {
            let bytes = try entry.canonicalBytes()
            for position in 0..<bytes.count {
                var variants: [[UInt8]] = []
                var deleted = bytes
                deleted.remove(at: position)
                variants.append(deleted)
                for byte in alphabet {
                    var changed = bytes
                    changed[position] = byte
                    variants.append(changed)
                    var inserted = bytes
                    inserted.insert(byte, at: position)
                    variants.append(inserted)
                }
                for variant in variants {
                    let parsed = Self.parse(variant)
                    let scanned = Self.scan(variant)
                    #expect((parsed == nil) == (scanned == nil), "\(String(decoding: variant, as: UTF8.self)): parser \(parsed == nil ? "refuses" : "accepts"), scanner \(scanned == nil ? "refuses" : "accepts")")
                    if let parsed, let scanned {
                        #expect(parsed.seq == scanned.seq)
                        #expect(Array(parsed.org.utf8) == Array(variant[scanned.org]))
                        accepted += 1
                    }
                    checked += 1
                }
            }
        }
        // Some mutations stay canonical (a changed digit, a letter inside a string): both must accept those.
        #expect(accepted > 100)
        #expect(checked > 20_000)
    }

    @Test("entries composed around canonical data bytes equal the canonical encoding")
    func composeMatchesEncoder() throws {
        for entry in Self.corpus {
            let composed = LedgerEntry.compose(
                seq: entry.seq, time: entry.time, org: entry.org, type: entry.type, actor: entry.actor,
                integration: entry.integration, dataBytes: try CanonicalJSON.encode(entry.data), prev: entry.prev
            )
            #expect(composed == (try entry.canonicalBytes()), "\(String(decoding: composed, as: UTF8.self))")
        }
    }

    @Test("truncated entries, trailing bytes and oversized entries are refused")
    func refusesTruncation() throws {
        let bytes = try Self.corpus[3].canonicalBytes()
        for length in 0..<bytes.count { #expect(Self.scan(Array(bytes.prefix(length))) == nil) }
        #expect(Self.scan(bytes + [0x20]) == nil)
        #expect(Self.scan([UInt8](repeating: 0x20, count: LedgerEntry.maxBytes + 1)) == nil)
    }
}
