import Foundation
import Hummingbird
import Ledger
import PortalCore

/// The console's pages: each reads the API routes that feed it, as the session's token.
struct ConsolePages: Sendable {
    let api: ConsoleAPI
    let clock: any WallClock

    static let integrationTypes = ["identity_provider", "cloud_storage", "analytics", "communication", "security", "enterprise"]
    static let integrationStatuses = ["active", "inactive", "error", "pending"]
    static let windows = ["1h", "24h", "7d"]

    static let notices: [String: String] = [
        "created": "The integration was created.", "saved": "The changes were saved.", "deleted": "The integration was deleted.",
        "test-passed": "The connection test passed.", "test-failed": "The connection test failed; the last error below says why.",
        "reviewed": "The security review was recorded.",
        "connected": "Connected: the provider's token is stored.",
    ]

    func register(_ routes: ConsoleRoutes, on router: Router<PortalRequestContext>) {
        ConsoleOperations(api: api).register(routes, on: router)
        ConsoleCompliance(api: api, clock: clock).register(routes, on: router)
        ConsoleConfigure(api: api).register(routes, on: router)
        ConsoleSettings(api: api).register(routes, on: router)
        ConsoleGovernance(api: api).register(routes, on: router)
        routes.page(router, .get, "/console/integrations") { _, context, page in try await integrations(page, context) }
        routes.page(router, .get, "/console/integrations/{id}") { _, context, page in
            try await integration(page, context, id: try ConsoleOperations.id(context))
        }
        routes.page(router, .get, "/console/alerts") { _, context, page in try await alerts(page, context) }
        routes.page(router, .post, "/console/alerts/silences") { _, context, page in try await silence(page, context) }
        routes.page(router, .post, "/console/alerts/silences/{id}/end") { _, context, page in
            let answer = try await api.call(.delete, "/portal/alerts/silences/\(try ConsoleOperations.id(context))", as: page.principal, context: context)
            guard answer.ok else { throw ConsolePageError(answer) }
            return ConsoleSecurity.redirect("/console/alerts?done=unsilenced")
        }
        routes.page(router, .get, "/console/ledger") { _, context, page in try await ledger(page, context, verified: nil) }
        routes.page(router, .post, "/console/ledger/verify") { _, context, page in
            let answer = try await api.call(.post, "/ledger/\(page.principal.organizationSlug)/verifications", as: page.principal, context: context)
            guard answer.ok else { throw ConsolePageError(answer) }
            return try await ledger(page, context, verified: answer.json)
        }
        routes.page(router, .get, "/console/tokens") { _, context, page in try await tokens(page, context, created: nil, errors: [:]) }
        routes.page(router, .post, "/console/tokens") { _, context, page in try await createToken(page, context) }
        routes.page(router, .post, "/console/tokens/{id}/revoke") { _, context, page in
            try await revokeToken(page, context, id: try ConsoleOperations.id(context))
        }
    }

    // MARK: Integrations

