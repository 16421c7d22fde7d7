import Foundation
import Hummingbird
import PortalCore

/// The console's pages for compliance officers and auditors: evidence bundles, the record of processing,
/// data-subject requests and retention.
struct ConsoleCompliance: Sendable {
    let api: ConsoleAPI
    let clock: any WallClock

    static let notices: [String: String] = [
        "report-requested": "The bundle is being built; this page shows it when it is ready.",
        "retention-saved": "The retention periods were saved.",
    ]

    func register(_ routes: ConsoleRoutes, on router: Router<PortalRequestContext>) {
        routes.page(router, .get, "/console/compliance") { _, context, page in try await compliance(page, context, reportErrors: [:], status: .ok) }
        routes.page(router, .get, "/console/compliance/register") { _, context, page in try await register(page, context) }
        routes.page(router, .post, "/console/reports") { _, context, page in
            let body: JSONValue = [
                "kind": .string(page.field("kind") ?? ""), "from": .string(page.field("from") ?? ""), "to": .string(page.field("to") ?? ""),
            ]
            let answer = try await api.call(.post, "/portal/reports", body: body, as: page.principal, context: context)
            if answer.status == .unprocessableContent {
                var errors = answer.fieldErrors.reduce(into: [String: String]()) { $0[String($1.key.dropFirst())] = $1.value }
                if errors.isEmpty { errors["form"] = answer.detail }
                return try await compliance(page, context, reportErrors: errors, status: .unprocessableContent)
            }
            return try ConsoleOperations.back(answer, to: "/console/compliance", notice: "report-requested")
        }
        routes.page(router, .get, "/console/reports/{id}/download") { _, context, page in
            try await api.forward("/portal/reports/\(try ConsoleOperations.id(context))/download", as: page.principal, context: context)
        }
        routes.page(router, .get, "/console/ledger/export") { _, context, page in
            try await api.forward("/ledger/\(page.principal.organizationSlug)/export", as: page.principal, context: context)
        }
        routes.page(router, .post, "/console/retention") { _, context, page in
            var body: [String: JSONValue] = [:]
            for key in ["requestLogsDays", "storedBodiesDays", "webhookPayloadsDays"] {
                body[key] = page.field(key).flatMap { Int64($0) }.map(JSONValue.int) ?? .string(page.field(key) ?? "")
            }
            let answer = try await api.call(.put, "/portal/retention", body: .object(body), as: page.principal, context: context)
            return try ConsoleOperations.back(answer, to: "/console/compliance", notice: "retention-saved")
        }
        for action in ["export", "erase"] {
            routes.page(router, .post, "/console/subjects/\(action)") { _, context, page in
                let subject = (page.field("subject") ?? "").trimmingCharacters(in: .whitespaces)
                guard !subject.isEmpty, subject.utf8.count <= 320 else {
                    return try await compliance(page, context, reportErrors: ["subject": "name the subject (1 to 320 characters)"], status: .unprocessableContent)
                }
                let answer = try await api.call(.post, "/portal/subjects/\(ConsoleForm.encode(subject))/\(action)", as: page.principal, context: context)
                guard answer.ok else { throw ConsolePageError(answer) }
                return try page.render("subject", title: action == "export" ? "Subject export" : "Subject erased", [
                    "section": "Compliance", "subject": subject, "erased": action == "erase",
                    "result": Show.prettyJSON(answer.json),
                    "records": Show.count(.int(Int64(answer.json.objectValue?["records"]?.arrayValue?.count ?? 0))),
                    "recordsDeleted": Show.count(answer.json.objectValue?["recordsDeleted"]),
                    "keyDestroyed": answer.json.objectValue?["keyDestroyed"] == .bool(true),
                ])
            }
        }
    }

