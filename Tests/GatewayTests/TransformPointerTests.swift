import Foundation
@testable import Gateway
import Integrations
import PortalCore
import Testing

/// Transform pointers are followed iteratively and never past ``TransformLimits/maxPointerTokens`` tokens
/// (issue 16, item 10): a configuration stored before the cap cannot exhaust the stack, and says what is wrong.
@Suite("Transform pointers")
struct TransformPointerTests {
    /// A pointer of `depth` tokens, `/a/a/…`.
    static func deep(_ depth: Int) -> String { String(repeating: "/a", count: depth) }

    static func json(_ bytes: [UInt8]?) throws -> JSONValue {
        try JSONValue.parse(Data(try #require(bytes)))
    }

    @Test("a stored 300,000-token pointer does nothing, and the transforms say why; the other rules still apply")
    func deepPointerDoesNotCrash() throws {
        let deep = Self.deep(300_000)
        let config: JSONValue = [
            "request": ["body": [
                "rename": .object(["/name": .string(deep), deep: "/moved"]),
                "set": .object([deep: "x", "/kept": "yes"]),
                "remove": .array([.string(deep), "/internal"]),
            ]],
            "response": ["body": ["pick": .array([.string(deep), "/items"])]],
        ]
        let transforms = Transforms(config: config)
        let request = try Self.json(transforms.request.body(Array(#"{"name":"Ada","internal":1,"a":{"a":2}}"#.utf8)))
        #expect(request == ["name": "Ada", "a": ["a": 2], "kept": "yes"])
        let response = try Self.json(transforms.response.body(Array(#"{"items":[1],"total":1}"#.utf8)))
        #expect(response == ["items": [1]])

        let problem = try #require(transforms.problem)
        #expect(problem.code == .refused)
        #expect(problem.message.contains("more than 32 tokens") && problem.message.contains("request.body.rename"))
        #expect(problem.message.contains("response.body.pick") && problem.message.count < 400)
        let thrown = #expect(throws: PortalError.self) { try Transforms.checked(config: config) }
        #expect(thrown?.code == .refused)
    }

    @Test("the pointer functions refuse more than 32 tokens and follow 32")
    func pointerCap() throws {
        #expect(Pointer.tokens(Self.deep(33)) == nil && Pointer.tokens(Self.deep(32))?.count == 32)
        #expect(Pointer.set([:], Self.deep(33), 1) == nil)
        let built = try #require(Pointer.set([:], Self.deep(32), 1))
        #expect(Pointer.get(built, Self.deep(32)) == 1)
        #expect(Pointer.get(built, Self.deep(33)) == nil)
        #expect(Pointer.remove(built, Self.deep(32)) == Pointer.set([:], Self.deep(31), [:]))
        #expect(Pointer.remove(built, Self.deep(300_000)) == built)
        #expect(Transforms(config: ["request": ["body": ["set": .object([Self.deep(32): 1])]]]).problem == nil)
        #expect(try Transforms.checked(config: nil).problem == nil)
    }

    @Test("normal pointers: objects made on the way, array items replaced, escapes read, scalars replaced by objects")
    func normalPointers() throws {
        let value: JSONValue = ["list": [1, 2, 3], "a/b": ["~": 1], "n": 5]
        #expect(Pointer.set(value, "/list/1", "two") == ["list": [1, "two", 3], "a/b": ["~": 1], "n": 5])
        #expect(Pointer.set(value, "/new/deeper/x", true) == ["list": [1, 2, 3], "a/b": ["~": 1], "n": 5, "new": ["deeper": ["x": true]]])
        #expect(Pointer.set(value, "/n/x", 1) == ["list": [1, 2, 3], "a/b": ["~": 1], "n": ["x": 1]])
        #expect(Pointer.set(value, "/list/9", 1) == ["list": ["9": 1], "a/b": ["~": 1], "n": 5])
        #expect(Pointer.get(value, "/a~1b/~0") == 1 && Pointer.get(value, "/list/2") == 3 && Pointer.get(value, "") == value)
        #expect(Pointer.remove(value, "/a~1b/~0") == ["list": [1, 2, 3], "a/b": [:], "n": 5])
        #expect(Pointer.remove(value, "/missing/x") == value && Pointer.remove(value, "/list/0") == value)

        let transforms = Transforms(config: ["request": ["body": [
            "rename": ["/name": "/person/fullName"], "set": ["/meta/source": "portal"], "remove": ["/internal"],
        ]], "response": ["body": ["pick": ["/items", "/page/next"]]]])
        #expect(transforms.problem == nil)
        let request = try Self.json(transforms.request.body(Array(#"{"name":"Ada","internal":"x","age":36}"#.utf8)))
        #expect(request == ["person": ["fullName": "Ada"], "age": 36, "meta": ["source": "portal"]])
        let response = try Self.json(transforms.response.body(Array(#"{"items":[1],"page":{"next":"c2","size":1},"secret":1}"#.utf8)))
        #expect(response == ["items": [1], "page": ["next": "c2"]])
        #expect(transforms.request.body(Array("[1,2]".utf8)) == nil)
    }
}
