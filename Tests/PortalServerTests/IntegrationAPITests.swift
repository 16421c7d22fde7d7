import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalTestSupport
import Testing

@Suite("Integration management API")
struct IntegrationAPITests {
    @Test("create answers 201 with the masked resource; get, status and list agree", arguments: Backend.available)
    func createAndRead(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let created = try await portal.call(.post, "/portal/integrations", token: admin, json: """
                {"name":"Salesforce CRM","type":"enterprise","baseUrl":"https://api.salesforce.com","authMethod":"oauth2",
                 "credentials":{"clientId":"3MVG9-client-id-42","clientSecret":"s3cr3t-value-9876"},
                 "config":{"oauth":{"tokenUrl":"https://login.salesforce.com/services/oauth2/token","scopes":["api","refresh_token"]}},"rateLimits":{"requestsPerSecond":5,"burst":10},
                 "webhookConfig":{"endpoint":"/webhooks/salesforce","events":["user.created","user.updated"],"secret":"webhook-secret-value"}}
                """)
            #expect(created.status == .created)
            let body = try #require(created.json.objectValue)
            let id = try #require(body["id"]?.stringValue)
            #expect(created.headers[.location] == "/portal/integrations/\(id)")
            #expect(body["status"] == "active")
            #expect(body["credentials"] == ["clientId": "••••d-42", "clientSecret": "••••9876"])
            #expect(body["webhookConfig"]?.objectValue?["secret"] == "••••alue")
            #expect(body["rateLimits"] == ["requestsPerSecond": 5, "burst": 10])
            #expect(body["metrics"]?.objectValue?["totalRequests"] == 0)

            let fetched = try await portal.call(.get, "/portal/integrations/\(id)", token: portal.token("acme.auditor"))
            #expect(fetched.json == created.json)
            let status = try await portal.call(.get, "/portal/integrations/\(id)/status", token: portal.token("acme.compliance"))
            #expect(status.json.objectValue?["status"] == "active")
            #expect(status.json.objectValue?["usable"] == true)

            // Defaults of DESIGN section 7 when no rate limits are given.
            let other = try await portal.createIntegration(name: "Okta")
            let otherBody = try await portal.call(.get, "/portal/integrations/\(other)", token: admin)
            #expect(otherBody.json.objectValue?["rateLimits"] == ["requestsPerSecond": 10, "burst": 20])

            let duplicate = try await portal.call(.post, "/portal/integrations", token: admin, json: """
                {"name":"Salesforce CRM","type":"enterprise","baseUrl":"https://x.example","authMethod":"api_key","credentials":{"apiKey":"k"}}
                """)
            expectProblem(duplicate, .conflict)
        }
    }

    @Test("PATCH changes only what is given; masked credentials stay; null removes", arguments: Backend.available)
    func patch(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.operator")
            let id = try await portal.createIntegration(name: "HubSpot", token: admin)
            let before = try await portal.call(.get, "/portal/integrations/\(id)", token: admin).json.objectValue!
            let masked = before["credentials"]!

            // Send the masked credentials back with one new field, rename, and merge config.
            let patched = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: """
                {"name":"HubSpot EU","credentials":{"clientId":"\(masked.objectValue!["clientId"]!.stringValue!)","clientSecret":"\(masked.objectValue!["clientSecret"]!.stringValue!)","audience":"https://api.hubapi.eu"},"config":{"region":"eu","tier":null}}
                """, contentType: "application/merge-patch+json")
            #expect(patched.status == .ok, "\(patched.body.string)")
            let after = try #require(patched.json.objectValue)
            #expect(after["name"] == "HubSpot EU")
            #expect(after["credentials"] == ["clientId": "••••3456", "clientSecret": "••••cdef", "audience": "••••i.eu"])
            #expect(after["config"] == ["region": "eu"])
            #expect(after["type"] == before["type"])
            #expect(after["createdAt"] == before["createdAt"])

            // Removing a required credential is refused and changes nothing.
            let broken = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: #"{"credentials":{"clientId":null}}"#)
            #expect(expectProblem(broken, .unprocessableContent)["errors"]?.arrayValues.first?.objectValue?["pointer"] == "/credentials/clientId")
            let unchanged = try await portal.call(.get, "/portal/integrations/\(id)", token: admin)
            #expect(unchanged.json.objectValue?["credentials"] == after["credentials"])

            // Disable and re-enable; the service-managed statuses cannot be set.
            let disabled = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: #"{"status":"inactive"}"#)
            #expect(disabled.json.objectValue?["status"] == "inactive")
            expectProblem(try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: #"{"status":"error"}"#), .unprocessableContent)
        }
    }

    @Test("DELETE is a soft delete that keeps the record readable", arguments: Backend.available)
    func softDelete(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let id = try await portal.createIntegration(name: "Dropbox Business")
            #expect(try await portal.call(.delete, "/portal/integrations/\(id)", token: admin).status == .noContent)
            #expect(try await portal.call(.delete, "/portal/integrations/\(id)", token: admin).status == .noContent)
            let record = try await portal.call(.get, "/portal/integrations/\(id)", token: admin).json.objectValue!
            #expect(record["status"] == "inactive")
            #expect(record["deletedAt"]?.stringValue?.hasSuffix("Z") == true)
            let status = try await portal.call(.get, "/portal/integrations/\(id)/status", token: admin).json.objectValue!
            #expect(status["usable"] == false)
            #expect(try await portal.call(.get, "/portal/integrations", token: admin).json.objectValue?["items"]?.arrayIDs == [])
            #expect(try await portal.call(.get, "/portal/integrations?includeDeleted=true", token: admin).json.objectValue?["items"]?.arrayIDs == [id])
            expectProblem(try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: #"{"name":"x"}"#), .conflict)
            // The name is free again.
            _ = try await portal.createIntegration(name: "Dropbox Business")
            expectProblem(try await portal.call(.delete, "/portal/integrations/\(UUID().uuidString)", token: admin), .notFound)
            expectProblem(try await portal.call(.get, "/portal/integrations/not-a-uuid", token: admin), .notFound)
        }
    }

    @Test("lists page newest first with a cursor, without gaps or repeats", arguments: Backend.available)
    func pagination(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            var created: [String] = []
            for i in 0..<7 { created.append(try await portal.createIntegration(name: "I\(i)")) }
            var seen: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let uri = "/portal/integrations?limit=3" + (cursor.map { "&cursor=\($0)" } ?? "")
                let page = try await portal.call(.get, uri, token: portal.token("acme.auditor")).json.objectValue!
                seen += page["items"]?.arrayIDs ?? []
                cursor = page["nextCursor"]?.stringValue
                pages += 1
            } while cursor != nil && pages < 10
            #expect(pages == 3)
            #expect(seen == created.reversed())
            expectProblem(try await portal.call(.get, "/portal/integrations?limit=0", token: portal.token("acme.auditor")), .unprocessableContent)
            expectProblem(try await portal.call(.get, "/portal/integrations?limit=1001", token: portal.token("acme.auditor")), .unprocessableContent)
            expectProblem(try await portal.call(.get, "/portal/integrations?cursor=zzz", token: portal.token("acme.auditor")), .unprocessableContent)
        }
    }

    @Test("the list filters by type and status; an unknown value is a 422 naming the parameter", arguments: Backend.available)
    func listFilters(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let enterprise = try await portal.createIntegration(name: "Enterprise one")
            let created = try await portal.call(.post, "/portal/integrations", token: admin, json: BadInputTests.valid)
            let okta = try #require(created.json.objectValue?["id"]?.stringValue)
            #expect(try await portal.call(.patch, "/portal/integrations/\(okta)", token: admin, json: #"{"status":"inactive"}"#).status == .ok)
            func ids(_ query: String) async throws -> [String] {
                let listed = try await portal.call(.get, "/portal/integrations\(query)", token: admin)
                #expect(listed.status == .ok, "\(listed.body.string)")
                return (listed.json.objectValue?["items"]?.arrayValue ?? []).compactMap { $0.objectValue?["id"]?.stringValue }
            }
            #expect(try await ids("?type=enterprise") == [enterprise])
            #expect(try await ids("?type=identity_provider") == [okta])
            #expect(try await ids("?status=inactive") == [okta])
            #expect(try await ids("?status=active&type=enterprise") == [enterprise])
            #expect(try await ids("?status=pending").isEmpty)
            // Scoped like every list: globex sees none of acme's.
            let foreign = try await portal.call(.get, "/portal/integrations?type=enterprise", token: portal.token("globex.admin"))
            #expect(foreign.json.objectValue?["items"]?.arrayValue?.isEmpty == true)
            for (query, pointer) in [("?type=crm", "?type"), ("?status=deleted", "?status")] {
                let bad = try await portal.call(.get, "/portal/integrations\(query)", token: admin)
                let pointers = expectProblem(bad, .unprocessableContent)["errors"]?.arrayValue?.compactMap { $0.objectValue?["pointer"]?.stringValue }
                #expect(pointers == [pointer], "\(query)")
            }
        }
    }
}

