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

@Suite("Record of processing (Art. 30 register)")
struct ProcessingRegisterTests {
    func integration(_ portal: Portal, _ name: String, processing: String?) async throws -> String {
        let response = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
            {"name":"\(name)","type":"enterprise","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-reg-0123456789"}\(processing.map { ",\"processing\":\($0)" } ?? "")}
            """)
        #expect(response.status == .created, "\(response.body.string)")
        return try #require(response.json.objectValue?["id"]?.stringValue)
    }

    @Test("declared beside observed: calls, hosts, calls naming subjects; undeclared recipients and transfers without a mechanism flagged", arguments: Backend.available)
    func register(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let crm = try await integration(portal, "CRM", processing: #"{"purposes":[{"purpose":"CRM","lawfulBasis":"contract"}],"recipientRole":"processor","destinationCountries":["US"],"transferMechanism":{"type":"sccs","module":2},"dpa":{"reference":"DPA-1","date":"2026-01-15"}}"#)
            let analytics = try await integration(portal, "Analytics", processing: nil)
            let chat = try await integration(portal, "Chat", processing: #"{"purposes":[{"purpose":"support","lawfulBasis":"legitimate_interests"}],"recipientRole":"independent_controller","destinationCountries":["DE","US"]}"#)
            let token = portal.token("acme.admin")
            for subjects in [#"["a@example.test"]"#, #"["b@example.test"]"#, "[]"] {
                let r = try await portal.call(.post, "/portal/integrations/\(crm)/requests", token: token, json: #"{"method":"GET","endpoint":"/echo/x","dataSubjects":\#(subjects)}"#)
                #expect(r.status == .ok)
            }
            #expect(try await portal.call(.post, "/portal/integrations/\(analytics)/requests", token: token, json: #"{"method":"GET","endpoint":"/echo/y"}"#).status == .ok)

            let day = 86_400.0
            let today = String(Timestamp.rfc3339(Date()).prefix(10))
            let tomorrow = String(Timestamp.rfc3339(Date().addingTimeInterval(day)).prefix(10))
            let response = try await portal.call(.get, "/portal/compliance/processing-register?from=\(today)&to=\(tomorrow)", token: portal.token("acme.auditor"))
            #expect(response.status == .ok, "\(response.body.string)")
            let body = try #require(response.json.objectValue)
            let records = Dictionary(uniqueKeysWithValues: (body["records"]?.arrayValue ?? []).compactMap(\.objectValue).map { ($0["name"]?.stringValue ?? "", $0) })
            let crmObserved = records["CRM"]?["observed"]?.objectValue
            #expect(crmObserved?["calls"] == 3 && crmObserved?["callsNamingDataSubjects"] == 2 && crmObserved?["destinationHosts"] == ["127.0.0.1"])
            #expect(records["CRM"]?["flags"] == [])
            #expect(records["Analytics"]?["flags"] == ["undeclared_recipient"] && records["Analytics"]?["observed"]?.objectValue?["calls"] == 1)
            #expect(records["Chat"]?["flags"] == ["transfer_without_mechanism"] && records["Chat"]?["observed"]?.objectValue?["calls"] == 0)
            let roles = body["recipientsByRole"]?.objectValue ?? [:]
            #expect(roles["processor"]?.arrayValue?.first?.objectValue?["integrationId"] == .string(crm))
            #expect(roles["undeclared"]?.arrayValue?.first?.objectValue?["integrationId"] == .string(analytics))
            #expect(roles["independent_controller"]?.arrayValue?.first?.objectValue?["integrationId"] == .string(chat))
            let transfers = (body["transfers"]?.arrayValue ?? []).compactMap { $0.objectValue?["name"]?.stringValue }
            #expect(Set(transfers) == ["CRM", "Chat"])
            #expect(!response.body.string.contains("a@example.test"), "the register names no data subject")

            let past = try await portal.call(.get, "/portal/compliance/processing-register?from=2020-01-01&to=2020-01-31", token: portal.token("acme.compliance"))
            #expect((past.json.objectValue?["records"]?.arrayValue ?? []).allSatisfy { $0.objectValue?["observed"]?.objectValue?["calls"] == 0 })
            expectProblem(try await portal.call(.get, "/portal/compliance/processing-register?from=2026-13-01&to=2026-12-31", token: token), .unprocessableContent)
            expectProblem(try await portal.call(.get, "/portal/compliance/processing-register?from=2026-02-01&to=2026-01-31", token: token), .unprocessableContent)
            expectProblem(try await portal.call(.get, "/portal/compliance/processing-register?from=\(today)&to=\(tomorrow)", token: portal.token("acme.operator")), .forbidden)
        }
    }
}
