import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Monitoring
import PortalCore
import PortalServer
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// Issue 16 item 11 over HTTP: silences are capped per organization (active silences, matchers per silence,
/// length of a value) with 422s naming the field, and a pathological regex silence is decided at once.
@Suite("Silence caps over HTTP")
struct SilenceCapsTests {
    static func body(matchers: [String]) -> String {
        #"{"matchers":[\#(matchers.joined(separator: ","))],"duration":"2h","comment":"maintenance"}"#
    }

    static func pointers(_ problem: [String: JSONValue]) -> [String] {
        (problem["errors"]?.arrayValue ?? []).compactMap { $0.objectValue?["pointer"]?.stringValue }
    }

    @Test("too many matchers, a value too long, or a regex outside the syntax: 422 naming the field", arguments: Backend.available)
    func matcherCaps(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let sixteen = Array(repeating: #"{"name":"integration","value":"\#(String(repeating: "v", count: 256))"}"#, count: 16)
            #expect(try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: sixteen)).status == .created)

            let many = expectProblem(try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: sixteen + [#"{"name":"x","value":"y"}"#])), .unprocessableContent)
            #expect(Self.pointers(many) == ["/matchers"] && many["detail"]?.stringValue?.contains("too many matchers") == true, "\(many)")
            let long = expectProblem(
                try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: [#"{"name":"x","value":"\#(String(repeating: "v", count: 257))"}"#])),
                .unprocessableContent
            )
            #expect(Self.pointers(long) == ["/matchers/0/value"] && long["detail"]?.stringValue?.contains("too long") == true, "\(long)")
            let lookahead = expectProblem(
                try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: [#"{"name":"x","value":"(?=a)a","isRegex":true}"#])),
                .unprocessableContent
            )
            #expect(Self.pointers(lookahead) == ["/matchers/0/value"], "\(lookahead)")
            // What Alertmanager users write is accepted.
            let usual = try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: [
                #"{"name":"integration_name","value":"api|web","isRegex":true}"#, #"{"name":"env","value":"prod-.*","isRegex":true}"#,
            ]))
            #expect(usual.status == .created, "\(usual.body.string)")
        }
    }

    @Test("at most 100 active silences per organization: the 101st is a 422 saying so; other organizations and ended silences do not count", arguments: Backend.available)
    func activeSilenceCap(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            var ids: [String] = []
            for i in 0..<100 {
                let created = try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: [#"{"name":"integration","value":"i-\#(i)"}"#]))
                #expect(created.status == .created, "\(created.body.string)")
                ids.append(try #require(created.json.objectValue?["id"]?.stringValue))
            }
            let refused = expectProblem(
                try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: [#"{"name":"integration","value":"one-more"}"#])),
                .unprocessableContent
            )
            #expect(refused["code"] == "validation_failed" && refused["detail"]?.stringValue?.contains("too many silences") == true, "\(refused)")
            #expect(refused["detail"]?.stringValue?.contains("100") == true)
            #expect(try await portal.call(.get, "/portal/alerts/silences", token: admin).json.objectValue?["items"]?.arrayValue?.count == 100)
            // Another organization has its own allowance.
            #expect(try await portal.call(.post, "/portal/alerts/silences", token: portal.token("globex.admin"), json: Self.body(matchers: [#"{"name":"x","value":"y"}"#])).status == .created)
            // Ending one makes room for one.
            #expect(try await portal.call(.delete, "/portal/alerts/silences/\(ids[0])", token: admin).status == .noContent)
            #expect(try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: [#"{"name":"integration","value":"again"}"#])).status == .created)
            expectProblem(try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: [#"{"name":"integration","value":"again"}"#])), .unprocessableContent)
        }
    }

    @Test("ten (a|a)+ silences and an alert with a 10,000-character label: GET /portal/alerts answers with the right silenced flags", arguments: Backend.available)
    func pathologicalSilences(backend: Backend) async throws {
        // The evaluator's own pass would resolve the alerts written below (no rule of theirs holds): on a busy
        // machine this test outlived the default 30 s interval, so here the interval is a day.
        let rules = FileManager.default.temporaryDirectory.appendingPathComponent("silence-rules-\(UUID().uuidString).yml")
        try "evaluationInterval: 24h\nrules:\n  - alert: Backlog\n    kind: webhook_backlog\n    maxAge: 5m\n    maxDepth: 1000\n".write(to: rules, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: rules) }
        try await withPortal(backend, configure: { $0.alertRulesPath = rules.path }) { portal in
            let admin = portal.token("acme.admin")
            for _ in 0..<9 {
                let trap = try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: [#"{"name":"integration_name","value":"(a|a)+b","isRegex":true}"#]))
                #expect(trap.status == .created, "\(trap.body.string)")
            }
            let now = Date()
            let long = String(repeating: "a", count: 10_000)
            try await portal.services.database.write { db in
                try await AlertStore(db).upsert([
                    AlertStateRecord(
                        organizationID: portal.acme.id, fingerprint: "f-long", rule: "Backlog", labels: ["integration_name": long, "alertname": "Backlog"], annotations: [:],
                        state: "firing", value: 1, activeAt: now, firedAt: now, lastSeenAt: now
                    ),
                    AlertStateRecord(
                        organizationID: portal.acme.id, fingerprint: "f-short", rule: "Backlog", labels: ["integration_name": "CRM", "alertname": "Backlog"], annotations: [:],
                        state: "firing", value: 1, activeAt: now, firedAt: now, lastSeenAt: now
                    ),
                ])
            }
            func silenced() async throws -> [String: Bool] {
                let listed = try await portal.call(.get, "/portal/alerts", token: portal.token("acme.auditor"))
                #expect(listed.status == .ok, "\(listed.body.string)")
                var out: [String: Bool] = [:]
                for alert in listed.json.objectValue?["active"]?.arrayValue ?? [] {
                    if let fingerprint = alert.objectValue?["fingerprint"]?.stringValue { out[fingerprint] = alert.objectValue?["silenced"] == true }
                }
                return out
            }
            #expect(try await silenced() == ["f-long": false, "f-short": false])
            #expect(try await portal.call(.post, "/portal/alerts/silences", token: admin, json: Self.body(matchers: [#"{"name":"integration_name","value":"(a|a)+","isRegex":true}"#])).status == .created)
            #expect(try await silenced() == ["f-long": true, "f-short": false])
            // The evaluator's pass over the same silences is decided too.
            _ = try await portal.services.alertEvaluator.evaluateAll()
        }
    }
}