@Suite("Token management API")
struct TokenAPITests {
    @Test("an admin issues a token once; it works; listing never shows it; revocation stops it", arguments: Backend.available)
    func lifecycle(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let issued = try await portal.call(.post, "/portal/tokens", token: admin, json: #"{"role":"operator","owner":"dana@acme.example","expiresIn":"30d","description":"deploy bot"}"#)
            #expect(issued.status == .created)
            #expect(issued.headers[.cacheControl] == "no-store")
            let body = try #require(issued.json.objectValue)
            let token = try #require(body["token"]?.stringValue)
            let id = try #require(body["id"]?.stringValue)
            #expect(token.hasPrefix("ptk_") && token.count == 47)
            #expect(body["role"] == "operator" && body["owner"] == "dana@acme.example" && body["state"] == "active")
            #expect(body["expiresAt"]?.stringValue != nil)

            let whoami = try await portal.call(.get, "/portal/whoami", token: token).json.objectValue!
            #expect(whoami["role"] == "operator" && whoami["organization"] == "acme" && whoami["tokenId"] == .string(id))

            let list = try await portal.call(.get, "/portal/tokens", token: admin)
            #expect(!list.body.string.contains(token))
            #expect(!list.body.string.contains("token\":"))
            #expect(list.json.objectValue?["items"]?.arrayIDs.contains(id) == true)

            #expect(try await portal.call(.delete, "/portal/tokens/\(id)", token: admin).status == .noContent)
            expectProblem(try await portal.call(.get, "/portal/whoami", token: token), .unauthorized)
            let states = try await portal.call(.get, "/portal/tokens", token: admin).json.objectValue?["items"]?.arrayValues
            #expect(states?.first { $0.objectValue?["id"] == .string(id) }?.objectValue?["state"] == "revoked")

            let bad = try await portal.call(.post, "/portal/tokens", token: admin, json: #"{"role":"root","owner":"","expiresIn":"forever"}"#)
            let pointers = Set(expectProblem(bad, .unprocessableContent)["errors"]?.arrayValues.compactMap { $0.objectValue?["pointer"]?.stringValue } ?? [])
            #expect(pointers == ["/role", "/owner", "/expiresIn"])
        }
    }
}
