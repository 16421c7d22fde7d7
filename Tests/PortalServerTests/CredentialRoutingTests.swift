import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalTestSupport
import Testing

/// Changing where or how an integration's credentials are sent needs the credentials again (issue 16,
/// item 7): a token allowed to edit integrations must not be able to point stored secrets at its own host.
@Suite("Credential routing")
struct CredentialRoutingTests {
    static let apiKeyBody = #"{"name":"Keyed","type":"analytics","baseUrl":"https://api.example.com","authMethod":"api_key","credentials":{"apiKey":"k-original-123456"}}"#

    func pointers(_ problem: [String: JSONValue]) -> Set<String> {
        Set(problem["errors"]?.arrayValues.compactMap { $0.objectValue?["pointer"]?.stringValue } ?? [])
    }

    @Test("every field that moves an API key needs the key again; other changes do not", arguments: Backend.available)
    func apiKey(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let created = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.apiKeyBody)
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            let uri = "/portal/integrations/\(id)"
            let moves = [
                #""baseUrl":"https://collector.attacker.test""#,
                #""config":{"keyLocation":"query"}"#, #""config":{"keyParam":"leak"}"#, #""config":{"keyHeader":"X-Leak"}"#,
                #""config":{"keyField":"k"}"#, #""config":{"keyPrefix":"Token"}"#, #""config":{"headers":{"X-Copy":"{{apiKey}}"}}"#,
                #""config":{"oauth":{"tokenUrl":"https://collector.attacker.test/token"}}"#,
            ]
            for move in moves {
                // Without the key, or with its masked form: 422 naming the credential, nothing changed.
                for credentials in ["", #","credentials":{"apiKey":"••••3456"}"#] {
                    let problem = expectProblem(try await portal.call(.patch, uri, token: admin, json: "{\(move)\(credentials)}"), .unprocessableContent)
                    #expect(pointers(problem) == ["/credentials/apiKey"], "\(move): \(problem)")
                }
                let unchanged = try await portal.call(.get, uri, token: admin).json.objectValue ?? [:]
                #expect(unchanged["baseUrl"] == "https://api.example.com" && unchanged["authMethod"] == "api_key", "\(move)")
            }
            // With the key sent again the change is made, and the ledger says what moved.
            let moved = try await portal.call(.patch, uri, token: admin, json: #"{"baseUrl":"https://eu.api.example.com","credentials":{"apiKey":"k-again-1234567"}}"#)
            #expect(moved.status == .ok, "\(moved.body.string)")
            #expect(moved.json.objectValue?["baseUrl"] == "https://eu.api.example.com")
            #expect(try await eventually {
                let all = try await portal.call(.get, "/ledger/acme/entries?from=0&limit=1000", token: admin).json.objectValue?["entries"]?.arrayValues ?? []
                return all.contains { $0.objectValue?["entry"]?.objectValue?["data"]?.objectValue?["credentialRouting"] == ["baseUrl"] }
            })
            // Another auth method: the stored key must be sent again or removed.
            let bearer = expectProblem(try await portal.call(.patch, uri, token: admin, json: #"{"authMethod":"basic_auth","credentials":{"username":"svc","password":"p-0123456789ab"}}"#), .unprocessableContent)
            #expect(pointers(bearer) == ["/credentials/apiKey"], "\(bearer)")
            let switched = try await portal.call(.patch, uri, token: admin, json: #"{"authMethod":"basic_auth","credentials":{"username":"svc","password":"p-0123456789ab","apiKey":null}}"#)
            #expect(switched.status == .ok, "\(switched.body.string)")
            // Changes that do not move the credentials need nothing more.
            for change in [#"{"name":"Renamed"}"#, #"{"config":{"region":"eu"}}"#, #"{"rateLimits":{"requestsPerSecond":5}}"#] {
                #expect(try await portal.call(.patch, uri, token: admin, json: change).status == .ok, "\(change)")
            }
        }
    }

    @Test("an OAuth integration's token URL and base URL need its client credentials again", arguments: [Backend.sqlite])
    func oauth(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let id = try await portal.createIntegration()
            let uri = "/portal/integrations/\(id)"
            for move in [#"{"config":{"oauth":{"tokenUrl":"https://idp.attacker.test/token"}}}"#, #"{"baseUrl":"https://attacker.test"}"#] {
                let problem = expectProblem(try await portal.call(.patch, uri, token: admin, json: move), .unprocessableContent)
                #expect(pointers(problem) == ["/credentials/clientId", "/credentials/clientSecret"], "\(problem)")
                // One of the two is not enough.
                let half = move.dropLast() + #","credentials":{"clientSecret":"new-secret-123456"}}"#
                let partial = expectProblem(try await portal.call(.patch, uri, token: admin, json: String(half)), .unprocessableContent)
                #expect(pointers(partial) == ["/credentials/clientId"], "\(partial)")
            }
            let both = #"{"config":{"oauth":{"tokenUrl":"https://idp.example.com/token"}},"credentials":{"clientId":"client-id-123456","clientSecret":"new-secret-123456"}}"#
            let moved = try await portal.call(.patch, uri, token: admin, json: both)
            #expect(moved.status == .ok, "\(moved.body.string)")
        }
    }
}
