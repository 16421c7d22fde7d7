package import Foundation
import Integrations
package import Ledger
package import PortalCore
package import Storage

/// The vendor security review questionnaire (`reports/templates/security-review.yaml`).
package struct ReviewQuestionnaire: Sendable, Equatable {
    package struct Question: Sendable, Equatable {
        package enum Kind: String, Sendable { case yesNo = "yes_no", text }
        package var id: String
        package var text: String
        package var kind: Kind
        package var required: Bool
        /// For yes/no questions: the answer expected; another is a finding.
        package var expect: Bool?
    }

    package var title: String
    package var questions: [Question]

    package static func load(directory: String) throws(PortalError) -> ReviewQuestionnaire {
        let path = URL(fileURLWithPath: directory).appendingPathComponent("security-review.yaml").path
        guard let data = FileManager.default.contents(atPath: path) else { throw PortalError(.configuration, "no review questionnaire at \(path)") }
        let root = try YAMLDocument.parse(String(decoding: data, as: UTF8.self), source: path)
        guard let top = root.objectValue, top["version"] == .int(1), let list = top["questions"]?.arrayValue, !list.isEmpty else {
            throw PortalError(.configuration, "\(path) must have version: 1 and a questions list")
        }
        var questions: [Question] = []
        for (i, item) in list.enumerated() {
            guard let m = item.objectValue, let id = m["id"]?.stringValue, !id.isEmpty, let text = m["text"]?.stringValue,
                  let kind = m["kind"]?.stringValue.flatMap(Question.Kind.init(rawValue:))
            else { throw PortalError(.configuration, "\(path): questions[\(i)] needs an id, a text and a kind (yes_no or text)") }
            guard !questions.contains(where: { $0.id == id }) else { throw PortalError(.configuration, "\(path): the question id \(id) is used twice") }
            let expect: Bool? = switch m["expect"] {
            case .bool(let b)?: b
            case .string(let s)?: s == "yes" ? true : s == "no" ? false : nil
            default: nil
            }
            questions.append(Question(id: id, text: text, kind: kind, required: m["required"] == .bool(true), expect: expect))
        }
        return ReviewQuestionnaire(title: top["title"]?.stringValue ?? "Security review", questions: questions)
    }

    package var json: JSONValue {
        [
            "title": .string(title),
            "questions": .array(questions.map { q in
                var m: [String: JSONValue] = ["id": .string(q.id), "text": .string(q.text), "kind": .string(q.kind.rawValue), "required": .bool(q.required)]
                if let expect = q.expect { m["expect"] = .bool(expect) }
                return .object(m)
            }),
        ]
    }

    /// Checks `answers` (an object of question id to answer): every required question answered, with the
    /// kind's type, no unknown id. Returns the findings (yes/no answers other than the one expected).
    func check(_ answers: JSONValue) throws(PortalError) -> [String] {
        guard case .object(let given) = answers else { throw PortalError.validation([.init(pointer: "/answers", message: "must be an object of question id to answer")]) }
        var errors: [PortalError.FieldError] = []
        var findings: [String] = []
        for key in given.keys.sorted() where !questions.contains(where: { $0.id == key }) {
            errors.append(.init(pointer: "/answers/\(jsonPointerEscape(key))", message: "is not a question of the questionnaire"))
        }
        for q in questions {
            let pointer = "/answers/\(jsonPointerEscape(q.id))"
            switch (q.kind, given[q.id]) {
            case (_, nil), (_, .null?):
                if q.required { errors.append(.init(pointer: pointer, message: "is required: \(q.text)")) }
            case (.yesNo, .bool(let b)?):
                if let expect = q.expect, b != expect { findings.append(q.id) }
            case (.text, .string(let s)?) where !s.trimmingCharacters(in: .whitespaces).isEmpty && s.count <= 2_000:
                break
            case (.yesNo, _?):
                errors.append(.init(pointer: pointer, message: "must be true or false"))
            case (.text, _?):
                errors.append(.init(pointer: pointer, message: "must be a text of 1 to 2000 characters"))
            }
        }
        guard errors.isEmpty else { throw PortalError.validation(errors) }
        return findings
    }
}