    private func compliance(_ page: ConsolePage, _ context: PortalRequestContext, reportErrors: [String: String], status: HTTPResponse.Status) async throws -> Response {
        let today = String(Timestamp.rfc3339(clock.now()).prefix(10))
        let monthAgo = String(Timestamp.rfc3339(clock.now().addingTimeInterval(-29 * 86_400)).prefix(10))
        async let reportsAnswer = api.fetch("/portal/reports?limit=50", as: page.principal, context: context)
        async let retentionAnswer = api.call(.get, "/portal/retention", as: page.principal, context: context)
        let reports = try await reportsAnswer
        let retention = try await retentionAnswer
        let role = page.principal.role
        let rows: [[String: Any]] = (reports.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { r in
            let state = r["status"]?.stringValue ?? ""
            return [
                "reportId": r["id"]?.stringValue ?? "", "kind": (r["kind"]?.stringValue ?? "").uppercased(), "from": r["from"]?.stringValue ?? "",
                "to": r["to"]?.stringValue ?? "", "status": state, "statusBadge": Show.badge(state), "ready": state == "completed",
                "checkpointSize": Show.count(r["checkpointSize"]), "bytes": Show.count(r["bytes"]), "error": r["error"]?.stringValue ?? "",
                "manifestDigest": r["manifestDigest"]?.stringValue ?? "", "createdAt": Show.time(r["createdAt"]) ?? "",
            ]
        }
        var values: [String: Any] = [
            "section": "Compliance", "reports": rows, "noReports": rows.isEmpty,
            "live": rows.contains { ($0["status"] as? String).map { $0 == "pending" || $0 == "running" } ?? false },
            "canRequest": role.allows(.manageReports), "errors": reportErrors, "today": today, "monthAgo": monthAgo,
        ]
        if retention.ok, let r = retention.json.objectValue {
            values["retention"] = [
                "requestLogsDays": Show.count(r["requestLogsDays"]), "storedBodiesDays": Show.count(r["storedBodiesDays"]),
                "webhookPayloadsDays": Show.count(r["webhookPayloadsDays"]), "isDefault": r["isDefault"] == .bool(true),
                "canEdit": role.allows(.manageReports),
            ]
        }
        if let notice = page.parameter("done").flatMap({ Self.notices[$0] }) { values["notice"] = notice }
        return try page.render("compliance", title: "Compliance", status: status, values)
    }

    /// The record of processing (Art. 30) for a period, a hundred recipients a page.
    private func register(_ page: ConsolePage, _ context: PortalRequestContext) async throws -> Response {
        let today = String(Timestamp.rfc3339(clock.now()).prefix(10))
        let monthAgo = String(Timestamp.rfc3339(clock.now().addingTimeInterval(-29 * 86_400)).prefix(10))
        let from = page.parameter("from").flatMap { Self.isDay($0) ? $0 : nil } ?? monthAgo
        let to = page.parameter("to").flatMap { Self.isDay($0) ? $0 : nil } ?? today
        let number = max(1, min(1_000, page.parameter("page").flatMap { Int($0) } ?? 1))
        let r = try await api.fetch("/portal/compliance/processing-register?from=\(from)&to=\(to)", as: page.principal, context: context).objectValue ?? [:]
        let all = (r["records"]?.arrayValue ?? []).compactMap(\.objectValue)
        let perPage = 100
        let records: [[String: Any]] = all.dropFirst((number - 1) * perPage).prefix(perPage).map { record in
            [
                "name": record["integration"]?.objectValue?["name"]?.stringValue ?? record["name"]?.stringValue ?? "",
                "purposes": Self.list(record["purposes"] ?? record["declared"]?.objectValue?["purposes"]),
                "categories": Self.list(record["dataCategories"] ?? record["declared"]?.objectValue?["dataCategories"]),
                "countries": Self.list(record["observedCountries"] ?? record["observed"]?.objectValue?["countries"]),
                "flags": Self.list(record["flags"]),
            ]
        }
        let exceptions = (r["exceptions"]?.arrayValue ?? []).map { $0.stringValue ?? $0.objectValue?["message"]?.stringValue ?? $0.sortedText }
        var values: [String: Any] = [
            "section": "Compliance", "from": from, "to": to, "records": records, "count": Show.count(.int(Int64(all.count))),
            "exceptions": exceptions, "hasExceptions": !exceptions.isEmpty, "ledgerSize": Show.count(r["ledgerSize"]),
        ]
        if number > 1 { values["previous"] = "/console/compliance/register?from=\(from)&to=\(to)&page=\(number - 1)" }
        if all.count > number * perPage { values["next"] = "/console/compliance/register?from=\(from)&to=\(to)&page=\(number + 1)" }
        return try page.render("register", title: "Record of processing", values)
    }

    static func isDay(_ text: String) -> Bool {
        text.utf8.count == 10 && Timestamp.parse(text + "T00:00:00Z") != nil
    }

    static func list(_ value: JSONValue?) -> String {
        (value?.arrayValue ?? []).map { $0.stringValue ?? $0.objectValue?["code"]?.stringValue ?? $0.sortedText }.joined(separator: ", ")
    }
}
