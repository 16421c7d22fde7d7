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

/// Data-subject requests over HTTP: a person's synced records and the disclosures of their data to a
/// provider are exported; erasure deletes them, asks the recipients to delete, leaves no readable trace of
/// the person in any table, and the ledger still verifies.
@Suite("Data-subject requests")
struct SubjectRequestTests {
    static let email = "user3@example.test"

    func waitForJob(_ portal: Portal, _ uri: String, token: String) async throws -> JSONValue {
        var job: JSONValue = .null
        _ = try await eventually {
            job = try await portal.call(.get, uri, token: token).json
            return job.objectValue?["status"] != "running"
        }
        return job
    }

    /// Rows of any table in which `needle` is readable (case-insensitive), as "table.column".
    static func readable(_ needle: String, in db: Database) async throws -> [String] {
        try await db.read { tx in
            var columns: [(String, String, String)] = []
            if tx.backend == .sqlite {
                let tables = try await tx.raw("SELECT name FROM sqlite_master WHERE type = 'table'").all().map { try $0.decode(column: "name", as: String.self) }
                for table in tables {
                    for row in try await tx.raw("SELECT name, type FROM pragma_table_info(\(bind: table))").all() {
                        columns.append((table, try row.decode(column: "name", as: String.self), try row.decode(column: "type", as: String.self)))
                    }
                }
            } else {
                for row in try await tx.raw("SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'").all() {
                    columns.append((try row.decode(column: "table_name", as: String.self), try row.decode(column: "column_name", as: String.self), try row.decode(column: "data_type", as: String.self)))
                }
            }
            var found: [String] = []
            for (table, column, type) in columns {
                let text = type == "bytea" ? "encode(\"\(column)\", 'escape')" : "CAST(\"\(column)\" AS TEXT)"
                let n = try await tx.raw("SELECT COUNT(*) AS n FROM \"\(unsafeRaw: table)\" WHERE LOWER(\(unsafeRaw: text)) LIKE \(bind: "%" + needle.lowercased() + "%")").first()?
                    .decode(column: "n", as: Int.self) ?? 0
                if n > 0 { found.append("\(table).\(column)") }
            }
            return found
        }
    }

