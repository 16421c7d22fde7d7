import Foundation
import PortalCore
import Testing

@Suite("JSON documents and validation")
struct JSONReaderTests {
    enum Color: String, CaseIterable { case red, green }

    @Test("not JSON is malformed, not a validation error")
    func notJSON() {
        #expect(throws: PortalError(.malformedRequest, "the body is not valid JSON")) {
            try JSONValue.parse(Data("{name: 1".utf8))
        }
    }

    @Test("integers, doubles, booleans and null keep their kinds")
    func kinds() throws {
        let value = try JSONValue.parse(Data(#"{"i":3,"d":1.5,"b":true,"n":null,"s":"x","a":[1]}"#.utf8))
        #expect(value == ["i": 3, "d": .double(1.5), "b": true, "n": nil, "s": "x", "a": [1]])
    }

    @Test("every problem is reported with its pointer, unknown fields included")
    func collectsEveryError() {
        let errors = ValidationErrors()
        var reader = JSONObjectReader(["name": 5, "color": "blue", "extra": true, "inner": ["n": "x"]], errors: errors)
        _ = reader.string("name", required: true)
        _ = reader.enumeration("color", Color.self)
        _ = reader.string("missing", required: true)
        _ = reader.nested("inner") { $0.integer("n") }
        reader.finish()
        let byPointer = Dictionary(uniqueKeysWithValues: errors.all.map { ($0.pointer, $0.message) })
        #expect(byPointer["/name"] == "must be a string, not number")
        #expect(byPointer["/color"] == "must be one of 'red', 'green'")
        #expect(byPointer["/missing"] == "is required")
        #expect(byPointer["/inner/n"] == "must be an integer, not string")
        #expect(byPointer["/extra"] == "is not a known field")
        #expect(errors.all.count == 5)
        #expect(throws: PortalError.self) { try errors.throwIfAny() }
    }

    @Test("a document that is not an object is rejected at the root")
    func rootMustBeObject() {
        let errors = ValidationErrors()
        _ = JSONObjectReader([1, 2], errors: errors)
        #expect(errors.all == [.init(pointer: "", message: "must be an object, not array")])
    }

    @Test("pointer tokens escape ~ and /")
    func pointerEscape() {
        #expect(jsonPointerEscape("a/b~c") == "a~1b~0c")
    }

    @Test("merge patch follows RFC 7396's examples")
    func mergePatch() {
        let target: JSONValue = ["a": "b", "c": ["d": "e", "f": "g"]]
        let patch: JSONValue = ["a": "z", "c": ["f": nil]]
        #expect(target.merging(patch: patch) == ["a": "z", "c": ["d": "e"]])
        #expect((["a": ["b": "c"]] as JSONValue).merging(patch: ["a": ["b": "d", "c": nil]]) == ["a": ["b": "d"]])
        #expect((["a": "b"] as JSONValue).merging(patch: ["a": ["c": nil]]) == ["a": [:]])
        #expect((["e": nil] as JSONValue).merging(patch: ["a": 1]) == ["e": nil, "a": 1])
        #expect((["a": "foo"] as JSONValue).merging(patch: "bar") == "bar")
    }
}

@Suite("Small pure parts")
struct CoreTests {
    @Test("durations are n followed by a unit", arguments: [("90s", 90.0), ("15m", 900), ("12h", 43_200), ("30d", 2_592_000), ("2w", 1_209_600)])
    func durations(text: String, seconds: Double) throws {
        #expect(try DurationText.seconds(text) == seconds)
    }

    @Test("bad durations are validation errors", arguments: ["", "30", "d", "-1d", "1.5h", "0d", "3y"])
    func badDurations(text: String) {
        #expect(throws: PortalError.self) { try DurationText.seconds(text) }
    }

    @Test("identifiers are UUIDv7 and strictly increasing within a process")
    func identifiers() {
        let generator = IdentifierGenerator(clock: ManualWallClock())
        var previous = generator.next()
        for _ in 0..<5000 {
            let id = generator.next()
            #expect(id.uuidString.lowercased() > previous.uuidString.lowercased())
            #expect(id.uuidString.lowercased().dropFirst(14).first == "7")
            previous = id
        }
    }

    @Test("timestamps are RFC 3339 UTC with microseconds")
    func timestamps() {
        #expect(Timestamp.rfc3339(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000000Z")
        #expect(Timestamp.rfc3339(Date(timeIntervalSince1970: 1_795_000_000.123456)) == "2026-11-18T11:06:40.123456Z")
    }

    @Test("the role table is DESIGN section 6's")
    func roles() {
        #expect(Role.admin.permissions == Set(Permission.allCases))
        #expect(Role.operator.permissions == [.manageIntegrations, .readIntegrations, .readLedger])
        #expect(Role.compliance.permissions == [.approveIntegrations, .readIntegrations, .manageReports, .readReports, .readLedger])
        #expect(Role.auditor.permissions == [.readIntegrations, .readReports, .readLedger])
        #expect(!Role.operator.allows(.manageTokens))
    }

    @Test("constant-time equality is equality")
    func constantTime() {
        #expect(ConstantTime.equals(Array("abc".utf8), Array("abc".utf8)))
        #expect(!ConstantTime.equals(Array("abc".utf8), Array("abd".utf8)))
        #expect(!ConstantTime.equals(Array("abc".utf8), Array("abcd".utf8)))
    }

    @Test("slugs are lowercase and bounded", arguments: ["acme", "a", "acme-2", String(repeating: "a", count: 63)])
    func goodSlugs(slug: String) throws {
        try Organization.validateSlug(slug)
    }

    @Test("bad slugs are refused", arguments: ["", "Acme", "-acme", "_platform", "a b", "ä", String(repeating: "a", count: 64)])
    func badSlugs(slug: String) {
        #expect(throws: PortalError.self) { try Organization.validateSlug(slug) }
    }

    @Test("settings come from PORTAL_* variables and reject bad values")
    func settings() throws {
        let s = try PortalSettings.fromEnvironment(["PORTAL_PORT": "9000", "PORTAL_DATABASE_URL": "postgres://x@h/db", "PORTAL_PUBLIC_URL": "https://portal.example.com/"])
        #expect(s.port == 9000)
        #expect(s.databaseURL == "postgres://x@h/db")
        #expect(s.effectivePublicURL == "https://portal.example.com")
        #expect(PortalSettings().effectivePublicURL == "http://localhost:8080")
        #expect(throws: PortalError.self) { try PortalSettings.fromEnvironment(["PORTAL_PORT": "http"]) }
        #expect(throws: PortalError.self) { try PortalSettings.fromEnvironment(["PORTAL_MAX_BODY_BYTES": "-1"]) }
    }
}
