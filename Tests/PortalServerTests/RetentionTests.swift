import Compliance
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import Monitoring
import PortalCore
import PortalServer
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// Retention: periods per organization over HTTP, applied by the retention service: old request logs
/// deleted, old bodies cleared, old webhook bodies expired, each removal ledgered in its transaction; what
/// is recent, still pending, or another organization's is untouched; the ledger is never touched.
@Suite("Retention")
struct RetentionTests {
    @Test("periods are set over HTTP and applied: logs deleted, bodies cleared, webhook bodies expired, all ledgered", arguments: Backend.available)
    func applied(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let officer = portal.token("acme.compliance")
            let defaults = try await portal.call(.get, "/portal/retention", token: portal.token("acme.auditor"))
            #expect(defaults.json.objectValue?["isDefault"] == true && defaults.json.objectValue?["requestLogsDays"] == 365)
            let bad = expectProblem(try await portal.call(.put, "/portal/retention", token: officer, json: #"{"requestLogsDays":0,"storedBodiesDays":"30","extra":1}"#), .unprocessableContent)
            let pointers = Set((bad["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue })
            #expect(pointers == ["/extra", "/requestLogsDays", "/storedBodiesDays", "/webhookPayloadsDays"], "\(pointers)")
            expectProblem(try await portal.call(.put, "/portal/retention", token: portal.token("acme.operator"), json: #"{"requestLogsDays":1,"storedBodiesDays":1,"webhookPayloadsDays":1}"#), .forbidden)
            let set = try await portal.call(.put, "/portal/retention", token: officer, json: #"{"requestLogsDays":90,"storedBodiesDays":30,"webhookPayloadsDays":7}"#)
            #expect(set.status == .ok && set.json.objectValue?["isDefault"] == false && set.json.objectValue?["requestLogsDays"] == 90, "\(set.body.string)")

            let integration = try #require(UUID(uuidString: try await portal.createIntegration(name: "CRM")))
            let other = try await portal.call(.post, "/portal/integrations", token: portal.token("globex.admin"), json: """
                {"name":"G","type":"analytics","baseUrl":"https://api.example.com","authMethod":"api_key","credentials":{"apiKey":"k-globex-123456"}}
                """)
            let globexIntegration = try #require(other.json.objectValue?["id"]?.stringValue.flatMap(UUID.init(uuidString:)))
            let endpoint = try await portal.call(.post, "/portal/integrations/\(integration.uuidString.lowercased())/webhooks", token: portal.token("acme.admin"), json: #"{"endpoint":"/webhooks/ret","secret":"ret-secret-1"}"#)
            let endpointID = try #require(endpoint.json.objectValue?["id"]?.stringValue.flatMap(UUID.init(uuidString:)))
            let now = Date()
            func day(_ n: Double) -> Date { now.addingTimeInterval(-n * 86_400) }
            try await portal.services.database.write { db in
                var rows: [IntegrationRequestRecord] = []
                for age: Double in [200, 120, 91] { rows.append(.init(id: UUID(), organizationID: portal.acme.id, integrationID: integration, method: "GET", endpoint: "/old", requestBody: nil, responseStatus: 200, responseBody: nil, durationMs: 5, errorMessage: nil, createdAt: day(age))) }
                for age: Double in [60, 31] { rows.append(.init(id: UUID(), organizationID: portal.acme.id, integrationID: integration, method: "POST", endpoint: "/bodies", requestBody: ["email": "a@example.test"], responseStatus: 200, responseBody: ["ok": true], durationMs: 5, errorMessage: nil, createdAt: day(age))) }
                rows.append(.init(id: UUID(), organizationID: portal.acme.id, integrationID: integration, method: "POST", endpoint: "/recent", requestBody: ["email": "b@example.test"], responseStatus: 200, responseBody: nil, durationMs: 5, errorMessage: nil, createdAt: day(2)))
                rows.append(.init(id: UUID(), organizationID: portal.globex.id, integrationID: globexIntegration, method: "GET", endpoint: "/theirs", requestBody: ["k": "v"], responseStatus: 200, responseBody: nil, durationMs: 5, errorMessage: nil, createdAt: day(500)))
                try await IntegrationRequestStore(db).insert(rows)
                var events: [WebhookEventRecord] = []
                for (status, age) in [(.processed, 10.0), (.failed, 8.0), (.pending, 30.0), (.processed, 1.0)] as [(WebhookEventStatus, Double)] {
                    let id = UUID()
                    events.append(WebhookEventRecord(
                        id: id, organizationID: portal.acme.id, integrationID: integration, endpointID: endpointID, eventType: "user.updated", payload: ["sealed": "x"],
                        signature: nil, status: status, errorMessage: nil, createdAt: day(age), providerEventID: nil, dedupKey: "ret:\(id)", headers: [:], bodyDigest: "00",
                        // The pending one waits for a retry tomorrow, so the workers leave it alone during the test.
                        availableAt: status == .pending ? now.addingTimeInterval(86_400) : day(age)
                    ))
                }
                _ = try await WebhookEventStore(db).insert(events)
            }

            let first = try #require(try await portal.services.retention.applyAll()["acme"])
            #expect(first.requestLogsDeleted == 3 && first.bodiesCleared == 2 && first.webhookPayloadsExpired == 2, "\(first)")
            let again = try #require(try await portal.services.retention.applyAll()["acme"])
            #expect(again == .init(), "a second run finds nothing more")
            // Globex keeps the defaults (365 days): its 500-day-old row goes, on its own policy.
            let counts = try await portal.services.database.read { db in
                (
                    try await db.raw("SELECT COUNT(*) AS n FROM integration_requests WHERE organization_id = \(bind: portal.acme.id)").first()!.decode(column: "n", as: Int.self),
                    try await db.raw("SELECT COUNT(*) AS n FROM integration_requests WHERE organization_id = \(bind: portal.acme.id) AND request_body IS NOT NULL").first()!.decode(column: "n", as: Int.self),
                    try await db.raw("SELECT COUNT(*) AS n FROM integration_requests WHERE organization_id = \(bind: portal.globex.id)").first()!.decode(column: "n", as: Int.self)
                )
            }
            #expect(counts.0 == 3 && counts.1 == 1 && counts.2 == 0, "\(counts)")
            let pending = try await portal.services.database.read { db in
                try await db.raw("SELECT status, CAST(payload AS TEXT) AS p FROM webhook_events WHERE organization_id = \(bind: portal.acme.id)").all().map {
                    (try $0.decode(column: "status", as: String.self), try $0.decode(column: "p", as: String.self))
                }
            }
            #expect(pending.filter { $0.1.contains("$expired") }.count == 2 && pending.filter { $0.0 == "pending" }.allSatisfy { !$0.1.contains("$expired") })

            let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database)
            let applied = entries.filter { $0.type == "retention.applied" }
            #expect(Set(applied.compactMap { $0.data.objectValue?["action"]?.stringValue }) == ["bodies_cleared", "rows_deleted", "payloads_expired"])
            #expect(applied.first { $0.data.objectValue?["action"] == "rows_deleted" }?.data.objectValue?["rows"] == 3)
            #expect(entries.contains { $0.type == "retention.updated" })
            let verification = try await portal.services.ledgerVerification.verify(organizationID: portal.acme.id, slug: "acme", publishedDirectory: nil, actor: "system:test")
            #expect(verification.passed)
        }
    }
}
