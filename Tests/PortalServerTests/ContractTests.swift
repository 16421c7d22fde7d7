import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalServer
import PortalTestSupport
import Testing

/// What schemathesis found against `/openapi.json` (issue 16, item 20), pinned here so it stays fixed without
/// schemathesis: the document names every error code the API answers with, and a wrongly typed `processing`
/// is refused naming the field. (The 405 with `Allow` is in ``BadInputTests``.)
@Suite("API contract")
struct ContractTests {
    static let integration = #"{"name":"CRM","type":"enterprise","baseUrl":"https://api.example.com","authMethod":"api_key","credentials":{"apiKey":"k-crm-0123456789"}"#

    /// The create body with `processing` set to `json`.
    static func create(processing json: String) -> String { integration + #","processing":"# + json + "}" }

    @Test("every error code of the API is in Problem.code's enum, with the status Problem maps it to")
    func problemCodes() throws {
        let document = try JSONValue.parse(try OpenAPIDocument.data())
        let problem = document.objectValue?["components"]?.objectValue?["schemas"]?.objectValue?["Problem"]?.objectValue
        let documented = Set((problem?["properties"]?.objectValue?["code"]?.objectValue?["enum"]?.arrayValue ?? []).compactMap(\.stringValue))
        let codes: [PortalError.Code] = [
            .malformedRequest, .validationFailed, .unauthenticated, .forbidden, .notFound, .conflict, .payloadTooLarge,
            .unsupportedMediaType, .methodNotAllowed, .configuration, .storage, .crypto, .unavailable, .refused, .throttled,
            .upstreamFailed, .upstreamTimeout, .internal,
        ]
        #expect(documented == Set(codes.map(\.rawValue)), "documented but not a code: \(documented.subtracting(codes.map(\.rawValue))); missing: \(Set(codes.map(\.rawValue)).subtracting(documented))")
        #expect(Problem.status(for: .refused) == .forbidden && Problem.status(for: .throttled) == .tooManyRequests)
        #expect(Problem.status(for: .upstreamFailed) == .badGateway && Problem.status(for: .upstreamTimeout) == .gatewayTimeout)
    }

    @Test("a wrongly typed processing record is a 422 naming the field, on create and on PATCH; nothing is written", arguments: Backend.available)
    func wronglyTypedProcessing(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let existing = try await portal.createIntegration(name: "Existing")
            let before = try await portal.rowCounts()
            let cases: [(String, String)] = [
                (#""yes""#, "/processing"), ("42", "/processing"), ("[]", "/processing"), ("true", "/processing"),
                (#"{"dpa":null}"#, "/processing/dpa"), (#"{"transferMechanism":null}"#, "/processing/transferMechanism"),
                (#"{"purposes":null}"#, "/processing/purposes"), (#"{"recipientRole":7}"#, "/processing/recipientRole"),
                (#"{"dataSubjectCategories":"customers"}"#, "/processing/dataSubjectCategories"),
                (#"{"transferMechanism":{"type":"sccs","module":"2"}}"#, "/processing/transferMechanism/module"),
                (#"{"dpa":{"reference":"DPA-1","date":"2026-02-30"}}"#, "/processing/dpa/date"),
            ]
            for (processing, pointer) in cases {
                let created = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.create(processing: processing))
                let problem = expectProblem(created, .unprocessableContent)
                let pointers = (problem["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue }
                #expect(pointers == [pointer], "create with processing \(processing): \(pointers)")

                let patched = try await portal.call(.patch, "/portal/integrations/\(existing)", token: admin, json: #"{"processing":\#(processing)}"#)
                let patchProblem = expectProblem(patched, .unprocessableContent)
                let patchPointers = (patchProblem["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue }
                #expect(patchPointers == [pointer], "PATCH with processing \(processing): \(patchPointers)")
            }
            let afterCounts = try await portal.rowCounts()
            #expect(afterCounts == before, "a refused body writes nothing: \(before) -> \(afterCounts)")

            // As documented: on create, null is the same as absent (as for rateLimits, webhookConfig, syncConfig).
            let withNull = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.create(processing: "null"))
            #expect(withNull.status == .created, "\(withNull.body.string)")
            #expect(withNull.json.objectValue?["processing"] == nil)
        }
    }

    @Test("U+0000 in a JSON body, a proxied path, a call's endpoint or a subject id is a 422 naming it on every backend, not a PostgreSQL failure (503)", arguments: Backend.available)
    func nulInBodies(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            // The organization's data key exists before (the first sealing creates it), as in BadInputTests.
            let integration = try await portal.createIntegration(name: "Proxy")
            let before = try await portal.rowCounts()
            let cases: [(String, String, String)] = [
                ("/portal/tokens", #"{"role":"auditor","owner":"Dana\u0000Ops"}"#, "/owner"),
                ("/portal/integrations", Self.integration + #","config":{"headers":{"X-A\u0000":"1"}}}"#, "/config/headers/X-A\u{0}"),
                ("/portal/integrations", Self.create(processing: #"{"securityMeasures":["SSO","\u0000"]}"#), "/processing/securityMeasures/1"),
                ("/portal/alerts/silences", #"{"matchers":[{"name":"alertname","value":"x\u0000"}],"duration":"1h","comment":"maintenance"}"#, "/matchers/0/value"),
            ]
            for (path, body, pointer) in cases {
                let response = try await portal.call(.post, path, token: admin, json: body)
                let problem = expectProblem(response, .unprocessableContent)
                #expect(problem["errors"]?.arrayValue?.first?.objectValue?["pointer"] == .string(pointer), "\(path): \(response.body.string)")
            }
            let after = try await portal.rowCounts()
            #expect(after == before, "a refused body writes nothing: \(after.filter { before[$0.key] != $0.value })")

            // Percent-encoded in a path the API stores (the call record) or looks up (a subject's erasure).
            let before2 = try await portal.rowCounts()
            let proxied = try await portal.call(.get, "/portal/integrations/\(integration)/proxy/v1/a%00b", token: admin)
            #expect(expectProblem(proxied, .unprocessableContent)["errors"]?.arrayValue?.first?.objectValue?["pointer"] == "path")
            let executed = try await portal.call(.post, "/portal/integrations/\(integration)/requests", token: admin, json: #"{"method":"GET","endpoint":"/v1/a%00b"}"#)
            #expect(expectProblem(executed, .unprocessableContent)["errors"]?.arrayValue?.first?.objectValue?["pointer"] == "/endpoint")
            for action in ["export", "erase"] {
                let subject = try await portal.call(.post, "/portal/subjects/alice%00%40example.com/\(action)", token: admin)
                #expect(expectProblem(subject, .unprocessableContent)["errors"]?.arrayValue?.first?.objectValue?["pointer"] == "id")
            }
            let after2 = try await portal.rowCounts()
            #expect(after2 == before2, "a refused request writes nothing: \(after2.filter { before2[$0.key] != $0.value })")
        }
    }

    @Test("a subject id over the documented 320 characters (code points, as sent) is a 422, however it trims or combines", arguments: [Backend.sqlite])
    func subjectIDLength(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let encode = { (id: String) in id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? id }
            let tooLong = [
                "cc" + String(repeating: "\u{0B}", count: 319),  // vertical tabs, trimmed by the service
                "a" + String(repeating: "\u{301}", count: 320),  // combining accents: one grapheme
                String(repeating: "x", count: 321),
            ]
            for id in tooLong {
                for action in ["export", "erase"] {
                    let response = try await portal.call(.post, "/portal/subjects/\(encode(id))/\(action)", token: admin)
                    let problem = expectProblem(response, .unprocessableContent)
                    #expect(problem["errors"]?.arrayValue?.first?.objectValue?["pointer"] == "id", "\(action): \(response.body.string)")
                }
            }
            let longest = try await portal.call(.post, "/portal/subjects/\(String(repeating: "x", count: 320))/export", token: admin)
            #expect(longest.status == .ok, "\(longest.body.string)")
        }
    }
}
