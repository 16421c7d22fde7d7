import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import Testing

/// Bulk operations (issue 21): export and import of definitions without secrets, enable, disable and delete
/// by filter, each one job with per-item results, ledgered.
@Suite("Bulk operations")
struct BulkTests {
    static func make(_ portal: Portal, _ name: String, type: String) async throws -> String {
        let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
            {"name":"\(name)","type":"\(type)","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-secret-\(name)-123456"},
             "config":{"keyHeader":"X-Key","retry":{"maxAttempts":2}},"processing":{"purposes":[{"purpose":"support","lawfulBasis":"contract"}]},
             "webhookConfig":{"endpoint":"/webhooks/\(name.lowercased())","secret":"webhook-secret-\(name)"}}
            """)
        #expect(created.status == .created, "\(created.body.string)")
        return try #require(created.json.objectValue?["id"]?.stringValue)
    }

    static func job(_ portal: Portal, _ token: String, _ body: String) async throws -> TestResponse {
        try await portal.call(.post, "/portal/bulk-jobs", token: portal.token(token), json: body)
    }

    @Test("export (JSON and YAML) without secrets, import elsewhere as pending integrations that ask for credentials: a round trip", arguments: Backend.available)
    func roundTrip(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            _ = try await Self.make(portal, "Alpha", type: "analytics")
            _ = try await Self.make(portal, "Beta", type: "communication")
            let exported = try await Self.job(portal, "acme.auditor", #"{"action":"export"}"#)
            #expect(exported.status == .created, "\(exported.body.string)")
            let document = try #require(exported.json.objectValue?["document"])
            #expect(!exported.body.string.contains("k-secret") && !exported.body.string.contains("webhook-secret"), "no secret in an export")
            let definitions = document.objectValue?["integrations"]?.arrayValue ?? []
            #expect(definitions.count == 2 && definitions.allSatisfy { $0.objectValue?["credentialFields"] == ["apiKey"] })
            let yaml = try await Self.job(portal, "acme.auditor", #"{"action":"export","format":"yaml","filter":{"type":"analytics"}}"#)
            let text = try #require(yaml.json.objectValue?["document"]?.stringValue)
            #expect(text.contains("name: \"Alpha\"") && !text.contains("Beta") && !text.contains("k-secret"), "\(text)")

            // Into globex, from the YAML text: pending, naming the credentials it needs; no call until given.
            var body: [String: JSONValue] = ["action": "import", "document": .string(text)]
            let imported = try await portal.call(.post, "/portal/bulk-jobs", token: portal.token("globex.admin"), json: JSONValue.object(body).sortedText)
            #expect(imported.status == .created, "\(imported.body.string)")
            let item = try #require(imported.json.objectValue?["items"]?.arrayValue?.first?.objectValue)
            #expect(item["result"] == "imported" && item["needs"] == ["apiKey"] && item["note"] != nil, "\(item)")
            let id = try #require(item["integrationId"]?.stringValue)
            let view = try await portal.call(.get, "/portal/integrations/\(id)", token: portal.token("globex.auditor")).json.objectValue ?? [:]
            #expect(view["status"] == "pending" && view["config"]?.objectValue?["keyHeader"] == "X-Key" && view["processing"] != nil, "\(view)")
            expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/requests", token: portal.token("globex.admin"), json: #"{"method":"GET","endpoint":"/echo/x"}"#), .conflict)
            // Its credentials given, it is in force (approvals are off here).
            let given = try await portal.call(.patch, "/portal/integrations/\(id)", token: portal.token("globex.admin"), json: #"{"credentials":{"apiKey":"k-globex-123456"}}"#)
            #expect(given.json.objectValue?["status"] == "active", "\(given.body.string)")
            #expect(try await portal.call(.post, "/portal/integrations/\(id)/requests", token: portal.token("globex.admin"), json: #"{"method":"GET","endpoint":"/echo/x"}"#).status == .ok)

            // The same document again: the name is taken, a per-item failure, nothing else changed.
            body["document"] = document
            let again = try await portal.call(.post, "/portal/bulk-jobs", token: portal.token("globex.admin"), json: JSONValue.object(body).sortedText)
            #expect(again.json.objectValue?["counts"] == ["imported": 1, "failed": 1], "\(again.body.string)")
            let bad = try await portal.call(.post, "/portal/bulk-jobs", token: portal.token("globex.admin"), json: #"{"action":"import","document":{"version":2}}"#)
            expectProblem(bad, .unprocessableContent)
            // A "billion laughs" document (a few hundred bytes, a billion nodes through aliases) is refused
            // without being expanded.
            var laughs = "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
            var previous = "a"
            for name in ["b", "c", "d", "e", "f", "g", "h", "i"] {
                laughs += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ",") + "]\n"
                previous = name
            }
            laughs += "version: 1\nintegrations: []\n"
            let bomb = try await portal.call(.post, "/portal/bulk-jobs", token: portal.token("globex.admin"), json: JSONValue.object(["action": "import", "document": .string(laughs)]).sortedText)
            #expect("\(expectProblem(bomb, .unprocessableContent))".contains("200000 nodes"))
            expectProblem(try await Self.job(portal, "acme.auditor", #"{"action":"import","document":{"version":1,"integrations":[]}}"#), .forbidden)
        }
    }

    @Test("disable, enable and delete by filter: one job, per-item results, ledgered; another organization's integrations untouched", arguments: Backend.available)
    func byFilter(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let a = try await Self.make(portal, "Alpha", type: "analytics")
            let b = try await Self.make(portal, "Beta", type: "analytics")
            let c = try await Self.make(portal, "Gamma", type: "communication")
            let other = try await portal.call(.post, "/portal/integrations", token: portal.token("globex.admin"), json: BadInputTests.valid)
            let otherID = try #require(other.json.objectValue?["id"]?.stringValue)

            let disabled = try await Self.job(portal, "acme.operator", #"{"action":"disable","filter":{"type":"analytics"}}"#)
            #expect(disabled.json.objectValue?["counts"] == ["disabled": 2], "\(disabled.body.string)")
            for id in [a, b] { #expect(try await portal.call(.get, "/portal/integrations/\(id)", token: portal.token("acme.auditor")).json.objectValue?["status"] == "inactive") }
            #expect(try await portal.call(.get, "/portal/integrations/\(c)", token: portal.token("acme.auditor")).json.objectValue?["status"] == "active")
            let enabled = try await Self.job(portal, "acme.operator", #"{"action":"enable"}"#)
            #expect(enabled.json.objectValue?["counts"] == ["enabled": 2, "unchanged": 1], "\(enabled.body.string)")
            expectProblem(try await Self.job(portal, "acme.auditor", #"{"action":"disable"}"#), .forbidden)
            let badFilter = try await Self.job(portal, "acme.operator", #"{"action":"delete","filter":{"kind":"x","status":"sleeping"}}"#)
            let problem = "\(expectProblem(badFilter, .unprocessableContent))"
            #expect(problem.contains("/filter/kind") && problem.contains("/filter/status"))

            let deleted = try await Self.job(portal, "acme.admin", #"{"action":"delete","filter":{"ids":["\#(a)","\#(otherID)"]}}"#)
            #expect(deleted.json.objectValue?["counts"] == ["deleted": 1], "another organization's id matches nothing: \(deleted.body.string)")
            #expect(try await portal.call(.get, "/portal/integrations/\(otherID)", token: portal.token("globex.auditor")).status == .ok)
            let jobID = try #require(deleted.json.objectValue?["id"]?.stringValue)
            let stored = try await portal.call(.get, "/portal/bulk-jobs/\(jobID)", token: portal.token("acme.auditor")).json.objectValue ?? [:]
            #expect(stored["items"]?.arrayValue?.first?.objectValue?["integrationId"]?.stringValue == a)
            expectProblem(try await portal.call(.get, "/portal/bulk-jobs/\(jobID)", token: portal.token("globex.auditor")), .notFound)
            #expect((try await portal.call(.get, "/portal/bulk-jobs", token: portal.token("acme.auditor")).json.objectValue?["items"]?.arrayValue?.count ?? 0) == 3, "refused requests make no job")

            let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database)
            #expect(entries.filter { $0.type == "bulk.completed" }.map { $0.data.objectValue?["action"]?.stringValue ?? "" } == ["disable", "enable", "delete"])
            #expect(entries.contains { $0.type == "integration.deleted" && $0.integration == a })
        }
    }
}
