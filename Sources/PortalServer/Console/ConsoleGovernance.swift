import Foundation
import Hummingbird
import PortalCore

/// Governance in the console (issue 21): the organization's policy, the approvals that wait (approve or
/// reject with a comment, the digest reviewed carried along) and the decisions made.
struct ConsoleGovernance: Sendable {
    let api: ConsoleAPI

    static let notices: [String: String] = [
        "approved": "Approved: the integration calls out with this configuration now.",
        "rejected": "Rejected: a change went back to the approved configuration; a new integration is inactive.",
        "policy-saved": "The policy was saved.",
        "reviewed": "The security review was recorded.",
    ]

    func register(_ routes: ConsoleRoutes, on router: Router<PortalRequestContext>) {
        routes.page(router, .get, "/console/governance") { _, context, page in try await governance(page, context, errors: [:], status: .ok) }
        for action in ["approve", "reject"] {
            routes.page(router, .post, "/console/governance/{id}/\(action)") { _, context, page in
                let id = try ConsoleOperations.id(context)
                var body: [String: JSONValue] = ["comment": .string(page.field("comment") ?? "")]
                if let digest = page.field("digest"), !digest.isEmpty { body["digest"] = .string(digest) }
                let answer = try await api.call(.post, "/portal/integrations/\(id)/\(action)", body: .object(body), as: page.principal, context: context)
                if answer.status == .unprocessableContent || answer.status == .conflict || answer.status == .forbidden {
                    return try await governance(page, context, errors: [id: answer.fieldErrors.values.first ?? answer.detail], status: answer.status)
                }
                return try ConsoleOperations.back(answer, to: "/console/governance", notice: action == "approve" ? "approved" : "rejected")
            }
        }
        routes.page(router, .get, "/console/integrations/{id}/reviews/new") { _, context, page in
            try await reviewForm(page, context, id: try ConsoleOperations.id(context), errors: [:], status: .ok)
        }
        routes.page(router, .post, "/console/integrations/{id}/reviews") { _, context, page in
            let id = try ConsoleOperations.id(context)
            let questionnaire = try await api.fetch("/portal/reviews/questionnaire", as: page.principal, context: context)
            var answers: [String: JSONValue] = [:]
            for q in (questionnaire.objectValue?["questions"]?.arrayValue ?? []).compactMap(\.objectValue) {
                guard let qid = q["id"]?.stringValue, let value = page.field("q-" + qid), !value.isEmpty else { continue }
                answers[qid] = q["kind"] == "yes_no" ? (value == "yes" ? .bool(true) : value == "no" ? .bool(false) : .string(value)) : .string(value)
            }
            var body: [String: JSONValue] = [
                "answers": .object(answers), "dpaOnFile": .bool(page.field("dpaOnFile") == "yes"), "outcome": .string(page.field("outcome") ?? ""),
            ]
            for key in ["dpaReference", "notes", "nextReviewDue"] {
                if let value = page.field(key)?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty { body[key] = .string(value) }
            }
            let answer = try await api.call(.post, "/portal/integrations/\(id)/reviews", body: .object(body), as: page.principal, context: context)
            if answer.status == .unprocessableContent {
                var errors = answer.fieldErrors.reduce(into: [String: String]()) { $0[String($1.key.dropFirst()).replacingOccurrences(of: "answers/", with: "q-")] = $1.value }
                if errors.isEmpty { errors["form"] = answer.detail }
                return try await reviewForm(page, context, id: id, errors: errors, status: .unprocessableContent)
            }
            return try ConsoleOperations.back(answer, to: "/console/integrations/\(id)", notice: "reviewed")
        }
        routes.page(router, .post, "/console/governance/policy") { _, context, page in
            let body: JSONValue = ["approvals": .string(page.field("approvals") ?? ""), "whileChangePending": .string(page.field("whileChangePending") ?? "")]
            let answer = try await api.call(.put, "/portal/policy", body: body, as: page.principal, context: context)
            return try ConsoleOperations.back(answer, to: "/console/governance", notice: "policy-saved")
        }
    }