    @Test("export finds records and disclosures; erasure removes every readable trace, asks the recipients, and the ledger verifies", arguments: Backend.available)
    func exportThenErase(backend: Backend) async throws {
        try await FakeProvider.with { provider in
            try await withPortal(backend) { portal in
                let admin = portal.token("acme.admin")
                let officer = portal.token("acme.compliance")
                provider.seed(12)
                let people = try await portal.call(.post, "/portal/integrations", token: admin, json: """
                    {"name":"Directory","type":"identity_provider","baseUrl":"\(provider.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-0123456789"},
                     "config":{"subjectDeletion":{"method":"DELETE","endpoint":"/users/{subjectId}"}},
                     "syncConfig":{"entities":{"people":{"endpoint":"/cursor/users","itemsPath":"/data","subjectIdField":"email",
                       "pagination":{"style":"cursor","cursorParam":"after","nextCursorPath":"/meta/next","pageSizeParam":"limit","pageSize":5}}}}}
                    """)
                #expect(people.status == .created, "\(people.body.string)")
                let peopleID = try #require(people.json.objectValue?["id"]?.stringValue)
                let started = try await portal.call(.post, "/portal/integrations/\(peopleID)/sync", token: admin, json: #"{"syncType":"full","entities":["people"]}"#)
                let jobID = try #require(started.json.objectValue?["jobs"]?.arrayValue?.first?.objectValue?["id"]?.stringValue, "\(started.body.string)")
                let job = try await waitForJob(portal, "/portal/integrations/\(peopleID)/sync/jobs/\(jobID)", token: admin)
                #expect(job.objectValue?["status"] == "completed", "\(job)")

                // A CRM the person's data is sent to (bodies kept), which also takes deletion requests.
                let crm = try await portal.call(.post, "/portal/integrations", token: admin, json: """
                    {"name":"CRM","type":"enterprise","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-crm-0123456789"},
                     "config":{"storeBodies":true,"subjectDeletion":{"method":"DELETE","endpoint":"/echo/contacts/{subjectId}"}}}
                    """)
                let crmID = try #require(crm.json.objectValue?["id"]?.stringValue)
                let sent = try await portal.call(.post, "/portal/integrations/\(crmID)/requests", token: admin, json: """
                    {"method":"POST","endpoint":"/echo/contacts","body":{"email":"\(Self.email)","plan":"pro"},"dataSubjects":["\(Self.email)"]}
                    """)
                #expect(sent.status == .ok, "\(sent.body.string)")
                let badSubjects = try await portal.call(.post, "/portal/integrations/\(crmID)/requests", token: admin, json: #"{"method":"GET","endpoint":"/echo/x","dataSubjects":"me"}"#)
                expectProblem(badSubjects, .unprocessableContent)
                #expect(try await Self.readable(Self.email, in: portal.services.database).contains("integration_requests.request_body"))
                // A webhook from the CRM about the person: its body is stored (sealed under the organization's key).
                let hook = try await portal.call(.post, "/portal/integrations/\(crmID)/webhooks", token: admin, json: """
                    {"endpoint":"/webhooks/crm-people","secret":"crm-webhook-secret-1","signatureHeader":"X-CRM-Signature","eventIdHeader":"X-Event-Id"}
                    """)
                #expect(hook.status == .created, "\(hook.body.string)")
                let event = #"{"type":"contact.updated","data":{"email":"\#(Self.email)","name":"User Three"}}"#
                let delivered = try await WebhookRouteTests().deliver(portal, "/webhooks/acme/crm-people", event, secret: "crm-webhook-secret-1", eventID: "evt-subject-1")
                #expect(delivered.status == .ok, "\(delivered.body.string)")
                let other = #"{"type":"contact.updated","data":{"email":"someone@example.test"}}"#
                #expect(try await WebhookRouteTests().deliver(portal, "/webhooks/acme/crm-people", other, secret: "crm-webhook-secret-1", eventID: "evt-other-1").status == .ok)

                // Export (Art. 15/20): the record, opened, and the dated disclosure to the CRM.
                let path = "/portal/subjects/\(Self.email.replacingOccurrences(of: "@", with: "%40"))"
                expectProblem(try await portal.call(.post, path + "/export", token: portal.token("acme.auditor")), .forbidden)
                let export = try await portal.call(.post, path + "/export", token: officer)
                #expect(export.status == .ok, "\(export.body.string)")
                let body = try #require(export.json.objectValue)
                let commitment = try #require(body["subject"]?.objectValue?["commitment"]?.stringValue)
                #expect(commitment.count == 64 && !commitment.contains("user3"))
                #expect(body["records"]?.arrayValue?.count == 1)
                #expect(body["records"]?.arrayValue?.first?.objectValue?["data"]?.objectValue?["email"] == .string(Self.email))
                let disclosures = body["disclosures"]?.arrayValue ?? []
                #expect(disclosures.count == 1 && disclosures.first?.objectValue?["recipient"] == "CRM" && disclosures.first?.objectValue?["endpoint"] == "/echo/contacts")
                #expect(disclosures.first?.objectValue?["seq"] != nil && disclosures.first?.objectValue?["time"] != nil)
                // Another organization knows nothing of the person.
                let elsewhere = try await portal.call(.post, path + "/export", token: portal.token("globex.admin"))
                #expect(elsewhere.json.objectValue?["records"]?.arrayValue?.isEmpty == true && elsewhere.json.objectValue?["disclosures"]?.arrayValue?.isEmpty == true)

                // Erasure (Art. 17/19).
                let erased = try await portal.call(.post, path + "/erase", token: officer)
                #expect(erased.status == .ok, "\(erased.body.string)")
                let report = try #require(erased.json.objectValue)
                #expect(report["recordsDeleted"] == 1 && report["keyDestroyed"] == true && report["commitment"] == .string(commitment))
                #expect(report["webhookPayloadsErased"] == 1, "only the event about the person")
                if case .int(let cleared)? = report["requestBodiesCleared"] { #expect(cleared >= 1) } else { Issue.record("requestBodiesCleared: \(String(describing: report["requestBodiesCleared"]))") }
                let recipients = report["recipients"]?.arrayValue?.compactMap(\.objectValue) ?? []
                #expect(recipients.first { $0["name"] == "CRM" }?["outcome"] == "deleted")
                #expect(recipients.first { $0["name"] == "Directory" }?["outcome"] != nil)
                #expect(portal.upstream.calls("/echo/contacts/\(Self.email)") == 1, "the CRM was asked to delete the contact")

                // Nothing readable about the person is left in any table, and the ledger still verifies.
                let left = try await Self.readable(Self.email, in: portal.services.database)
                #expect(left.isEmpty, "still readable in: \(left)")
                let verification = try await portal.services.ledgerVerification.verify(
                    organizationID: portal.acme.id, slug: "acme", publishedDirectory: nil, actor: "system:test"
                )
                #expect(verification.passed, "\(String(describing: verification.failure))")
                let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database)
                let subjectEntries = entries.filter { $0.type.hasPrefix("subject.") }
                #expect(subjectEntries.map(\.type) == ["subject.request_received", "subject.exported", "subject.request_received", "subject.erased"])
                #expect(!subjectEntries.contains { $0.json.sortedText.lowercased().contains("user3") })

                // A later export finds nothing and says the subject was erased; the commitment links to no one.
                let again = try await portal.call(.post, path + "/export", token: officer)
                #expect(again.json.objectValue?["records"]?.arrayValue?.isEmpty == true)
                #expect(again.json.objectValue?["subject"]?.objectValue?["erased"] == true && again.json.objectValue?["subject"]?.objectValue?["commitment"] == .null)
            }
        }
    }
}
