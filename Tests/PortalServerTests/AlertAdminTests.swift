import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// Silences and receivers over HTTP: created, listed (secrets masked), ended, isolated per organization,
/// ledgered; bad bodies are problems naming the field.
@Suite("Alert silences and receivers")
struct AlertAdminTests {
    @Test("silences and receivers: created, listed, ended; bad bodies are 422s naming the field", arguments: Backend.available)
    func silencesAndReceivers(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let created = try await portal.call(.post, "/portal/alerts/silences", token: admin, json: """
                {"matchers":[{"name":"integration_name","value":"CRM.*","isRegex":true},{"name":"severity","value":"info","isEqual":false}],"duration":"2h","comment":"provider maintenance"}
                """)
            #expect(created.status == .created, "\(created.body.string)")
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            #expect(created.json.objectValue?["matchers"]?.arrayValue?.first?.objectValue?["isRegex"] == true)
            let listed = try await portal.call(.get, "/portal/alerts/silences", token: portal.token("acme.auditor"))
            #expect(listed.json.objectValue?["items"]?.arrayValue?.map { $0.objectValue?["id"] } == [.string(id)])
            #expect(listed.json.objectValue?["items"]?.arrayValue?.first?.objectValue?["matchers"]?.arrayValue?.count == 2)
            #expect(try await portal.call(.get, "/portal/alerts/silences", token: portal.token("globex.admin")).json.objectValue?["items"]?.arrayValue?.isEmpty == true)
            expectProblem(try await portal.call(.delete, "/portal/alerts/silences/\(id)", token: portal.token("globex.admin")), .notFound)
            #expect(try await portal.call(.delete, "/portal/alerts/silences/\(id)", token: admin).status == .noContent)
            #expect(try await portal.call(.get, "/portal/alerts/silences", token: admin).json.objectValue?["items"]?.arrayValue?.isEmpty == true)
            let bad = expectProblem(
                try await portal.call(.post, "/portal/alerts/silences", token: admin, json: #"{"matchers":[{"name":"x","value":"(","isRegex":true}],"endsAt":"2001-01-01T00:00:00Z","comment":""}"#),
                .unprocessableContent
            )
            let pointers = Set((bad["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue })
            #expect(pointers == ["/matchers/0/value", "/endsAt", "/comment"], "\(pointers)")
            expectProblem(try await portal.call(.post, "/portal/alerts/silences", token: admin, json: "{not json"), .badRequest)

            let receiver = try await portal.call(.post, "/portal/alerts/receivers", token: admin, json: """
                {"name":"mail","kind":"sendgrid","apiKey":"SG.secret-api-key-0123456789","from":"alerts@example.com","to":["oncall@example.com"]}
                """)
            #expect(receiver.status == .created, "\(receiver.body.string)")
            let receivers = try await portal.call(.get, "/portal/alerts/receivers", token: portal.token("acme.auditor"))
            #expect(receivers.json.objectValue?["items"]?.arrayValue?.first?.objectValue?["apiKey"] == "••••6789")
            #expect(!receivers.body.string.contains("secret-api-key"))
            expectProblem(try await portal.call(.post, "/portal/alerts/receivers", token: admin, json: #"{"name":"mail","kind":"slack","url":"https://hooks.example.com/x"}"#), .conflict)
            let invalid = expectProblem(try await portal.call(.post, "/portal/alerts/receivers", token: admin, json: #"{"name":"x","kind":"slack"}"#), .unprocessableContent)
            #expect(invalid["errors"]?.arrayValue?.first?.objectValue?["pointer"] == "/url")
            let rid = try #require(receiver.json.objectValue?["id"]?.stringValue)
            expectProblem(try await portal.call(.delete, "/portal/alerts/receivers/\(rid)", token: portal.token("globex.admin")), .notFound)
            #expect(try await portal.call(.delete, "/portal/alerts/receivers/\(rid)", token: admin).status == .noContent)
            let types = Set(try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database).map(\.type))
            #expect(types.isSuperset(of: ["alert.silenced", "alert.unsilenced", "alert.receiver_added", "alert.receiver_removed"]))
        }
    }

    @Test("a receiver's secrets are sealed in the table", arguments: Backend.available)
    func sealedAtRest(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let receiver = try await portal.call(.post, "/portal/alerts/receivers", token: portal.token("acme.admin"), json: """
                {"name":"hook","kind":"webhook","url":"https://alerts.example.com/very-secret-path","secret":"whsec_c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Ng=="}
                """)
            #expect(receiver.status == .created)
            let stored = try await portal.services.database.read { db in
                try await db.raw("SELECT CAST(sealed_secrets AS TEXT) AS s, CAST(config AS TEXT) AS c FROM alert_receivers").all().map {
                    try $0.decode(column: "s", as: String.self) + (try $0.decode(column: "c", as: String.self))
                }
            }
            #expect(stored.count == 1)
            #expect(stored.allSatisfy { !$0.contains("very-secret-path") && !$0.contains("c2VjcmV0LXNpZ25pbmcta2V5") })
        }
    }
}