/// Security reviews of integrations (issue 21): recorded by compliance officers and administrators,
/// ledgered as `review.recorded`, listed, and read by the `review_due` alert rule and the evidence bundles.
package struct SecurityReviews: Sendable {
    let database: Database
    let audit: any AuditTrail
    let clock: any WallClock
    let ids: IdentifierGenerator
    let templates: String

    package init(database: Database, audit: any AuditTrail, clock: any WallClock, ids: IdentifierGenerator = .shared, reportsDirectory: String) {
        self.database = database
        self.audit = audit
        self.clock = clock
        self.ids = ids
        templates = URL(fileURLWithPath: reportsDirectory).appendingPathComponent("templates").path
    }

    /// The questionnaire, read from its file each time (an edit applies at once).
    package func questionnaire() throws(PortalError) -> ReviewQuestionnaire { try ReviewQuestionnaire.load(directory: templates) }

    /// A review as the API shows it.
    package struct View: Sendable, Encodable {
        package var id: String
        package var integrationId: String
        package var answers: JSONValue
        package var findings: [String]
        package var dpaOnFile: Bool
        package var dpaReference: String?
        package var outcome: String
        package var notes: String?
        package var reviewer: String
        package var reviewedAt: String
        package var nextReviewDue: String
        /// Whether the next review is due now.
        package var due: Bool

        package var json: JSONValue {
            var m: [String: JSONValue] = [
                "id": .string(id), "integrationId": .string(integrationId), "answers": answers, "findings": .array(findings.map(JSONValue.string)),
                "dpaOnFile": .bool(dpaOnFile), "outcome": .string(outcome), "reviewer": .string(reviewer), "reviewedAt": .string(reviewedAt),
                "nextReviewDue": .string(nextReviewDue), "due": .bool(due),
            ]
            if let dpaReference { m["dpaReference"] = .string(dpaReference) }
            if let notes { m["notes"] = .string(notes) }
            return .object(m)
        }
    }

    func view(_ r: SecurityReviewRecord, questionnaire: ReviewQuestionnaire?, now: Date) -> View {
        View(
            id: r.id.uuidString.lowercased(), integrationId: r.integrationID.uuidString.lowercased(), answers: r.answers,
            findings: (try? questionnaire?.check(r.answers)) ?? [], dpaOnFile: r.dpaOnFile, dpaReference: r.dpaReference, outcome: r.outcome.rawValue,
            notes: r.notes, reviewer: r.reviewer, reviewedAt: Timestamp.rfc3339(r.reviewedAt), nextReviewDue: Timestamp.rfc3339(r.nextDue), due: r.nextDue <= now
        )
    }

    /// Records a review of the integration from a request body: `answers`, `dpaOnFile`, `dpaReference`,
    /// `outcome`, `notes` and `nextReviewDue` (a date; a year from now when absent).
    package func record(integrationID: UUID, body: JSONValue, by principal: Principal) async throws -> View {
        try principal.require(.approveIntegrations)
        let questionnaire = try questionnaire()
        let now = clock.now()
        guard case .object(let m) = body else { throw PortalError.validation([.init(pointer: "", message: "must be an object")]) }
        var errors: [PortalError.FieldError] = []
        for key in m.keys.sorted() where !["answers", "dpaOnFile", "dpaReference", "outcome", "notes", "nextReviewDue"].contains(key) {
            errors.append(.init(pointer: "/\(jsonPointerEscape(key))", message: "unknown field"))
        }
        var findings: [String] = []
        do { findings = try questionnaire.check(m["answers"] ?? .null) } catch { errors += error.fieldErrors }
        guard case .bool(let dpa)? = m["dpaOnFile"] else {
            throw PortalError.validation(errors + [.init(pointer: "/dpaOnFile", message: "is required: true or false")])
        }
        let reference = m["dpaReference"]?.stringValue
        if let value = m["dpaReference"], value != .null, reference.map({ $0.isEmpty || $0.count > 200 }) ?? true {
            errors.append(.init(pointer: "/dpaReference", message: "must be a text of 1 to 200 characters"))
        }
        let outcome = m["outcome"]?.stringValue.flatMap(SecurityReviewRecord.Outcome.init(rawValue:))
        if outcome == nil {
            errors.append(.init(pointer: "/outcome", message: "must be one of \(SecurityReviewRecord.Outcome.allCases.map(\.rawValue).joined(separator: ", "))"))
        }
        let notes = m["notes"]?.stringValue
        if let value = m["notes"], value != .null, notes.map({ $0.count > 4_000 }) ?? true {
            errors.append(.init(pointer: "/notes", message: "must be a text of at most 4000 characters"))
        }
        var due = now.addingTimeInterval(365 * 86_400)
        if let value = m["nextReviewDue"], value != .null {
            if let text = value.stringValue, let date = Timestamp.parse(text.count == 10 ? text + "T00:00:00Z" : text),
               date > now, date <= now.addingTimeInterval(3 * 366 * 86_400) {
                due = date
            } else {
                errors.append(.init(pointer: "/nextReviewDue", message: "must be a date (YYYY-MM-DD or RFC 3339) after now and within three years"))
            }
        }
        guard errors.isEmpty, let outcome else { throw PortalError.validation(errors) }
        let record = SecurityReviewRecord(
            id: ids.next(), organizationID: principal.organizationID, integrationID: integrationID, answers: m["answers"] ?? [:], dpaOnFile: dpa,
            dpaReference: reference, outcome: outcome, notes: notes, reviewer: principal.owner, reviewerToken: principal.tokenID, reviewedAt: now, nextDue: due
        )
        try await database.write { db in
            let store = IntegrationStore(db)
            guard let integration = try await store.find(id: integrationID, organizationID: principal.organizationID) else {
                throw PortalError.notFound("integration", acrossOrganizations: try await store.existsElsewhere(id: integrationID, organizationID: principal.organizationID))
            }
            guard integration.deletedAt == nil else { throw PortalError(.conflict, "the integration was deleted") }
            try await SecurityReviewStore(db).insert(record)
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .reviewRecorded, actor: principal.tokenID.uuidString.lowercased(), integrationID: integrationID,
                data: [
                    "reviewId": .string(record.id.uuidString.lowercased()), "outcome": .string(outcome.rawValue), "dpaOnFile": dpa ? 1 : 0,
                    "nextReviewDue": .string(Timestamp.rfc3339(due)), "reviewer": .string(principal.owner),
                    "answersDigest": .string(CanonicalJSON.digest(record.answers)), "findings": .array(findings.map(JSONValue.string)),
                ], time: now
            ), in: db)
        }
        audit.wake()
        return view(record, questionnaire: questionnaire, now: now)
    }

    /// The integration's reviews, newest first.
    package func list(integrationID: UUID, organizationID: UUID) async throws -> [View] {
        let now = clock.now()
        let questionnaire = try? questionnaire()
        let rows = try await database.read { db in
            let store = IntegrationStore(db)
            guard try await store.find(id: integrationID, organizationID: organizationID) != nil else {
                throw PortalError.notFound("integration", acrossOrganizations: try await store.existsElsewhere(id: integrationID, organizationID: organizationID))
            }
            return try await SecurityReviewStore(db).list(organizationID: organizationID, integrationID: integrationID, limit: 100)
        }
        return rows.map { view($0, questionnaire: questionnaire, now: now) }
    }

    /// Every live integration of the organization with its latest review (none: never reviewed) and
    /// whether one is due: the review schedule (`GET /portal/reviews`).
    package func schedule(organizationID: UUID) async throws -> JSONValue {
        let now = clock.now()
        let questionnaire = try? questionnaire()
        let (integrations, latest) = try await database.read { db in
            (try await IntegrationStore(db).all(organizationID: organizationID, includeDeleted: false), try await SecurityReviewStore(db).latest(organizationID: organizationID))
        }
        let items: [JSONValue] = integrations.map { i in
            let review = latest[i.id].map { view($0, questionnaire: questionnaire, now: now) }
            return [
                "integrationId": .string(i.id.uuidString.lowercased()), "name": .string(i.name), "type": .string(i.type.rawValue),
                "latest": review?.json ?? .null,
                "state": .string(review.map { $0.due ? "due" : "current" } ?? "never_reviewed"),
            ]
        }
        return ["items": .array(items)]
    }
}
