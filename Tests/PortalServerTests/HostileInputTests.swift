import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalServer
import PortalTestSupport
import Testing

/// Requests an attacker would send: none may crash the process (a trap ends every test in this run, so
/// reaching the end is the assertion that matters most), and each gets a defined answer.
@Suite("Hostile input")
struct HostileInputTests {
    /// Values for a path parameter that break naive arithmetic or parsing.
    static let hostileSegments = [
        "99999999999999999999", "9223372036854775807", "-9223372036854775808", "-1", "0", "%00", "%2e%2e",
        String(repeating: "9", count: 400), "00000000-0000-0000-0000-000000000000",
    ]

    /// Query parameters the routes read as numbers, windows, cursors and times, all out of range.
    static let hostileQuery = "limit=99999999999999999999&from=-1&to=9223372036854775807&cursor=%FF%FE&window=99999999999d"
        + "&since=9999-99-99&before=-9223372036854775808&seq=18446744073709551616&size=9223372036854775807&offset=-1"

    @Test("tile and entry-bundle indexes past Int64 or past the tree are 404, never a crash", arguments: [Backend.sqlite])
    func tileIndexes(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let auditor = portal.token("acme.auditor")
            for path in [
                "entries/x999/x999/x999/x999/x999/999", "0/x999/x999/x999/x999/x999/x999/999", "entries/x009/x223/x372/x036/x854/x775/807",
                "0/x009/x223/x372/x036/x854/x775/807", "entries/x036/x028/x797/x018/x963/968", "63/x036/x028/x797/x018/x963/968.p/255",
                "entries/x036/x028/x797/x018/x963/968.p/1", "1/999", "entries/999.p/255", "64/000", "0/-01", "0/x000/001",
            ] {
                let response = try await portal.call(.get, "/ledger/acme/tile/\(path)", token: auditor)
                #expect(response.status == .notFound, "tile/\(path): \(response.status)")
            }
            // The real tiles still answer.
            #expect(try await portal.call(.get, "/ledger/acme/checkpoint", token: auditor).status == .ok)
        }
    }

    @Test("no route answers a server error or crashes on hostile path parameters and query values", arguments: [Backend.sqlite])
    func everyRoute(backend: Backend) async throws {
        let routes = try AccessControlTests.routes
        #expect(routes.count >= 40)
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            var failures: [String] = []
            for route in routes {
                let parameters = route.path.split(separator: "/").filter { $0.hasPrefix("{") }
                let values = parameters.isEmpty ? [""] : Self.hostileSegments
                for value in values {
                    var path = route.path
                    for parameter in parameters { path = path.replacingOccurrences(of: String(parameter), with: parameter == "{slug}" ? "acme" : value) }
                    let body: String? = ["POST", "PATCH", "PUT"].contains(route.method) ? "{}" : nil
                    let response = try await portal.call(HTTPRequest.Method(route.method)!, path + "?" + Self.hostileQuery, token: admin, json: body)
                    if response.status.code >= 500 { failures.append("\(route.method) \(path): \(response.status.code) \(response.body.string.prefix(200))") }
                }
            }
            #expect(failures == [])
        }
    }

    @Test("a repeated member name is refused with a 422 naming it, and makes no token", arguments: Backend.available)
    func duplicateKeys(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let before = try await portal.rowCounts()
            for body in [#"{"role":"auditor","owner":"dup","role":"admin"}"#, #"{"role":"admin","owner":"dup","role":"auditor"}"#] {
                let problem = expectProblem(try await portal.call(.post, "/portal/tokens", token: admin, json: body), .unprocessableContent)
                let pointers = problem["errors"]?.arrayValues.compactMap { $0.objectValue?["pointer"]?.stringValue } ?? []
                #expect(pointers == ["/role"], "\(problem)")
            }
            let nested = #"{"name":"Dup","type":"analytics","baseUrl":"https://api.example.com","authMethod":"api_key","credentials":{"apiKey":"k-1234567890","apiKey":"k-other-12345"}}"#
            let problem = expectProblem(try await portal.call(.post, "/portal/integrations", token: admin, json: nested), .unprocessableContent)
            #expect(problem["errors"]?.arrayValues.compactMap { $0.objectValue?["pointer"]?.stringValue } == ["/credentials/apiKey"])
            let after = try await portal.rowCounts()
            #expect(after["api_tokens"] == before["api_tokens"] && after["integrations"] == before["integrations"], "\(before) -> \(after)")
        }
    }

    @Test("credentials with control characters are refused naming the field; PEM keys keep their line breaks", arguments: [Backend.sqlite])
    func controlCharacters(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let before = try await portal.rowCounts()
            for value in [#"k-1234567890\n"#, #"k-12345\r\n67890"#, #"k-1234567890\u0000"#, #"k-12345\u001b[2J"#, #"k-1234567890\u2028"#] {
                let body = #"{"name":"Pasted","type":"analytics","baseUrl":"https://api.example.com","authMethod":"api_key","credentials":{"apiKey":"\#(value)"}}"#
                let problem = expectProblem(try await portal.call(.post, "/portal/integrations", token: admin, json: body), .unprocessableContent)
                #expect(Set(problem["errors"]?.arrayValues.compactMap { $0.objectValue?["pointer"]?.stringValue } ?? []) == ["/credentials/apiKey"], "\(value)")
                #expect(!problem.description.contains("k-1234567890"), "the value is not echoed")
            }
            let after = try await portal.rowCounts()
            #expect(after["api_tokens"] == before["api_tokens"] && after["integrations"] == before["integrations"], "\(before) -> \(after)")
            let id = try await portal.createIntegration()
            expectProblem(
                try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: #"{"credentials":{"clientSecret":"secret-123456\n"}}"#),
                .unprocessableContent
            )
            // A rotation is held to the same rule, and names the field.
            let rotated = expectProblem(
                try await portal.call(.post, "/portal/integrations/\(id)/credentials/rotate", token: admin, json: #"{"credentials":{"apiKey":"k-rotated-1234567890\n"},"overlapSeconds":60}"#),
                .unprocessableContent
            )
            #expect(rotated["errors"]?.arrayValues.compactMap { $0.objectValue?["pointer"]?.stringValue } == ["/credentials/apiKey"], "\(rotated)")
            #expect(!rotated.description.contains("k-rotated-1234567890"), "the value is not echoed")
            // A PEM private key is multi-line by nature.
            let pem = "-----BEGIN PRIVATE KEY-----\\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\\n-----END PRIVATE KEY-----\\n"
            let jwt = #"{"name":"JWT","type":"analytics","baseUrl":"https://api.example.com","authMethod":"jwt","credentials":{"privateKey":"\#(pem)","keyId":"k1"},"config":{"jwt":{"algorithm":"ES256","issuer":"me"}}}"#
            let response = try await portal.call(.post, "/portal/integrations", token: admin, json: jwt)
            let pointers = response.json.objectValue?["errors"]?.arrayValues.compactMap { $0.objectValue?["pointer"]?.stringValue } ?? []
            #expect(!pointers.contains("/credentials/privateKey"), "\(response.body.string)")
        }
    }
}