    private func integrations(_ page: ConsolePage, _ context: PortalRequestContext) async throws -> Response {
        let type = page.parameter("type").flatMap { Self.integrationTypes.contains($0) ? $0 : nil }
        let status = page.parameter("status").flatMap { Self.integrationStatuses.contains($0) ? $0 : nil }
        var path = "/portal/integrations?limit=50"
        if let type { path += "&type=\(type)" }
        if let status { path += "&status=\(status)" }
        if let cursor = page.parameter("cursor") { path += "&cursor=\(ConsoleForm.encode(cursor))" }
        let list = try await api.fetch(path, as: page.principal, context: context)
        // The page's own integrations' metrics only: an organization may have a thousand.
        let listedIDs = (list.objectValue?["items"]?.arrayValue ?? []).compactMap { $0.objectValue?["id"]?.stringValue }
        let summary = listedIDs.isEmpty ? JSONValue.object([:])
            : try await api.fetch("/portal/metrics/summary?window=1h&ids=\(listedIDs.joined(separator: ","))", as: page.principal, context: context)
        var byID: [String: [String: JSONValue]] = [:]
        for item in summary.objectValue?["integrations"]?.arrayValue ?? [] {
            if let m = item.objectValue, let id = m["integrationId"]?.stringValue { byID[id] = m }
        }
        let rows: [[String: Any]] = (list.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { item in
            let id = item["id"]?.stringValue ?? ""
            let live = byID[id] ?? [:]
            let totals = item["metrics"]?.objectValue ?? [:]
            let health = live["health"]?.stringValue ?? "idle"
            var row: [String: Any] = [
                "id": id, "name": item["name"]?.stringValue ?? "", "type": item["type"]?.stringValue ?? "",
                "status": item["status"]?.stringValue ?? "", "statusBadge": Show.badge(item["status"]?.stringValue),
                "health": health, "healthBadge": Show.badge(health),
                "requests": Show.count(totals["totalRequests"]), "successRate": Show.percent(totals["successRate"]),
                "average": Show.milliseconds(totals["averageResponseTime"]), "p95": Show.milliseconds(live["p95ResponseTime"]),
                "hourRequests": Show.count(live["totalRequests"]), "hourErrorRate": Show.percent(live["errorRate"]),
            ]
            if let counts = live["lastHour"]?.arrayValue, counts.count == 60 { row["sparkline"] = Chart.sparkline(counts) }
            if let last = item["lastSync"]?.stringValue ?? item["lastSyncAt"]?.stringValue { row["lastSync"] = Show.time(.string(last)) }
            if let error = live["lastError"]?.objectValue {
                row["lastError"] = [error["message"]?.stringValue, error["endpoint"]?.stringValue, Show.time(error["timestamp"])]
                    .compactMap { $0 }.joined(separator: " · ")
            }
            return row
        }
        var values: [String: Any] = [
            "section": "Integrations", "rows": rows, "empty": rows.isEmpty, "canManage": page.principal.role.allows(.manageIntegrations),
            "types": Self.integrationTypes.map { ["value": $0, "selected": $0 == type] },
            "statuses": Self.integrationStatuses.map { ["value": $0, "selected": $0 == status] },
            "hourRequests": Show.count(summary.objectValue?["totals"]?.objectValue?["totalRequests"]),
            "hourErrorRate": Show.percent(summary.objectValue?["totals"]?.objectValue?["errorRate"]),
            "hourP95": Show.milliseconds(summary.objectValue?["totals"]?.objectValue?["p95ResponseTime"]),
        ]
        // On one page with no filter, the tiles are the organization's; otherwise those of the rows shown.
        values["tilesScope"] = list.objectValue?["nextCursor"]?.stringValue == nil && page.parameter("cursor") == nil && type == nil && status == nil
            ? "all integrations" : "the integrations listed"
        if let next = list.objectValue?["nextCursor"]?.stringValue {
            var query = "cursor=\(ConsoleForm.encode(next))"
            if let type { query += "&type=\(type)" }
            if let status { query += "&status=\(status)" }
            values["next"] = "/console/integrations?\(query)"
        }
        if let notice = page.parameter("done").flatMap({ Self.notices[$0] }) { values["notice"] = notice }
        return try page.render("integrations", title: "Integrations", values)
    }

    private func integration(_ page: ConsolePage, _ context: PortalRequestContext, id: String) async throws -> Response {
        let window = page.parameter("window").flatMap { Self.windows.contains($0) ? $0 : nil } ?? "1h"
        let item = try await api.fetch("/portal/integrations/\(id)", as: page.principal, context: context)
        async let metricsAnswer = api.fetch("/portal/integrations/\(id)/metrics?window=\(window)", as: page.principal, context: context)
        async let webhooksAnswer = api.call(.get, "/portal/integrations/\(id)/webhooks", as: page.principal, context: context)
        async let seriesAnswer = api.fetch("/portal/integrations/\(id)/metrics/series?window=\(window)", as: page.principal, context: context)
        async let reviewsAnswer = api.fetch("/portal/integrations/\(id)/reviews", as: page.principal, context: context)
        async let sloAnswer = api.fetch("/portal/integrations/\(id)/slo", as: page.principal, context: context)
        let metrics = try await metricsAnswer.objectValue ?? [:]
        let points = try await seriesAnswer.objectValue?["points"]?.arrayValue ?? []
        let webhooks = try await webhooksAnswer
        let object = item.objectValue ?? [:]
        let credentials = (object["credentials"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { ["name": $0.key, "masked": $0.value.stringValue ?? "••••"] }
        var values: [String: Any] = [
            "section": "Integrations", "id": id, "name": object["name"]?.stringValue ?? "",
            "type": object["type"]?.stringValue ?? "", "authMethod": object["authMethod"]?.stringValue ?? "",
            "baseUrl": object["baseUrl"]?.stringValue ?? "", "status": object["status"]?.stringValue ?? "",
            "statusBadge": Show.badge(object["status"]?.stringValue), "credentials": credentials,
            "createdAt": Show.time(object["createdAt"]) ?? "", "updatedAt": Show.time(object["updatedAt"]) ?? "",
            "health": metrics["health"]?.stringValue ?? "idle", "healthBadge": Show.badge(metrics["health"]?.stringValue),
            "windows": Self.windows.map { ["value": $0, "current": $0 == window, "href": "/console/integrations/\(id)?window=\($0)"] },
            "window": window,
            "requests": Show.count(metrics["totalRequests"]), "errorRate": Show.percent(metrics["errorRate"]),
            "successRate": Show.percent(metrics["successRate"]), "average": Show.milliseconds(metrics["averageResponseTime"]),
            "p50": Show.milliseconds(metrics["p50ResponseTime"]), "p95": Show.milliseconds(metrics["p95ResponseTime"]),
            "p99": Show.milliseconds(metrics["p99ResponseTime"]),
            "outcomes": (metrics["byOutcome"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { ["name": $0.key, "count": Show.count($0.value)] },
            "requestChart": Chart.requests(points, label: "Requests over \(window)"),
            "latencyChart": Chart.latency(points, label: "Latency over \(window)"),
            "review": try await reviewsAnswer.objectValue?["items"]?.arrayValue?.first?.objectValue.map { r -> [String: Any] in
                [
                    "outcome": r["outcome"]?.stringValue?.replacingOccurrences(of: "_", with: " ") ?? "", "reviewer": r["reviewer"]?.stringValue ?? "",
                    "reviewedAt": Show.time(r["reviewedAt"]) ?? "", "nextDue": Show.time(r["nextReviewDue"]) ?? "", "due": r["due"] == .bool(true),
                    "dpa": r["dpaOnFile"] == .bool(true), "findings": (r["findings"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
                ]
            } as Any,
            "canReview": page.principal.role.allows(.approveIntegrations),
            "objectives": try await sloAnswer.objectValue?["objectives"]?.arrayValue?.compactMap(\.objectValue).map { o -> [String: Any] in
                let burns = o["burnRates"]?.objectValue ?? [:]
                func burn(_ window: String) -> String { if case .double(let b)? = burns[window] { String(format: "%.1f×", b) } else { "–" } }
                let threshold = o["thresholdMs"].map { " under \(Show.count($0)) ms" } ?? ""
                return [
                    "indicator": (o["indicator"]?.stringValue ?? "") + threshold, "objective": Show.percent(o["objective"]),
                    "window": o["window"]?.stringValue ?? "", "attainment": Show.percent(o["attainment"]),
                    "met": o["met"] == .bool(true), "missed": o["met"] == .bool(false),
                    "remaining": Show.percent(o["errorBudget"]?.objectValue?["remaining"]),
                    "burn1h": burn("1h"), "burn6h": burn("6h"),
                ]
            } ?? [],
            "hasObjectives": try await sloAnswer.objectValue?["configured"] == .bool(true),
            "approvalPending": object["approval"]?.objectValue?["pending"] == .bool(true),
            "servingApproved": object["approval"]?.objectValue?["servingApproved"] == .bool(true),
            "approvedDigest": object["approval"]?.objectValue?["approvedDigest"]?.stringValue ?? "",
            "currentDigest": object["approval"]?.objectValue?["currentDigest"]?.stringValue ?? "",
            "canManage": page.principal.role.allows(.manageIntegrations),
            "canConnect": page.principal.role.allows(.manageIntegrations) && object["authMethod"]?.stringValue == "oauth2"
                && object["config"]?.objectValue?["oauth"]?.objectValue?["authorizationUrl"] != nil,
            "csrf": page.session.csrf,
        ]
        if let notice = page.parameter("done").flatMap({ Self.notices[$0] }) { values["notice"] = notice }
        if let error = metrics["lastError"]?.objectValue {
            values["lastError"] = Show.context(.object(error)) ?? [:]
        }
        if webhooks.ok {
            values["webhooks"] = (webhooks.json.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { w -> [String: Any] in
                [
                    "name": w["name"]?.stringValue ?? "", "url": w["url"]?.stringValue ?? w["receiveUrl"]?.stringValue ?? "",
                    "scheme": w["scheme"]?.stringValue ?? "", "events": (w["events"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
                ]
            }
        }
        return try page.render("integration", title: object["name"]?.stringValue ?? "Integration", values)
    }

    // MARK: Alerts

    private func alerts(_ page: ConsolePage, _ context: PortalRequestContext, errors: [String: String] = [:], status: HTTPResponse.Status = .ok) async throws -> Response {
        async let alertsAnswer = api.fetch("/portal/alerts", as: page.principal, context: context)
        async let receiversAnswer = api.call(.get, "/portal/alerts/receivers", as: page.principal, context: context)
        async let notificationsAnswer = api.call(.get, "/portal/alerts/notifications?limit=20", as: page.principal, context: context)
        let answer = try await alertsAnswer
        let receivers = try await receiversAnswer
        let notifications = try await notificationsAnswer
        func labels(_ value: JSONValue?) -> String {
            (value?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.stringValue ?? "")" }.joined(separator: ", ")
        }
        func rows(_ key: String) -> [[String: Any]] {
            (answer.objectValue?[key]?.arrayValue ?? []).compactMap(\.objectValue).map { a in
                [
                    "rule": a["rule"]?.stringValue ?? "", "labelText": labels(a["labels"]), "value": a["value"].map { Show.number($0).map { String(format: "%.3g", $0) } ?? "" } ?? "",
                    "since": Show.time(a["firedAt"] ?? a["activeAt"]) ?? "", "ended": Show.time(a["resolvedAt"]) ?? "",
                    "summary": a["annotations"]?.objectValue?["summary"]?.stringValue ?? "", "silenced": a["silenced"] == .bool(true),
                ]
            }
        }
        let canManage = page.principal.role.allows(.manageIntegrations)
        let active = rows("active")
        let recent = rows("recent")
        let silences: [[String: Any]] = (answer.objectValue?["silences"]?.arrayValue ?? []).compactMap(\.objectValue).map { s in
            [
                "silenceId": s["id"]?.stringValue ?? "", "comment": s["comment"]?.stringValue ?? "", "endsAt": Show.time(s["endsAt"]) ?? "",
                "matchers": (s["matchers"]?.arrayValue ?? []).compactMap(\.objectValue).map { "\($0["name"]?.stringValue ?? "")=\($0["value"]?.stringValue ?? "")" }.joined(separator: ", "),
                "createdBy": s["createdBy"]?.stringValue ?? "",
            ]
        }
        var values: [String: Any] = [
            "section": "Alerts", "active": active, "recent": recent, "noActive": active.isEmpty, "noRecent": recent.isEmpty,
            "silences": silences, "noSilences": silences.isEmpty, "canManage": canManage, "errors": errors,
        ]
        if receivers.ok {
            values["receivers"] = (receivers.json.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { r -> [String: Any] in
                ["name": r["name"]?.stringValue ?? "", "kind": r["kind"]?.stringValue ?? "", "signed": r["signed"] == .bool(true), "createdAt": Show.time(r["createdAt"]) ?? ""]
            }
        }
        if notifications.ok {
            values["notifications"] = (notifications.json.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { n -> [String: Any] in
                let state = n["status"]?.stringValue ?? ""
                return [
                    "status": state, "statusBadge": Show.badge(n["delivered"] == .bool(true) ? "ok" : state), "attempts": Show.count(n["attempts"]),
                    "httpStatus": n["httpStatus"].flatMap { Show.number($0) }.map { String(Int($0)) } ?? "", "error": n["error"]?.stringValue ?? "",
                    "createdAt": Show.time(n["createdAt"]) ?? "",
                ]
            }
        }
        if let notice = page.parameter("done").flatMap({ ["silenced": "The silence is in force.", "unsilenced": "The silence ended."][$0] }) { values["notice"] = notice }
        return try page.render("alerts", title: "Alerts", status: status, values)
    }

    private func silence(_ page: ConsolePage, _ context: PortalRequestContext) async throws -> Response {
        let matchers: [JSONValue] = (page.field("matchers") ?? "").split(separator: ",").compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { return nil }
            return ["name": .string(parts[0]), "value": .string(parts[1])]
        }
        let body: JSONValue = [
            "matchers": .array(matchers), "duration": .string(page.field("duration") ?? ""), "comment": .string(page.field("comment") ?? ""),
        ]
        let answer = try await api.call(.post, "/portal/alerts/silences", body: body, as: page.principal, context: context)
        if answer.status == .unprocessableContent {
            var errors: [String: String] = [:]
            for (pointer, message) in answer.fieldErrors { errors[pointer.hasPrefix("/matchers") ? "matchers" : String(pointer.dropFirst())] = message }
            if errors.isEmpty { errors["form"] = answer.detail }
            return try await alerts(page, context, errors: errors, status: .unprocessableContent)
        }
        guard answer.ok else { throw ConsolePageError(answer) }
        return ConsoleSecurity.redirect("/console/alerts?done=silenced")
    }

    // MARK: Ledger

    private func ledger(_ page: ConsolePage, _ context: PortalRequestContext, verified: JSONValue?) async throws -> Response {
        let slug = page.principal.organizationSlug
        async let checkpointAnswer = api.call(.get, "/ledger/\(slug)/checkpoint", as: page.principal, context: context)
        async let keysAnswer = api.call(.get, "/ledger/\(slug)/keys", as: page.principal, context: context)
        let checkpointResponse = try await checkpointAnswer
        let keysResponse = try await keysAnswer
        guard checkpointResponse.ok else { throw ConsolePageError(checkpointResponse) }
        guard keysResponse.ok else { throw ConsolePageError(keysResponse) }
        let note = checkpointResponse.json.stringValue ?? ""
        let keys = keysResponse.json.stringValue ?? ""
        let parsed = CheckpointText(note)
        var values: [String: Any] = [
            "section": "Ledger", "slug": slug, "checkpoint": note, "keys": keys,
            "origin": parsed.origin, "size": Show.count(.int(parsed.size)), "root": parsed.root,
            "signatures": parsed.signatures.map { ["name": $0.name, "keyID": $0.keyID, "algorithm": $0.algorithm] },
            "verifierKeys": keys.split(separator: "\n").map { line -> [String: Any] in
                // name+keyID+base64, where the base64 part may itself contain "+".
                let parts = line.split(separator: "+", maxSplits: 2)
                return ["line": String(line), "name": parts.first.map(String.init) ?? "", "keyID": parts.count > 1 ? String(parts[1]) : "",
                        "algorithm": CheckpointText.algorithm(ofKey: parts.count > 2 ? String(parts[2]) : "")]
            },
        ]
        if let v = verified?.objectValue {
            var shown: [String: Any] = [
                "passed": v["passed"] == .bool(true), "size": Show.count(v["size"]), "checkpoints": Show.count(v["checkpointsChecked"]),
                "milliseconds": Show.count(v["milliseconds"]), "root": v["root"]?.stringValue ?? "",
            ]
            if let failure = v["failure"]?.objectValue {
                shown["failureSeq"] = Show.count(failure["seq"])
                shown["failureMessage"] = failure["message"]?.stringValue ?? ""
            }
            values["verified"] = shown
        }
        if let seqText = page.parameter("seq") {
            values["seq"] = seqText
            guard let seq = Int64(seqText), seq >= 0 else {
                values["lookupError"] = "A sequence number is a whole number from 0."
                return try page.render("ledger", title: "Ledger", values)
            }
            let entry = try await api.call(.get, "/ledger/\(slug)/entries/\(seq)", as: page.principal, context: context)
            if entry.ok, let object = entry.json.objectValue {
                // The entry's canonical bytes (RFC 8785): what the ledger hashed, and what the browser hashes.
                let entryText = String(decoding: CanonicalJSON.encodeAny(object["entry"] ?? .null), as: UTF8.self)
                let proof: JSONValue = .object([
                    "seq": .int(seq), "treeSize": object["treeSize"] ?? .null, "hash": object["hash"] ?? .null,
                    "entryText": .string(entryText), "inclusionProof": object["inclusionProof"] ?? .array([]),
                    "checkpoint": object["checkpoint"] ?? .null, "keys": .string(keys),
                ])
                values["entry"] = [
                    "json": entryText, "hash": object["hash"]?.stringValue ?? "",
                    "treeSize": Show.count(object["treeSize"]), "proof": (object["inclusionProof"]?.arrayValue ?? []).compactMap(\.stringValue),
                    "data": proof.sortedText,
                ]
            } else {
                values["lookupError"] = entry.status == .notFound ? "No entry \(seq) in this ledger yet." : entry.detail
            }
        }
        return try page.render("ledger", title: "Ledger", values)
    }

    // MARK: Tokens

    private func tokens(_ page: ConsolePage, _ context: PortalRequestContext, created: JSONValue?, errors: [String: String]) async throws -> Response {
        let list = try await api.fetch("/portal/tokens?limit=200", as: page.principal, context: context)
        let rows: [[String: Any]] = (list.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { t in
            [
                "id": t["id"]?.stringValue ?? "", "role": t["role"]?.stringValue ?? "", "owner": t["owner"]?.stringValue ?? "",
                "description": t["description"]?.stringValue ?? "", "state": t["state"]?.stringValue ?? "",
                "stateBadge": Show.badge(t["state"]?.stringValue), "active": t["state"]?.stringValue == "active",
                "createdAt": Show.time(t["createdAt"]) ?? "", "expiresAt": Show.time(t["expiresAt"]) ?? "never",
                "lastUsedAt": Show.time(t["lastUsedAt"]) ?? "—", "self": t["id"]?.stringValue == page.principal.tokenID.uuidString.lowercased(),
            ]
        }
        var values: [String: Any] = [
            "section": "Tokens", "rows": rows, "roles": Role.allCases.map { ["value": $0.rawValue, "selected": $0.rawValue == (page.field("role") ?? "auditor")] },
            "form": ["owner": page.field("owner") ?? "", "description": page.field("description") ?? "", "expiresIn": page.field("expiresIn") ?? "90d"],
            "errors": errors,
        ]
        if let created = created?.objectValue {
            values["created"] = ["token": created["token"]?.stringValue ?? "", "role": created["role"]?.stringValue ?? "", "owner": created["owner"]?.stringValue ?? ""]
        }
        return try page.render("tokens", title: "Tokens", status: errors.isEmpty ? .ok : .unprocessableContent, values)
    }

    private func createToken(_ page: ConsolePage, _ context: PortalRequestContext) async throws -> Response {
        var body: [String: JSONValue] = [
            "role": .string(page.field("role") ?? ""), "owner": .string(page.field("owner") ?? ""),
        ]
        if let description = page.field("description"), !description.isEmpty { body["description"] = .string(description) }
        if let expires = page.field("expiresIn"), !expires.isEmpty { body["expiresIn"] = .string(expires) }
        let answer = try await api.call(.post, "/portal/tokens", body: .object(body), as: page.principal, context: context)
        if answer.ok { return try await tokens(page, context, created: answer.json, errors: [:]) }
        if answer.status == .unprocessableContent {
            var errors = answer.fieldErrors.reduce(into: [String: String]()) { $0[String($1.key.dropFirst())] = $1.value }
            if errors.isEmpty { errors["form"] = answer.detail }
            return try await tokens(page, context, created: nil, errors: errors)
        }
        throw ConsolePageError(answer)
    }

    private func revokeToken(_ page: ConsolePage, _ context: PortalRequestContext, id: String) async throws -> Response {
        let answer = try await api.call(.delete, "/portal/tokens/\(id)", as: page.principal, context: context)
        guard answer.ok else { throw ConsolePageError(answer) }
        return ConsoleSecurity.redirect("/console/tokens")
    }
}

/// A checkpoint (C2SP signed note) as the ledger page shows it: origin, size, root and each signature's key
/// name and key ID. Display only: the browser checks the signature itself (`proof.js`).
struct CheckpointText {
    struct Signature {
        var name: String
        var keyID: String
        var algorithm: String
    }

    var origin = ""
    var size: Int64 = 0
    var root = ""
    var signatures: [Signature] = []

    init(_ note: String) {
        let parts = note.components(separatedBy: "\n\n")
        let body = parts.first?.split(separator: "\n", omittingEmptySubsequences: false) ?? []
        origin = body.count > 0 ? String(body[0]) : ""
        size = body.count > 1 ? Int64(body[1]) ?? 0 : 0
        root = body.count > 2 ? String(body[2]) : ""
        for line in (parts.count > 1 ? parts[1] : "").split(separator: "\n") where line.hasPrefix("— ") {
            let fields = line.dropFirst(2).split(separator: " ")
            guard fields.count == 2, let signature = Data(base64Encoded: String(fields[1])), signature.count > 4 else { continue }
            let algorithm = signature.count == 4 + 64 ? "Ed25519" : signature.count == 4 + 3309 ? "ML-DSA-65" : "unknown"
            signatures.append(Signature(name: String(fields[0]), keyID: Hex.encode(signature.prefix(4)), algorithm: algorithm))
        }
    }

    /// The algorithm of a verifier key's base64 part, from its type byte.
    static func algorithm(ofKey base64: String) -> String {
        guard let key = Data(base64Encoded: base64), let type = key.first else { return "unknown" }
        return type == 0x01 && key.count == 33 ? "Ed25519" : key.count > 1900 ? "ML-DSA-65" : "type \(type)"
    }
}
