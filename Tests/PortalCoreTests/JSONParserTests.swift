import Foundation
import PortalCore
import Testing

@Suite("JSON parser")
struct JSONParserTests {
    /// What `JSONDecoder` made of a text before the parser replaced it: the reference the parser must match.
    static func reference(_ text: String) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    static let accepted: [String] = [
        "{}", "[]", "0", "-0", "1", "-1", "42", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "1.5", "-0.25", "1e3", "1E-3", "2.5e+10", "1.7976931348623157e308", "5e-324", "true", "false", "null",
        #""""#, #""plain""#, #""caf\u00e9 \ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t""#, "\"naïve 日本 😀\"",
        #"  {"a" : [1, 2.5, "x", true, false, null, {"b": {}}] , "c": {"d": []} }  "#,
        #"[[[[[[[[[[]]]]]]]]]]"#, #"{"":""}"#, "\u{FEFF}{\"bom\": true}",
        #"{"type":"contact.updated","data":{"id":"c-1","email":"ada@example.test","plan":"enterprise","seats":42}}"#,
    ]

    @Test("accepts what JSONDecoder accepted and builds the same value", arguments: accepted)
    func matchesJSONDecoder(text: String) throws {
        let parsed = try JSONValue.parse(Data(text.utf8))
        let expected = try #require(Self.reference(text), "JSONDecoder accepts \(text)")
        #expect(parsed == expected)
        #expect(try JSONValue.parse(Array(text.utf8)) == expected)
    }

    static let refused: [String] = [
        "", " ", "{", "}", "[", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{\"a\":}", "01", "-", "+1", ".5", "1.", "1.e3", "1e",
        "1e+", "0x10", "NaN", "Infinity", "1e400", "tru", "nul", "truex", "[1] [2]", "\"unterminated", "\"bad \\x escape\"", "\"\\u12\"",
        "\"\\ud83d\"", "\"\\ude00\"", "\"\\ud83d\\u0041\"", "\"tab\there\"", "\"line\nbreak\"", "{\"a\":1}}", "[1]]", "'single'",
    ]

    static let duplicated: [(text: String, pointer: String)] = [
        (#"{"role":"auditor","role":"admin"}"#, "/role"),
        (#"{"dup": 1, "dup": 1}"#, "/dup"),
        (#"{"a":{"b":[1,{"c":1,"d":2,"c":3}]}}"#, "/a/b/1/c"),
        (#"{"x/y~":{"k":1,"k":2}}"#, "/x~1y~0/k"),
    ]

    @Test("refuses a member name repeated in one object with a 422 naming it", arguments: duplicated)
    func refusesDuplicateMembers(text: String, pointer: String) {
        for useData in [true, false] {
            do {
                _ = useData ? try JSONValue.parse(Data(text.utf8)) : try JSONValue.parse(Array(text.utf8))
                Issue.record("accepted \(text)")
            } catch {
                #expect(error.code == PortalError.Code.validationFailed)
                #expect(error.fieldErrors.map { $0.pointer } == [pointer])
            }
        }
        // The same names in different objects are no repetition.
        #expect((try? JSONValue.parse(Data(#"{"a":{"k":1},"b":{"k":2}}"#.utf8))) != nil)
    }

    @Test("refuses what RFC 8259 refuses", arguments: refused)
    func refusesNonJSON(text: String) {
        #expect(throws: PortalError.self) { try JSONValue.parse(Data(text.utf8)) }
    }

    @Test("refuses invalid UTF-8 and nesting deeper than 512 levels")
    func refusesBadBytesAndDepth() {
        #expect(throws: PortalError.self) { try JSONValue.parse([UInt8(ascii: "\""), 0xC3, 0x28, UInt8(ascii: "\"")]) }
        #expect(throws: PortalError.self) { try JSONValue.parse([UInt8(ascii: "\""), 0xFF, UInt8(ascii: "\"")]) }
        #expect(throws: PortalError.self) { try JSONValue.parse(Data((String(repeating: "[", count: 513) + String(repeating: "]", count: 513)).utf8)) }
        #expect((try? JSONValue.parse(Data((String(repeating: "[", count: 512) + String(repeating: "]", count: 512)).utf8))) != nil)
    }

    @Test("random documents round-trip through the encoder and match JSONDecoder")
    func randomDocuments() throws {
        var generator = SeededGenerator(seed: 0x5EED)
        for _ in 0..<300 {
            let value = Self.random(depth: 0, using: &generator)
            let text = String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
            let parsed = try JSONValue.parse(Data(text.utf8))
            #expect(parsed == Self.reference(text), "\(text)")
        }
    }

    @Test("the sorted text is JSONEncoder's with sorted keys and unescaped slashes, byte for byte")
    func sortedTextMatchesJSONEncoder() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var generator = SeededGenerator(seed: 0xC0FFEE)
        var samples: [JSONValue] = [
            .double(1.0), .double(-0.0), .double(0.1), .double(1e16), .double(1e-5), .double(1.7976931348623157e308), .double(.leastNonzeroMagnitude), .double(123456789.123),
            .string("a\u{01}\u{1f}\u{7f}\u{2028}\"\\/\n\t\r\u{08}\u{0c}é😀"),
            .object(["b": 1, "B": 2, "a": 3, "é": 4, "Z": 5, "a10": 6, "a9": 7, "_": 8, "": 9, "😀": 10, "\u{FF61}": 11]),
        ]
        for _ in 0..<300 { samples.append(Self.random(depth: 0, using: &generator)) }
        for value in samples {
            #expect(value.sortedText == String(decoding: try encoder.encode(value), as: UTF8.self))
        }
    }

    static func random(depth: Int, using generator: inout SeededGenerator) -> JSONValue {
        let kind = Int.random(in: 0..<(depth > 3 ? 5 : 7), using: &generator)
        switch kind {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &generator))
        case 2: return .int(Int64.random(in: Int64.min...Int64.max, using: &generator))
        case 3: return .double(Double.random(in: -1e6...1e6, using: &generator) + 0.5)
        case 4:
            let alphabet = Array("aZ09 \"\\/\n\t\u{01}é日😀-_")
            return .string(String((0..<Int.random(in: 0..<12, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }))
        case 5: return .array((0..<Int.random(in: 0..<5, using: &generator)).map { _ in random(depth: depth + 1, using: &generator) })
        default:
            var members: [String: JSONValue] = [:]
            for i in 0..<Int.random(in: 0..<5, using: &generator) { members["k\(i)\(["", "é", "\"", "/"].randomElement(using: &generator)!)"] = random(depth: depth + 1, using: &generator) }
            return .object(members)
        }
    }
}

/// SplitMix64: reproducible random documents.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
