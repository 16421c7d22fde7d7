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
import Testing

/// Security reviews (issue 21): the questionnaire, recorded reviews with their findings, the schedule, the
/// `review_due` alert (with an injected clock) and the evidence.
@Suite("Security reviews")
struct ReviewTests {
    /// A review body answering every required question; `overrides` replace members.
    static func answers(encryption: Bool = true, due: String? = nil, outcome: String = "approved") -> String {
        let due = due.map { #","nextReviewDue":"\#($0)""# } ?? ""
        return """
            {"answers":{"encryption_in_transit":true,"encryption_at_rest":\(encryption),"certifications":"SOC 2 Type II","subprocessors_listed":true,
              "breach_notification":true,"data_location":"EU (Frankfurt)","access_controls":true,"deletion_on_termination":true},
             "dpaOnFile":true,"dpaReference":"DPA-2026-7","outcome":"\(outcome)"\(due)}
            """
    }

    @Test("a review answers every required question; findings, the schedule, roles and bad bodies", arguments: Backend.available)
    func record(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let id = try await portal.createIntegration()
            let questionnaire = try await portal.call(.get, "/portal/reviews/questionnaire", token: portal.token("acme.auditor")).json.objectValue ?? [:]
            #expect((questionnaire["questions"]?.arrayValue?.count ?? 0) >= 8)
            let schedule = try await portal.call(.get, "/portal/reviews", token: portal.token("acme.auditor")).json.objectValue?["items"]?.arrayValue ?? []
            #expect(schedule.first?.objectValue?["state"] == "never_reviewed")

            // Operators do not review; a missing answer, a wrong type and an unknown question are 422s naming them.
            expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/reviews", token: portal.token("acme.operator"), json: Self.answers()), .forbidden)
            let bad = try await portal.call(.post, "/portal/integrations/\(id)/reviews", token: portal.token("acme.compliance"), json: """
                {"answers":{"encryption_in_transit":"yes","mood":"good"},"dpaOnFile":true,"outcome":"fine","nextReviewDue":"2020-01-01"}
                """)
            let problem = "\(expectProblem(bad, .unprocessableContent))"
            for pointer in ["/answers/encryption_in_transit", "/answers/mood", "/answers/encryption_at_rest", "/outcome", "/nextReviewDue"] {
                #expect(problem.contains(pointer), "\(pointer) in \(problem)")
            }

            let recorded = try await portal.call(.post, "/portal/integrations/\(id)/reviews", token: portal.token("acme.compliance"), json: Self.answers(encryption: false, outcome: "approved_with_conditions"))
            #expect(recorded.status == .created, "\(recorded.body.string)")
            let review = recorded.json.objectValue ?? [:]
            #expect(review["findings"] == ["encryption_at_rest"] && review["reviewer"] == "compliance@acme" && review["due"] == false)
            let due = try #require(review["nextReviewDue"]?.stringValue.flatMap(Timestamp.parse))
            #expect(abs(due.timeIntervalSinceNow - 365 * 86_400) < 3_600, "a year from now by default")
            let list = try await portal.call(.get, "/portal/integrations/\(id)/reviews", token: portal.token("acme.auditor")).json.objectValue?["items"]?.arrayValue ?? []
            #expect(list.count == 1)
            let after = try await portal.call(.get, "/portal/reviews", token: portal.token("acme.auditor")).json.objectValue?["items"]?.arrayValue ?? []
            #expect(after.first?.objectValue?["state"] == "current")
            // Another organization cannot review acme's integration.
            expectProblem(try await portal.call(.post, "/portal/integrations/\(id)/reviews", token: portal.token("globex.compliance"), json: Self.answers()), .notFound)

            let entries = try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database).filter { $0.type == "review.recorded" }
            #expect(entries.count == 1 && entries.first?.data.objectValue?["findings"] == ["encryption_at_rest"] && entries.first?.data.objectValue?["dpaOnFile"] == 1)
            let recordedText = "\(entries.first?.data ?? .null)"
            #expect(!recordedText.contains("Frankfurt"), "answers go in by digest")
        }
    }

    @Test("review_due fires once the next review's date passes (injected clock) and resolves when the vendor is reviewed again", arguments: Backend.available)
    func reviewDue(backend: Backend) async throws {
        let clock = ManualWallClock(Date())
        try await withPortal(backend, clock: clock) { portal in
            let id = try await portal.createIntegration(name: "Vendor")
            let tomorrow = String(Timestamp.rfc3339(clock.now().addingTimeInterval(86_400)).prefix(10))
            #expect(try await portal.call(.post, "/portal/integrations/\(id)/reviews", token: portal.token("acme.compliance"), json: Self.answers(due: tomorrow)).status == .created)
            // The evaluator's own loop may evaluate between these calls: what counts is the ledger's record.
            let evaluator = portal.services.alertEvaluator
            func alerts(_ type: String) async throws -> [LedgerEntry] {
                try await portal.services.ledger.chainedEntries(of: portal.acme.id, in: portal.services.database)
                    .filter { $0.type == type && $0.data.objectValue?["rule"] == "SecurityReviewDue" }
            }
            _ = try await evaluator.evaluateAll()
            #expect(try await alerts("alert.firing").isEmpty, "not due yet")

            clock.advance(by: 3 * 86_400)
            _ = try await evaluator.evaluateAll()
            let fired = try await alerts("alert.firing")
            #expect(fired.count == 1 && fired.first?.integration == id, "\(fired.map(\.data))")
            #expect(fired.first?.data.objectValue?["labels"]?.objectValue?["integration_name"] == "Vendor")
            let schedule = try await portal.call(.get, "/portal/reviews", token: portal.token("acme.auditor")).json.objectValue?["items"]?.arrayValue ?? []
            #expect(schedule.first?.objectValue?["state"] == "due")

            #expect(try await portal.call(.post, "/portal/integrations/\(id)/reviews", token: portal.token("acme.admin"), json: Self.answers()).status == .created)
            // With the clock standing still: the evaluation right after the review resolves it.
            _ = try await evaluator.evaluateAll()
            #expect(try await alerts("alert.resolved").count == 1, "the alert resolves once the vendor is reviewed again")
        }
    }

    @Test("the SOC 2 bundle's CC9.2 population has the review and the vendor inventory its latest review", arguments: [Backend.sqlite])
    func evidence(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let id = try await portal.createIntegration(name: "Vendor")
            #expect(try await portal.call(.post, "/portal/integrations/\(id)/reviews", token: portal.token("acme.compliance"), json: Self.answers()).status == .created)
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("reviews-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            let file = try await portal.todaysSOC2Bundle(into: scratch)
            let root = try LedgerBundleVerifier().unpack(bundle: file.path, into: scratch)
            let population = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("populations/cc9.2.json"))).arrayValue ?? []
            #expect(population.contains { $0.objectValue?["type"] == "review.recorded" })
            let inventory = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("vendor-inventory.json"))).objectValue?["vendors"]?.arrayValue ?? []
            let vendor = try #require(inventory.compactMap(\.objectValue).first { $0["integrationId"]?.stringValue == id })
            #expect(vendor["securityReview"]?.objectValue?["outcome"] == "approved" && vendor["securityReview"]?.objectValue?["dpaOnFile"] == true, "\(vendor)")
        }
    }

    @Test("an ISO/IEC 27001 bundle: every Annex A control the mapping names, OSCAL, the supplier review in A.5.19; it verifies offline", arguments: Backend.available)
    func iso27001(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let id = try await portal.createIntegration(name: "Vendor")
            #expect(try await portal.call(.post, "/portal/integrations/\(id)/reviews", token: portal.token("acme.compliance"), json: Self.answers()).status == .created)
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("iso-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            let file = try await portal.todaysSOC2Bundle(into: scratch, kind: "iso27001")
            let keys = try await portal.services.checkpointer.verifierKeys(slug: "acme")
            let verified = try EvidenceVerifier().verify(bundle: file.path, keys: keys)
            #expect(verified.passed, "\(verified.problems)")
            let manifest = verified.manifest?.objectValue ?? [:]
            #expect(manifest["kind"] == "iso27001" && manifest["framework"] == "ISO/IEC 27001:2022 Annex A")
            let controls = Set((manifest["criteria"]?.arrayValue ?? []).compactMap { $0.objectValue?["id"]?.stringValue })
            #expect(controls.isSuperset(of: ["A.5.15", "A.5.19", "A.5.20", "A.5.21", "A.5.22", "A.5.23", "A.5.34", "A.8.15", "A.8.16", "A.8.24"]), "\(controls)")
            let root = try LedgerBundleVerifier().unpack(bundle: file.path, into: scratch)
            let population = try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("populations/a.5.19.json"))).arrayValue ?? []
            #expect(population.contains { $0.objectValue?["type"] == "review.recorded" })
            for document in ["oscal/assessment-results.json", "vendor-inventory.json", "approvals.json", "service-levels.json"] {
                #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent(document).path), "\(document) in the bundle")
            }
        }
    }
}
