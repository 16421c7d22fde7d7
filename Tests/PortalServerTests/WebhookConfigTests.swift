import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalTestSupport
import Testing

/// The seed's `webhookConfig` on an integration registers the endpoint it describes (issue 16, item 21).
@Suite("webhookConfig registers its endpoint")
struct WebhookConfigTests {
    static func body(name: String, endpoint: String, secret: String = "webhook-secret-value") -> String {
        #"{"name":"\#(name)","type":"enterprise","baseUrl":"https://api.example.com","authMethod":"api_key","credentials":{"apiKey":"k-0123456789ab"},"webhookConfig":{"endpoint":"\#(endpoint)","events":["user.created"],"secret":"\#(secret)"}}"#
    }

    @Test("created with the integration; a taken name is a 409 and a bad one a 422, with nothing written", arguments: Backend.available)
    func registers(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let created = try await portal.call(.post, "/portal/integrations", token: admin, json: Self.body(name: "CRM", endpoint: "/webhooks/crm"))
            #expect(created.status == .created, "\(created.body.string)")
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            let endpoints = try await portal.call(.get, "/portal/integrations/\(id)/webhooks", token: admin).json
            let items = endpoints.objectValue?["items"]?.arrayValue ?? endpoints.arrayValue ?? []
            #expect(items.count == 1, "\(endpoints)")
            #expect(items.first?.objectValue?["path"] == "/webhooks/acme/crm", "\(endpoints)")
            #expect(!"\(endpoints)".contains("webhook-secret-value"), "the secret is never shown")

            let before = try await portal.rowCounts()
            expectProblem(try await portal.call(.post, "/portal/integrations", token: admin, json: Self.body(name: "CRM 2", endpoint: "/webhooks/crm")), .conflict)
            let short = expectProblem(try await portal.call(.post, "/portal/integrations", token: admin, json: Self.body(name: "CRM 3", endpoint: "/webhooks/other", secret: "short")), .unprocessableContent)
            #expect(short["errors"]?.arrayValues.compactMap { $0.objectValue?["pointer"]?.stringValue }.contains("/webhookConfig/secret") == true, "\(short)")
            let after = try await portal.rowCounts()
            #expect(after["integrations"] == before["integrations"], "no integration is left behind: \(before) -> \(after)")
        }
    }
}