    private func governance(_ page: ConsolePage, _ context: PortalRequestContext, errors: [String: String], status: HTTPResponse.Status) async throws -> Response {
        async let policyAnswer = api.fetch("/portal/policy", as: page.principal, context: context)
        async let pendingAnswer = api.fetch("/portal/approvals?state=pending&limit=100", as: page.principal, context: context)
        async let recentAnswer = api.fetch("/portal/approvals?limit=50", as: page.principal, context: context)
        async let scheduleAnswer = api.fetch("/portal/reviews", as: page.principal, context: context)
        let policy = try await policyAnswer.objectValue ?? [:]
        let pending = try await pendingAnswer.objectValue?["items"]?.arrayValue ?? []
        let recent = (try await recentAnswer.objectValue?["items"]?.arrayValue ?? []).filter { $0.objectValue?["state"] != "pending" }
        let canDecide = page.principal.role.allows(.approveIntegrations)
        func row(_ value: JSONValue) -> [String: Any] {
            let a = value.objectValue ?? [:]
            let integration = a["integrationId"]?.stringValue ?? ""
            let requester = a["requestedBy"]?.stringValue ?? ""
            return [
                "integrationId": integration, "name": a["integrationName"]?.stringValue ?? integration, "digest": a["digest"]?.stringValue ?? "",
                "shortDigest": String((a["digest"]?.stringValue ?? "").prefix(12)),
                "changed": (a["changed"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
                "requestedBy": requester, "requestedAt": Show.time(a["requestedAt"]) ?? "", "state": a["state"]?.stringValue ?? "",
                "badge": ["approved": "ok", "rejected": "bad", "pending": "warn"][a["state"]?.stringValue ?? ""] ?? "idle",
                "decidedBy": a["decidedBy"]?.stringValue ?? "", "decidedAt": Show.time(a["decidedAt"]) ?? "", "comment": a["comment"]?.stringValue ?? "",
                // Separation of duties: the form is not offered to the requester's own owner (the API refuses it too).
                "canDecide": canDecide && requester != page.principal.owner, "ownRequest": requester == page.principal.owner,
                "error": errors[integration] ?? "",
            ]
        }
        let schedule = (try await scheduleAnswer.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { item -> [String: Any] in
            let latest = item["latest"]?.objectValue
            let state = item["state"]?.stringValue ?? ""
            return [
                "integrationId": item["integrationId"]?.stringValue ?? "", "name": item["name"]?.stringValue ?? "",
                "state": state.replacingOccurrences(of: "_", with: " "), "badge": ["current": "ok", "due": "bad"][state] ?? "warn",
                "outcome": latest?["outcome"]?.stringValue?.replacingOccurrences(of: "_", with: " ") ?? "", "reviewer": latest?["reviewer"]?.stringValue ?? "",
                "reviewedAt": Show.time(latest?["reviewedAt"]) ?? "", "nextDue": Show.time(latest?["nextReviewDue"]) ?? "",
                "dpa": latest.map { $0["dpaOnFile"] == .bool(true) ? "on file" : "missing" } ?? "",
            ]
        }
        let approvals = policy["approvals"]?.stringValue ?? "required"
        let whilePending = policy["whileChangePending"]?.stringValue ?? "serve_approved"
        var values: [String: Any] = [
            "section": "Governance", "reviews": schedule, "noReviews": schedule.isEmpty, "pending": pending.map(row), "noPending": pending.isEmpty, "recent": recent.map(row), "noRecent": recent.isEmpty,
            "approvalsRequired": approvals == "required", "whileChangePending": whilePending,
            "servingApproved": whilePending == "serve_approved",
            "canPolicy": page.principal.role.allows(.managePolicy), "canDecide": canDecide,
            "approvalChoices": ["required", "off"].map { ["value": $0, "selected": $0 == approvals] },
            "pendingChoices": ["serve_approved", "suspend"].map { ["value": $0, "selected": $0 == whilePending] },
        ]
        if let notice = page.parameter("done").flatMap({ Self.notices[$0] }) { values["notice"] = notice }
        return try page.render("governance", title: "Governance of \(page.principal.organizationSlug)", status: status, values)
    }

    /// The review form: the questionnaire's questions, the DPA, the outcome and the next due date.
    private func reviewForm(_ page: ConsolePage, _ context: PortalRequestContext, id: String, errors: [String: String], status: HTTPResponse.Status) async throws -> Response {
        async let integrationAnswer = api.fetch("/portal/integrations/\(id)", as: page.principal, context: context)
        async let questionnaireAnswer = api.fetch("/portal/reviews/questionnaire", as: page.principal, context: context)
        let integration = try await integrationAnswer.objectValue ?? [:]
        let questionnaire = try await questionnaireAnswer.objectValue ?? [:]
        let questions = (questionnaire["questions"]?.arrayValue ?? []).compactMap(\.objectValue).map { q -> [String: Any] in
            let qid = q["id"]?.stringValue ?? ""
            let given = page.field("q-" + qid) ?? ""
            return [
                "id": qid, "text": q["text"]?.stringValue ?? "", "yesNo": q["kind"] == "yes_no", "required": q["required"] == .bool(true),
                "yes": given == "yes", "no": given == "no", "value": given, "error": errors["q-" + qid] ?? "",
            ]
        }
        return try page.render("review", title: "Security review of \(integration["name"]?.stringValue ?? "")", status: status, [
            "section": "Governance", "id": id, "name": integration["name"]?.stringValue ?? "", "questionnaireTitle": questionnaire["title"]?.stringValue ?? "",
            "questions": questions, "errors": errors, "dpaOnFile": page.field("dpaOnFile") == "yes",
            "form": ["dpaReference": page.field("dpaReference") ?? "", "notes": page.field("notes") ?? "", "nextReviewDue": page.field("nextReviewDue") ?? ""],
            "outcomes": ["approved", "approved_with_conditions", "rejected"].map { ["value": $0, "label": $0.replacingOccurrences(of: "_", with: " "), "selected": $0 == page.field("outcome")] },
        ])
    }
}
