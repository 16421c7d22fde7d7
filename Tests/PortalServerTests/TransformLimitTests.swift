import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Integrations
import PortalCore
import PortalTestSupport
import Storage
import Testing

/// `config.transforms` over HTTP (issue 16, item 10): pointers deeper than 32 tokens, long pointers, too many
/// rules and oversized configurations are refused with a 422 naming the field, on create and on PATCH; a
/// deep pointer stored before the caps does not take the process down.
@Suite("Transform limits")
struct TransformLimitTests {
    /// A pointer of `depth` tokens, `/a/a/…`.
    static func deep(_ depth: Int) -> String { String(repeating: "/a", count: depth) }

    /// A create body for an api_key integration on the test upstream with `config`.
    static func createBody(_ portal: Portal, config: String) -> String {
        """
        {"name":"Transforms \(UUID().uuidString.prefix(8))","type":"analytics","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key",
         "credentials":{"apiKey":"k-transform-123456"},"rateLimits":{"requestsPerSecond":100,"burst":100},"config":\(config)}
        """
    }

    /// The pointers of a 422's field errors, and their messages.
    static func fieldErrors(_ response: TestResponse) -> [String: String] {
        let errors = expectProblem(response, .unprocessableContent)["errors"]?.arrayValue ?? []
        return Dictionary(errors.compactMap { e in e.objectValue.flatMap { o in o["pointer"]?.stringValue.map { ($0, o["message"]?.stringValue ?? "") } } }, uniquingKeysWith: { a, _ in a })
    }

    @Test("a 300,000-token pointer is refused with 422 naming the field, on create and on PATCH", arguments: Backend.available)
    func deepPointerRefused(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let deep = Self.deep(300_000)
            let before = try await portal.rowCounts()["integrations"]

            let created = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.createBody(portal, config: """
                {"transforms":{"request":{"body":{"remove":["\(deep)"]}}}}
                """))
            let createErrors = Self.fieldErrors(created)
            #expect(createErrors["/config/transforms/request/body/remove/0"]?.contains("more than 32 tokens") == true, "\(createErrors.keys)")
            // The refusal does not quote the pointer back.
            #expect(created.body.readableBytes < 20_000)

