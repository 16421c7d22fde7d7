import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import Monitoring
import PortalCore
import PortalServer
import PortalTestSupport
import Testing

/// Service level objectives (issue 21): attainment, error budget and burn rates over an integration's calls,
/// and the multi-window, multi-burn-rate alerts with an injected clock.
@Suite("Service level objectives")
struct ServiceLevelTests {
    static func integration(_ portal: Portal, slo: String, name: String = "Vendor") async throws -> String {
        let created = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
            {"name":"\(name)","type":"enterprise","baseUrl":"\(portal.upstream.baseURL)","authMethod":"api_key","credentials":{"apiKey":"k-slo-123456"},
             "config":{"slo":\(slo)}}
            """)
        #expect(created.status == .created, "\(created.body.string)")
        return try #require(created.json.objectValue?["id"]?.stringValue)
    }

    /// `count` calls now, `failing` of them a 5xx and `slow` of them taking `slowMs` (the others 50 ms).
    static func traffic(_ portal: Portal, _ id: String, count: Int, failing: Int, slow: Int = 0, slowMs: Int64 = 500, clientErrors: Int = 0) {
        for i in 0..<count {
            let (outcome, category): (String, String?) = i < failing ? ("server_error", "server") : i < failing + clientErrors ? ("client_error", "business") : ("success", nil)
            portal.services.monitor.collector.observe(.call(.init(
                organizationID: portal.acme.id, integrationID: UUID(uuidString: id)!, endpoint: "/items", outcome: outcome, category: category,
                durationMicros: (i >= count - slow ? slowMs : 50) * 1_000, at: Date()
            )))
        }
    }

    @Test("attainment, error budget and burn rates per objective; 4xx answers are not the provider's failures; bad objectives are 422s", arguments: Backend.available)
    func report(backend: Backend) async throws {
        let clock = ManualWallClock(Date())
        try await withPortal(backend, clock: clock) { portal in
            let id = try await Self.integration(portal, slo: #"{"availability":0.99,"latency":{"thresholdMs":100,"objective":0.9},"window":"28d"}"#)
            Self.traffic(portal, id, count: 100, failing: 5, slow: 5, clientErrors: 10)
            let answer = try await portal.call(.get, "/portal/integrations/\(id)/slo", token: portal.token("acme.auditor"))
            #expect(answer.status == .ok, "\(answer.body.string)")
            let objectives = Dictionary(uniqueKeysWithValues: (answer.json.objectValue?["objectives"]?.arrayValue ?? []).compactMap(\.objectValue).map { ($0["indicator"]?.stringValue ?? "", $0) })
            let availability = try #require(objectives["availability"])
            #expect(availability["attainment"] == .double(0.95) && availability["met"] == false && availability["window"] == "28d")
            #expect(availability["events"] == ["good": 95, "total": 100])
            let burn = availability["burnRates"]?.objectValue?["5m"]
            if case .double(let b)? = burn { #expect(abs(b - 5) < 1e-9) } else { Issue.record("no 5m burn rate: \(availability)") }
            let budget = availability["errorBudget"]?.objectValue ?? [:]
            if case .double(let remaining)? = budget["remaining"] { #expect(abs(remaining - -4) < 1e-9, "five times the budget spent") }
            let latency = try #require(objectives["latency"])
            #expect(latency["attainment"] == .double(0.95) && latency["met"] == true && latency["thresholdMs"] == 100)

            // No objective: said so.
            let plain = try await portal.createIntegration()
            #expect(try await portal.call(.get, "/portal/integrations/\(plain)/slo", token: portal.token("acme.auditor")).json.objectValue?["configured"] == false)
            let bad = try await portal.call(.post, "/portal/integrations", token: portal.token("acme.admin"), json: """
                {"name":"Bad","type":"enterprise","baseUrl":"https://api.example.com","authMethod":"api_key","credentials":{"apiKey":"k-123456"},
                 "config":{"slo":{"availability":1.5,"latency":{"objective":0.9},"window":"7d"}}}
                """)
            let problem = "\(expectProblem(bad, .unprocessableContent))"
            for pointer in ["/config/slo/availability", "/config/slo/latency/thresholdMs", "/config/slo/window"] { #expect(problem.contains(pointer), "\(pointer): \(problem)") }
            // Objectives are operational: changing them needs no approval.
            let changed = try await portal.call(.patch, "/portal/integrations/\(id)", token: portal.token("acme.admin"), json: #"{"config":{"slo":{"availability":0.999}}}"#)
            #expect(changed.json.objectValue?["approval"]?.objectValue?["pending"] == false)
        }
    }

    @Test("a fast burn fires SLOFastBurn within minutes and a moderate one only SLOSlowBurn; both resolve once the burning stops", arguments: Backend.available)
    func burnAlerts(backend: Backend) async throws {
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_800_000_000))
        try await withPortal(backend, clock: clock) { portal in
            let fast = try await Self.integration(portal, slo: #"{"availability":0.999}"#)
            let evaluator = portal.services.alertEvaluator
            func alerts(_ type: String, _ rule: String) async throws -> [LedgerEntry] {
                try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database)
                    .filter { $0.type == type && $0.data.objectValue?["rule"] == .string(rule) }
            }
            // Minute by minute: `failing` of 100 calls fail, the minute is flushed, the rules evaluated.
            func minutes(_ n: Int, _ id: String, failing: Int) async throws {
                for _ in 0..<n {
                    Self.traffic(portal, id, count: 100, failing: failing)
                    clock.advance(by: 60)
                    try await portal.services.monitor.flush()
                    _ = try await evaluator.evaluateAll()
                }
            }
            // 5% failing against a 0.1% budget: burn rate 50, over both windows within five minutes.
            try await minutes(5, fast, failing: 5)
            let fired = try await alerts("alert.firing", "SLOFastBurn")
            #expect(fired.count == 1 && fired.first?.integration == fast && fired.first?.data.objectValue?["labels"]?.objectValue?["sli"] == "availability", "\(fired.map(\.data))")
            // Healthy again: the 5-minute window clears first, so the fast alert resolves within minutes.
            try await minutes(7, fast, failing: 0)
            #expect(try await alerts("alert.resolved", "SLOFastBurn").count == 1)
            // The slow alert (fired too: 50 is over 6 as well) resolves once its 30-minute window is clean.
            try await minutes(30, fast, failing: 0)
            #expect(try await alerts("alert.resolved", "SLOSlowBurn").count == 1)

            // 1% failing: burn rate 10, over the slow alert's 6 but under the fast one's 14.4.
            let slow = try await Self.integration(portal, slo: #"{"availability":0.999}"#, name: "Slow vendor")
            _ = try await portal.call(.patch, "/portal/integrations/\(fast)", token: portal.token("acme.admin"), json: #"{"config":{"slo":null}}"#)
            try await minutes(90, slow, failing: 1)
            let slowFired = try await alerts("alert.firing", "SLOSlowBurn").filter { $0.integration == slow }
            #expect(slowFired.count == 1, "\(slowFired.map(\.data))")
            #expect(try await alerts("alert.firing", "SLOFastBurn").filter { $0.integration == slow }.isEmpty, "a burn rate of 10 is no fast burn")
            try await minutes(35, slow, failing: 0)
            #expect(try await alerts("alert.resolved", "SLOSlowBurn").filter { $0.integration == slow }.count == 1)
        }
    }

    @Test("the SOC 2 bundle has each objective's attainment over the period, a missed objective as an exception, and the burn alerts in A1.2", arguments: [Backend.sqlite])
    func evidence(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let id = try await Self.integration(portal, slo: #"{"availability":0.999,"latency":{"thresholdMs":1000,"objective":0.9}}"#)
            Self.traffic(portal, id, count: 100, failing: 10)
            try await portal.services.monitor.flush(through: Int64(Date().timeIntervalSince1970) / 60 + 1)
            _ = try await portal.services.alertEvaluator.evaluateAll()
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("slo-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            let file = try await portal.todaysSOC2Bundle(into: scratch)
            let root = try LedgerBundleVerifier().unpack(bundle: file.path, into: scratch)
            let levels = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("service-levels.json"))).objectValue ?? [:]
            let item = try #require(levels["integrations"]?.arrayValue?.first?.objectValue, "\(levels)")
            let objectives = Dictionary(uniqueKeysWithValues: (item["objectives"]?.arrayValue ?? []).compactMap(\.objectValue).map { ($0["indicator"]?.stringValue ?? "", $0) })
            #expect(objectives["availability"]?["attainment"] == .double(0.9) && objectives["availability"]?["met"] == false, "\(objectives)")
            #expect(objectives["latency"]?["met"] == true)
            let manifest = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("manifest.json"))).objectValue ?? [:]
            let missed = (manifest["exceptions"]?.arrayValue ?? []).compactMap(\.objectValue).filter { $0["flag"] == "slo_missed" }
            #expect(missed.count == 1 && missed.first?["indicator"] == "availability" && missed.first?["integration"]?.stringValue == id, "\(missed)")
            let population = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("populations/a1.2.json"))).arrayValue ?? []
            #expect(population.contains { $0.objectValue?["type"] == "alert.firing" }, "the fast burn's alert is A1.2 evidence: \(population)")
        }
    }
}
