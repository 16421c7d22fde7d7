import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalTestSupport
import Testing

/// DESIGN section 7: bad input gets its status and a problem body, and nothing is written.
@Suite("Bad input")
struct BadInputTests {
    static let valid = #"{"name":"Okta","type":"identity_provider","baseUrl":"https://acme.okta.com","authMethod":"api_key","credentials":{"apiKey":"00abcdefghijklmnop"}}"#

    @Test("every kind of bad body gets its status, names the field, and writes nothing", arguments: Backend.available)
    func badBodies(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let existing = try await portal.createIntegration(name: "Existing")
            let before = try await portal.rowCounts()

            let cases: [(String, String?, HTTPResponse.Status, String?)] = [
                ("not JSON", "{name: Okta", .badRequest, nil),
                ("truncated JSON", #"{"name":"Okta""#, .badRequest, nil),
                ("an array", "[1,2]", .unprocessableContent, ""),
                ("wrong type", Self.valid.replacingOccurrences(of: #""name":"Okta""#, with: #""name":42"#), .unprocessableContent, "/name"),
                ("unknown enum", Self.valid.replacingOccurrences(of: "identity_provider", with: "idp"), .unprocessableContent, "/type"),
                ("unknown auth method", Self.valid.replacingOccurrences(of: #""api_key""#, with: #""saml""#), .unprocessableContent, "/authMethod"),
                ("unknown field", Self.valid.replacingOccurrences(of: "{\"name\"", with: "{\"owner\":\"me\",\"name\""), .unprocessableContent, "/owner"),
                ("missing field", Self.valid.replacingOccurrences(of: #","baseUrl":"https://acme.okta.com""#, with: ""), .unprocessableContent, "/baseUrl"),
                ("credential of wrong type", Self.valid.replacingOccurrences(of: #""00abcdefghijklmnop""#, with: "true"), .unprocessableContent, "/credentials/apiKey"),
            ]
            for (label, body, status, pointer) in cases {
                let response = try await portal.call(.post, "/portal/integrations", token: admin, json: body)
                let problem = expectProblem(response, status)
                if let pointer {
                    let pointers = problem["errors"]?.arrayValues.compactMap { $0.objectValue?["pointer"]?.stringValue } ?? []
                    #expect(pointers.contains(pointer), "\(label): \(response.body.string)")
                }
            }

            // The same rules on PATCH.
            let patchCases: [(String, HTTPResponse.Status)] = [
                ("{oops", .badRequest), (#"{"type":"crm"}"#, .unprocessableContent), (#"{"unknown":1}"#, .unprocessableContent),
                (#"{"config":[]}"#, .unprocessableContent), (#"{"rateLimits":{"burst":-1}}"#, .unprocessableContent),
            ]
            for (body, status) in patchCases {
                expectProblem(try await portal.call(.patch, "/portal/integrations/\(existing)", token: admin, json: body), status)
            }

            // Wrong or missing content type: 415.
            expectProblem(try await portal.call(.post, "/portal/integrations", token: admin, json: Self.valid, contentType: "text/plain"), .unsupportedMediaType)
            expectProblem(try await portal.call(.post, "/portal/integrations", token: admin, json: Self.valid, contentType: nil), .unsupportedMediaType)
            expectProblem(try await portal.call(.post, "/portal/integrations", token: admin, json: "name=Okta", contentType: "application/x-www-form-urlencoded"), .unsupportedMediaType)

            // A 10 MB body: 413 from the declared length, and from the streamed length when none is declared.
            let huge = #"{"name":""# + String(repeating: "x", count: 10 << 20) + #""}"#
            expectProblem(try await portal.call(.post, "/portal/integrations", token: admin, json: huge), .contentTooLarge)
            expectProblem(try await portal.call(.patch, "/portal/integrations/\(existing)", token: admin, json: huge), .contentTooLarge)
            expectProblem(try await portal.call(.post, "/portal/tokens", token: admin, json: huge), .contentTooLarge)

            // Forbidden and unauthenticated writes write nothing either.
            expectProblem(try await portal.call(.post, "/portal/integrations", token: portal.token("acme.auditor"), json: Self.valid), .forbidden)
            expectProblem(try await portal.call(.post, "/portal/integrations", token: portal.token("acme.expired"), json: Self.valid), .unauthorized)
            expectProblem(try await portal.call(.post, "/portal/integrations", token: nil, json: Self.valid), .unauthorized)

            #expect(try await portal.rowCounts() == before)
            let unchanged = try await portal.call(.get, "/portal/integrations/\(existing)", token: admin).json.objectValue
            #expect(unchanged?["name"] == "Existing")
        }
    }

    @Test("a body over a smaller configured limit is refused before it is read", arguments: [Backend.sqlite])
    func configuredLimit(backend: Backend) async throws {
        try await withPortal(backend, maxBodyBytes: 256) { portal in
            let long = Self.valid.replacingOccurrences(of: "Okta", with: String(repeating: "O", count: 300))
            let problem = expectProblem(try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: long), .contentTooLarge)
            #expect(problem["detail"]?.stringValue?.contains("256") == true)
            #expect(try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: Self.valid).status == .created)
        }
    }

    @Test("unknown routes are 404s; a known path with a method it does not have is a 405 with Allow; both problem bodies", arguments: [Backend.sqlite])
    func unknownRoutes(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            expectProblem(try await portal.call(.get, "/nope", token: nil), .notFound)
            expectProblem(try await portal.call(.put, "/portal/nope", token: portal.token("acme.admin")), .notFound)
            let cases: [(HTTPRequest.Method, String, String)] = [
                (.put, "/healthz", "GET"),
                (.init("TRACE")!, "/portal/integrations", "GET, POST"),
                (.delete, "/portal/integrations/test", "POST"),
                (.options, "/portal/integrations/01938a4e-9d2a-7b3c-8d4e-5f6a7b8c9d0e", "GET, PATCH, DELETE"),
                (.put, "/portal/integrations/01938a4e-9d2a-7b3c-8d4e-5f6a7b8c9d0e/webhooks/logs", "GET"),
                (.post, "/ledger/acme/tile/0/x001/002", "GET"),
                (.init("QUERY")!, "/portal/alerts/silences", "GET, POST"),
            ]
            for (method, path, allow) in cases {
                let response = try await portal.call(method, path, token: nil)
                let problem = expectProblem(response, .methodNotAllowed)
                #expect(problem["code"] == "method_not_allowed", "\(method) \(path)")
                #expect(response.headers[.allow] == allow, "\(method) \(path): \(response.headers[.allow] ?? "no Allow")")
            }
        }
    }
}