            let asKey = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.createBody(portal, config: """
                {"transforms":{"response":{"body":{"set":{"\(deep)":1}}}}}
                """))
            #expect(Self.fieldErrors(asKey)["/config/transforms/response/body/set"]?.contains("member name is a JSON Pointer of more than 32 tokens") == true)
            #expect(try await portal.rowCounts()["integrations"] == before)

            let ok = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.createBody(portal, config: #"{"region":"eu"}"#))
            #expect(ok.status == .created, "\(ok.body.string)")
            let id = try #require(ok.json.objectValue?["id"]?.stringValue)
            let patched = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: """
                {"config":{"transforms":{"request":{"body":{"rename":{"/name":"\(deep)"}}}}}}
                """)
            #expect(Self.fieldErrors(patched)["/config/transforms/request/body/rename/~1name"]?.contains("more than 32 tokens") == true)
            let stored = try await portal.call(.get, "/portal/integrations/\(id)", token: admin)
            #expect(stored.json.objectValue?["config"] == ["region": "eu"])
        }
    }

    @Test("the other caps: 33 tokens, 1,025 bytes, bad pointers and header names, unknown members, 201 rules, oversized configs")
    func otherCaps() async throws {
        try await withPortal(.sqlite) { portal in
            let admin = portal.token("acme.admin")
            let long = "/" + String(repeating: "x", count: 1_024)
            let bad = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.createBody(portal, config: """
                {"transforms":{"request":{"headers":{"set":{"Bad Name":"v","X-Ok":"line\\nbreak"},"remove":[7]},
                                          "body":{"pick":["\(Self.deep(33))","\(long)","name","/a~2b"],"rename":{"/x":5},"sort":[]}},
                               "both":{}}}
                """))
            let errors = Self.fieldErrors(bad)
            #expect(errors["/config/transforms/request/body/pick/0"]?.contains("more than 32 tokens") == true)
            #expect(errors["/config/transforms/request/body/pick/1"]?.contains("1025 bytes") == true)
            #expect(errors["/config/transforms/request/body/pick/2"]?.contains("starting with '/'") == true)
            #expect(errors["/config/transforms/request/body/pick/3"]?.contains("~0") == true)
            #expect(errors["/config/transforms/request/body/rename/~1x"] != nil)
            #expect(errors["/config/transforms/request/body/sort"] == "is not a known field")
            #expect(errors["/config/transforms/both"] == "is not a known field")
            #expect(errors["/config/transforms/request/headers/set/Bad Name"]?.contains("header name") == true)
            #expect(errors["/config/transforms/request/headers/set/X-Ok"]?.contains("control characters") == true)
            #expect(errors["/config/transforms/request/headers/remove/0"] != nil)
            #expect(errors.count == 10, "\(errors)")

            let rules = (0...200).map { "\"/f\($0)\"" }.joined(separator: ",")
            let many = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.createBody(portal, config: """
                {"transforms":{"response":{"body":{"remove":[\(rules)]}}}}
                """))
            #expect(Self.fieldErrors(many)["/config/transforms"]?.contains("201 rules") == true)

            let blob = String(repeating: "x", count: 300_000)
            let big = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.createBody(portal, config: """
                {"notes":"\(blob)","transforms":{"request":{"body":{"set":{"/blob":"\(blob)"}}}}}
                """))
            let bigErrors = Self.fieldErrors(big)
            #expect(bigErrors["/config"]?.contains("at most 262144 bytes") == true)
            #expect(bigErrors["/config/transforms"]?.contains("at most 65536 bytes") == true)

            // Nulls are merge-patch removals, and 32 tokens are allowed.
            let created = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.createBody(portal, config: """
                {"transforms":{"request":{"headers":{"set":{"X-Client":"portal"}},"body":{"set":{"\(Self.deep(32))":1},"rename":{"/a~1b":"/c~0d"}}}}}
                """))
            #expect(created.status == .created, "\(created.body.string)")
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            let removed = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: """
                {"config":{"transforms":{"request":{"headers":null,"body":{"set":{"\(Self.deep(32))":null}}}}}}
                """)
            #expect(removed.status == .ok, "\(removed.body.string)")
            #expect(removed.json.objectValue?["config"] == ["transforms": ["request": ["body": ["set": [:], "rename": ["/a~1b": "/c~0d"]]]]])
        }
    }

    @Test("a deep pointer stored before the caps fails no call and crashes nothing; the valid rules still apply", arguments: Backend.available)
    func storedDeepPointer(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let created = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.createBody(portal, config: """
                {"transforms":{"request":{"body":{"set":{"/source":"portal"}}}}}
                """))
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            let uuid = try #require(UUID(uuidString: id))
            // Written as a release before the caps would have stored it: straight into the table.
            let deep = Self.deep(300_000)
            try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
                try await db.write { tx in
                    let store = IntegrationStore(tx)
                    var record = try #require(try await store.find(id: uuid, organizationID: portal.acme.id))
                    record.config = ["transforms": [
                        "request": ["body": ["set": .object([deep: "boom", "/source": "portal"]), "rename": .object(["/name": .string(deep)])]],
                        "response": ["body": ["remove": .array([.string(deep), "/headers"])]],
                    ]]
                    #expect(try await store.update(record))
                }
            }
            // Every call is refused with the reason (not sent with a rule left out), and nothing crashes.
            for round in 1...2 {
                let answer = try await portal.call(.post, "/portal/integrations/\(id)/proxy/echo/deep", token: admin, json: #"{"name":"Ada"}"#)
                let problem = expectProblem(answer, .forbidden)
                #expect(problem["code"] == "refused" && problem["detail"]?.stringValue?.contains("config.transforms") == true, "round \(round): \(answer.body.string)")
            }
            #expect(portal.upstream.calls("/echo/deep") == 0)
            // The configuration stays readable, and fixing it makes calls go out again.
            let read = try await portal.call(.get, "/portal/integrations/\(id)", token: admin)
            #expect(read.status == .ok)
            // (A merge patch adding to the stored transforms is refused: the merged whole is checked.)
            let merged = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: #"{"config":{"transforms":{"request":{"body":{"set":{"/x":"y"}}}}}}"#)
            expectProblem(merged, .unprocessableContent)
            let fixed = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: #"{"config":{"transforms":null}}"#)
            #expect(fixed.status == .ok, "\(fixed.body.string)")
            let answer = try await portal.call(.post, "/portal/integrations/\(id)/proxy/echo/deep", token: admin, json: #"{"name":"Ada"}"#)
            #expect(answer.status == .ok, "\(answer.body.string)")
            #expect(portal.upstream.calls("/echo/deep") == 1)
        }
    }
}
