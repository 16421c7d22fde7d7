import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import Testing

/// GDPR Art. 30 processing metadata on integrations: created, read, replaced and removed through the
/// integration API, checked field by field, and every change ledgered with before and after digests.
@Suite("Processing metadata (Art. 30)")
struct ProcessingRecordTests {
    static let record = """
        {"purposes":[{"purpose":"Customer relationship management","lawfulBasis":"contract"},{"purpose":"Newsletter","lawfulBasis":"consent"}],
         "dataSubjectCategories":["customers"],"personalDataCategories":["contact details","purchase history"],
         "recipientRole":"processor","processingLocations":["IE"],"destinationCountries":["US","IE"],
         "transferMechanism":{"type":"sccs","module":2},"retention":"36 months after the contract ends",
         "dpa":{"reference":"DPA-2026-014","date":"2026-03-01"},"securityMeasures":["encryption at rest","SSO"]}
        """

    @Test("created with the integration, replaced by PATCH, removed by null; ledgered; bad records are 422s naming each field", arguments: Backend.available)
    func lifecycle(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let created = try await portal.call(.post, "/portal/integrations", token: admin, json: """
                {"name":"CRM","type":"enterprise","baseUrl":"https://api.example.com","authMethod":"api_key","credentials":{"apiKey":"k-crm-0123456789"},
                 "processing":\(Self.record)}
                """)
            #expect(created.status == .created, "\(created.body.string)")
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            let processing = try #require(created.json.objectValue?["processing"]?.objectValue)
            #expect(processing["recipientRole"] == "processor" && processing["transferMechanism"]?.objectValue?["module"] == 2)
            #expect(processing["purposes"]?.arrayValue?.count == 2 && processing["destinationCountries"] == ["US", "IE"])
            let read = try await portal.call(.get, "/portal/integrations/\(id)", token: portal.token("acme.auditor"))
            #expect(read.json.objectValue?["processing"] == created.json.objectValue?["processing"])

            let patched = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: """
                {"processing":{"recipientRole":"independent_controller","destinationCountries":["BR"],"transferMechanism":{"type":"derogation","derogation":"explicit consent"}}}
                """)
            #expect(patched.status == .ok, "\(patched.body.string)")
            #expect(patched.json.objectValue?["processing"]?.objectValue?["recipientRole"] == "independent_controller")
            #expect(patched.json.objectValue?["processing"]?.objectValue?["purposes"] == nil, "PATCH replaces the record")
            let removed = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: #"{"processing":null}"#)
            #expect(removed.status == .ok && removed.json.objectValue?["processing"] == nil)

            let bad = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: """
                {"processing":{"purposes":[{"purpose":"x","lawfulBasis":"because"}],"recipientRole":"vendor","destinationCountries":["usa"],
                 "transferMechanism":{"type":"sccs"},"dpa":{"reference":"D-1","date":"March 2026"},"colour":"red"}}
                """)
            let problem = expectProblem(bad, .unprocessableContent)
            let pointers = Set((problem["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue })
            #expect(pointers == [
                "/processing/purposes/0/lawfulBasis", "/processing/recipientRole", "/processing/destinationCountries/0",
                "/processing/transferMechanism/module", "/processing/dpa/date", "/processing/colour",
            ], "\(pointers)")

            let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database)
            let updates = entries.filter { $0.type == "integration.updated" && $0.integration == id }
            #expect(updates.count == 2)
            for update in updates {
                let data = update.data.objectValue ?? [:]
                #expect(data["changed"] == ["processing"] && data["before"] != data["after"])
            }
        }
    }
}
