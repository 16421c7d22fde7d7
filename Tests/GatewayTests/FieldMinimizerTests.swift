import Foundation
@testable import Gateway
import PortalCore
import Testing

/// Data minimization's pure core (issue 21): which fields of a JSON body survive the allowed pointers.
@Suite("Data minimization")
struct FieldMinimizerTests {
    static func minimize(_ body: String, _ fields: [String]) throws -> (JSONValue, [String]) {
        try FieldMinimizer(fields: fields).minimize(JSONValue.parse(Data(body.utf8)))
    }

    @Test("members not listed are removed and named; listed ones keep everything under them; arrays by *")
    func strips() throws {
        let (kept, stripped) = try Self.minimize(
            #"{"name":"Ada","email":"a@x","address":{"city":"Oslo","street":"S 1"},"items":[{"sku":"a","price":1},{"sku":"b","price":2}],"tags":["x"]}"#,
            ["/name", "/address/city", "/items/*/sku", "/tags"]
        )
        #expect(kept == ["name": "Ada", "address": ["city": "Oslo"], "items": [["sku": "a"], ["sku": "b"]], "tags": ["x"]])
        #expect(stripped == ["/address/street", "/email", "/items/*/price"])
    }

    @Test("a scalar where only members below it are allowed is removed; a pointer with escapes names a member with / or ~")
    func edges() throws {
        let (kept, stripped) = try Self.minimize(#"{"a":5,"b/c":1,"d~e":2,"z":{"k":1}}"#, ["/a/x", "/b~1c", "/d~0e", "/z/*"])
        #expect(kept == ["b/c": 1, "d~e": 2, "z": ["k": 1]])
        #expect(stripped == ["/a"])
        // The whole body ("" is the root pointer) keeps everything; nothing listed keeps nothing.
        #expect(try Self.minimize(#"{"a":1}"#, [""]).1.isEmpty)
        let (none, all) = try Self.minimize(#"{"a":1,"b":[1]}"#, [])
        #expect(none == [:] && all == ["/a", "/b"])
    }

    @Test("a deeply nested body is walked without trouble and its stripped pointers are named once")
    func repeated() throws {
        let (_, stripped) = try Self.minimize(#"{"rows":[{"id":1,"secret":"s"},{"id":2,"secret":"t"},{"id":3,"secret":"u"}]}"#, ["/rows/*/id"])
        #expect(stripped == ["/rows/*/secret"])
    }
}
