import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import Testing

/// Data minimization end to end (issue 21): the fields an integration may send, stripped at the gateway
/// (absent at the upstream), named in the call's ledger entry and counted in the record of processing; or
/// the call refused.
@Suite("Data minimization at the gateway")
struct MinimizationTests {
    static let body = #"{"name":"Ada","email":"ada@example.test","ssn":"123-45-6789","items":[{"sku":"a-1","price":10},{"sku":"b-2","price":20}]}"#

    static func integration(_ portal: Portal, mode: String) async throws -> String {
        let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
            {"name":"Min \(mode)","type":"analytics","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-min-123456"},
             "config":{"minimization":{"fields":["/name","/items/*/sku"],"mode":"\(mode)"}},"rateLimits":{"requestsPerSecond":100,"burst":100}}
            """)
        #expect(created.status == .created, "\(created.body.string)")
        return try #require(created.json.objectValue?["id"]?.stringValue)
    }

    @Test("strip: the upstream receives only the listed fields; the entry names what was removed; the register counts it", arguments: Backend.available)
    func strip(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let id = try await Self.integration(portal, mode: "strip")
            for _ in 0..<2 {
                let answer = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: portal.token("acme.operator"), json: """
                    {"method":"POST","endpoint":"/echo/contacts","body":\(Self.body)}
                    """)
                #expect(answer.status == .ok, "\(answer.body.string)")
                let sent = try JSONValue.parse(Data((answer.json.objectValue?["body"]?.objectValue?["body"]?.stringValue ?? "").utf8))
                #expect(sent == ["name": "Ada", "items": [["sku": "a-1"], ["sku": "b-2"]]], "at the upstream: \(sent)")
            }
            // Through the transparent proxy too.
            let proxied = try await portal.call(.post, "/portal/integrations/\(id)/proxy/echo/raw", token: portal.token("acme.operator"), json: Self.body)
            #expect(proxied.status == .ok && !proxied.body.string.contains("123-45-6789") && !proxied.body.string.contains("ada@example.test"), "\(proxied.body.string)")

            let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database).filter { $0.type == "request.completed" }
            #expect(entries.count == 3 && entries.allSatisfy { $0.data.objectValue?["strippedFields"] == ["/email", "/items/*/price", "/ssn"] }, "\(entries.map(\.data))")
            #expect(!entries.contains { "\($0.data)".contains("123-45-6789") })

            let today = String(Timestamp.rfc3339(Date()).prefix(10))
            let tomorrow = String(Timestamp.rfc3339(Date().addingTimeInterval(86_400)).prefix(10))
            let register = try await portal.call(.get, "/portal/compliance/processing-register?from=\(today)&to=\(tomorrow)", token: portal.token("acme.auditor"))
            let record = try #require((register.json.objectValue?["records"]?.arrayValue ?? []).compactMap(\.objectValue).first { $0["integrationId"]?.stringValue == id })
            #expect(record["minimization"]?.objectValue?["fields"] == ["/name", "/items/*/sku"])
            #expect(record["observed"]?.objectValue?["strippedFields"] == ["/email": 3, "/items/*/price": 3, "/ssn": 3], "\(record)")
        }
    }

    @Test("refuse: a body with other fields is a 422 naming them and nothing is sent; a body that is not JSON is refused; a bad list is a 422 on save", arguments: [Backend.sqlite])
    func refuse(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let id = try await Self.integration(portal, mode: "refuse")
            let refused = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: portal.token("acme.operator"), json: """
                {"method":"POST","endpoint":"/echo/contacts","body":\(Self.body)}
                """)
            let problem = expectProblem(refused, .unprocessableContent)
            let pointers = (problem["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue }
            #expect(pointers == ["/body/email", "/body/items/*/price", "/body/ssn"], "\(pointers)")
            let allowed = try await portal.call(.post, "/portal/integrations/\(id)/requests", token: portal.token("acme.operator"), json: """
                {"method":"POST","endpoint":"/echo/contacts","body":{"name":"Ada"}}
                """)
            #expect(allowed.status == .ok, "\(allowed.body.string)")
            #expect(portal.upstream.calls("/echo/contacts") == 1)
            let text = try await portal.call(.post, "/portal/integrations/\(id)/proxy/echo/raw", token: portal.token("acme.operator"), json: "name=Ada&ssn=1", contentType: "text/plain")
            expectProblem(text, .unprocessableContent)
            #expect(portal.upstream.calls("/echo/raw") == 0)

            let bad = try await portal.call(.patch, "/portal/integrations/\(id)", token: portal.token("acme.admin"), json: #"{"config":{"minimization":{"fields":["email"],"mode":"drop"}}}"#)
            let badProblem = "\(expectProblem(bad, .unprocessableContent))"
            #expect(badProblem.contains("/config/minimization/fields/0") && badProblem.contains("/config/minimization/mode"), "\(badProblem)")
        }
    }
}
