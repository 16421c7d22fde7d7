import Foundation
import Hummingbird
import PortalCore

/// The console's pages for running an integration: its webhooks (the seed's WebhookManager) and its syncs.
struct ConsoleOperations: Sendable {
    let api: ConsoleAPI

    static let schemes = ["standard-webhooks", "stripe", "github", "slack", "shopify", "twilio", "sendgrid", "hubspot", "hmac", "shared-secret"]
    static let eventStatuses = ["pending", "retrying", "processed", "failed"]

    /// What a finished action says on the page it returns to (by key, so a URL cannot make a page say anything).
    static let notices: [String: String] = [
        "webhook-created": "The webhook endpoint was created. Give the provider its URL and secret.",
        "webhook-rotated": "The signing secret was replaced; the previous one keeps verifying for the overlap you chose.",
        "webhook-deleted": "The webhook endpoint was deleted.",
        "webhook-updated": "The events the endpoint takes were saved.",
        "events-retried": "The failed events were queued again.",
        "event-retried": "The event was queued again.",
        "sync-started": "The sync started.",
        "sync-cancelled": "The job was asked to stop.",
        "sync-paused": "The schedule is paused.",
        "sync-resumed": "The schedule is running again.",
        "conflict-resolved": "The conflict was resolved.",
    ]

    func register(_ routes: ConsoleRoutes, on router: Router<PortalRequestContext>) {
        routes.page(router, .get, "/console/integrations/{id}/webhooks") { _, context, page in
            try await webhooks(page, context, id: try Self.id(context), form: [:], errors: [:], status: .ok, tested: nil)
        }
        routes.page(router, .post, "/console/integrations/{id}/webhooks") { _, context, page in try await createWebhook(page, context, id: try Self.id(context)) }
        routes.page(router, .post, "/console/integrations/{id}/webhooks/{webhookId}/rotate") { _, context, page in
            let id = try Self.id(context)
            let webhook = try Self.id(context, "webhookId")
            var body: [String: JSONValue] = ["secret": .string(page.field("secret") ?? "")]
            if let overlap = page.field("overlapSeconds").flatMap(Int64.init) { body["overlapSeconds"] = .int(overlap) }
            let answer = try await api.call(.patch, "/portal/integrations/\(id)/webhooks/\(webhook)", body: .object(body), as: page.principal, context: context)
            if answer.status == .unprocessableContent {
                return try await webhooks(page, context, id: id, form: [:], errors: ["rotate-\(webhook)": answer.fieldErrors.values.joined(separator: "; ")], status: .unprocessableContent, tested: nil)
            }
            return try Self.back(answer, to: "/console/integrations/\(id)/webhooks", notice: "webhook-rotated")
        }
        routes.page(router, .post, "/console/integrations/{id}/webhooks/{webhookId}/events") { _, context, page in
            let id = try Self.id(context)
            let webhook = try Self.id(context, "webhookId")
            let events = (page.field("events") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            let answer = try await api.call(
                .patch, "/portal/integrations/\(id)/webhooks/\(webhook)", body: ["events": .array(events.map(JSONValue.string))], as: page.principal, context: context
            )
            if answer.status == .unprocessableContent {
                return try await webhooks(page, context, id: id, form: [:], errors: ["rotate-\(webhook)": answer.fieldErrors.values.joined(separator: "; ")], status: .unprocessableContent, tested: nil)
            }
            return try Self.back(answer, to: "/console/integrations/\(id)/webhooks", notice: "webhook-updated")
        }
        routes.page(router, .post, "/console/integrations/{id}/webhooks/{webhookId}/delete") { _, context, page in
            let id = try Self.id(context)
            let answer = try await api.call(.delete, "/portal/integrations/\(id)/webhooks/\(try Self.id(context, "webhookId"))", as: page.principal, context: context)
            return try Self.back(answer, to: "/console/integrations/\(id)/webhooks", notice: "webhook-deleted")
        }
        routes.page(router, .post, "/console/integrations/{id}/webhooks/{webhookId}/test") { _, context, page in
            let id = try Self.id(context)
            let answer = try await api.call(.post, "/portal/integrations/\(id)/webhooks/\(try Self.id(context, "webhookId"))/test", as: page.principal, context: context)
            guard answer.ok else { throw ConsolePageError(answer) }
            return try await webhooks(page, context, id: id, form: [:], errors: [:], status: .ok, tested: answer.json)
        }
        routes.page(router, .post, "/console/integrations/{id}/webhooks/retry") { _, context, page in
            let id = try Self.id(context)
            let answer = try await api.call(.post, "/portal/webhooks/events/retry", body: ["integrationId": .string(id)], as: page.principal, context: context)
            return try Self.back(answer, to: "/console/integrations/\(id)/webhooks?status=pending", notice: "events-retried")
        }
        routes.page(router, .post, "/console/integrations/{id}/webhooks/events/{eventId}/retry") { _, context, page in
            let id = try Self.id(context)
            let answer = try await api.call(.post, "/portal/webhooks/events/\(try Self.id(context, "eventId"))/retry", as: page.principal, context: context)
            return try Self.back(answer, to: "/console/integrations/\(id)/webhooks", notice: "event-retried")
        }

        routes.page(router, .get, "/console/integrations/{id}/sync") { _, context, page in try await syncs(page, context, id: try Self.id(context)) }
        routes.page(router, .get, "/console/integrations/{id}/records/{entity}") { _, context, page in
            try await records(page, context, id: try Self.id(context), entity: context.parameters.get("entity") ?? "")
        }
        routes.page(router, .post, "/console/integrations/{id}/sync") { _, context, page in
            let id = try Self.id(context)
            var body: [String: JSONValue] = ["syncType": .string(page.field("syncType") ?? "full")]
            let entities = page.fields.filter { $0.0 == "entity" }.map(\.1)
            if !entities.isEmpty { body["entities"] = .array(entities.map(JSONValue.string)) }
            let answer = try await api.call(.post, "/portal/integrations/\(id)/sync", body: .object(body), as: page.principal, context: context)
            return try Self.back(answer, to: "/console/integrations/\(id)/sync", notice: "sync-started")
        }
        routes.page(router, .post, "/console/integrations/{id}/sync/jobs/{jobId}/cancel") { _, context, page in
            let id = try Self.id(context)
            let answer = try await api.call(.post, "/portal/integrations/\(id)/sync/jobs/\(try Self.id(context, "jobId"))/cancel", as: page.principal, context: context)
            return try Self.back(answer, to: "/console/integrations/\(id)/sync", notice: "sync-cancelled")
        }
        for action in ["pause", "resume"] {
            routes.page(router, .post, "/console/integrations/{id}/sync/\(action)") { _, context, page in
                let id = try Self.id(context)
                let answer = try await api.call(.post, "/portal/integrations/\(id)/sync/\(action)", as: page.principal, context: context)
                return try Self.back(answer, to: "/console/integrations/\(id)/sync", notice: action == "pause" ? "sync-paused" : "sync-resumed")
            }
        }
        routes.page(router, .post, "/console/integrations/{id}/sync/conflicts/{conflictId}/resolve") { _, context, page in
            let id = try Self.id(context)
            let choose = page.field("choose") == "destination" ? "destination" : "source"
            let answer = try await api.call(
                .post, "/portal/integrations/\(id)/sync/conflicts/\(try Self.id(context, "conflictId"))/resolve", body: ["choose": .string(choose)],
                as: page.principal, context: context
            )
            return try Self.back(answer, to: "/console/integrations/\(id)/sync", notice: "conflict-resolved")
        }
    }

    // MARK: Webhooks

    private func webhooks(
        _ page: ConsolePage, _ context: PortalRequestContext, id: String, form: [String: String], errors: [String: String],
        status: HTTPResponse.Status, tested: JSONValue?
    ) async throws -> Response {
        let filter = page.parameter("status").flatMap { Self.eventStatuses.contains($0) ? $0 : nil }
        async let integrationAnswer = api.fetch("/portal/integrations/\(id)", as: page.principal, context: context)
        async let endpointsAnswer = api.fetch("/portal/integrations/\(id)/webhooks", as: page.principal, context: context)
        async let logAnswer = api.fetch("/portal/integrations/\(id)/webhooks/logs?limit=50" + (filter.map { "&status=\($0)" } ?? ""), as: page.principal, context: context)
        let integration = try await integrationAnswer.objectValue ?? [:]
        let endpoints = try await endpointsAnswer
        let log = try await logAnswer
        let canManage = page.principal.role.allows(.manageIntegrations)
        var names: [String: String] = [:]
        let rows: [[String: Any]] = (endpoints.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { w in
            let webhookID = w["id"]?.stringValue ?? ""
            names[webhookID] = w["endpoint"]?.stringValue ?? ""
            var row: [String: Any] = [
                "webhookId": webhookID, "endpoint": w["endpoint"]?.stringValue ?? "", "url": w["url"]?.stringValue ?? "",
                "scheme": w["scheme"]?.stringValue ?? "",
                "events": (w["events"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
                "createdAt": Show.time(w["createdAt"]) ?? "",
            ]
            if let rotation = w["secretRotation"]?.objectValue, let until = Show.time(rotation["previousValidUntil"] ?? rotation["overlapUntil"]) {
                row["previousUntil"] = until
            }
            if let error = errors["rotate-\(webhookID)"] { row["rotateError"] = error }
            return row
        }
        let events: [[String: Any]] = (log.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { e in
            let state = e["status"]?.stringValue ?? ""
            return [
                "eventId": e["id"]?.stringValue ?? "", "endpoint": names[e["endpointId"]?.stringValue ?? ""] ?? "",
                "eventType": e["eventType"]?.stringValue ?? "", "providerEventId": e["providerEventId"]?.stringValue ?? "",
                "status": state, "statusBadge": Show.badge(state), "attempts": Show.count(e["attempts"]),
                "error": e["error"]?.stringValue ?? "", "receivedAt": Show.time(e["receivedAt"]) ?? "",
                "retryable": canManage && state == "failed",
            ]
        }
        var values: [String: Any] = [
            "section": "Integrations", "id": id, "name": integration["name"]?.stringValue ?? "", "rows": rows, "noRows": rows.isEmpty,
            "events": events, "noEvents": events.isEmpty, "canManage": canManage,
            "schemes": Self.schemes.map { ["value": $0, "selected": $0 == (form["scheme"] ?? "standard-webhooks")] },
            "statuses": Self.eventStatuses.map { ["value": $0, "selected": $0 == filter] },
            "form": form, "errors": errors,
        ]
        if let notice = page.parameter("done").flatMap({ Self.notices[$0] }) { values["notice"] = notice }
        if let tested = tested?.objectValue {
            values["tested"] = ["success": tested["success"] == .bool(true), "message": tested["message"]?.stringValue ?? ""]
        }
        return try page.render("webhooks", title: "Webhooks of \(integration["name"]?.stringValue ?? "an integration")", status: status, values)
    }

    private func createWebhook(_ page: ConsolePage, _ context: PortalRequestContext, id: String) async throws -> Response {
        var body: [String: JSONValue] = [
            "endpoint": .string(page.field("endpoint") ?? ""), "secret": .string(page.field("secret") ?? ""),
            "scheme": .string(page.field("scheme") ?? "standard-webhooks"),
        ]
        let events = (page.field("events") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if !events.isEmpty { body["events"] = .array(events.map(JSONValue.string)) }
        let answer = try await api.call(.post, "/portal/integrations/\(id)/webhooks", body: .object(body), as: page.principal, context: context)
        if answer.status == .unprocessableContent || answer.status == .conflict {
            var errors = answer.fieldErrors.reduce(into: [String: String]()) { $0[String($1.key.dropFirst())] = $1.value }
            if errors.isEmpty { errors["form"] = answer.detail }
            // The secret is never sent back into the page, even to the person who typed it.
            let form = ["endpoint": page.field("endpoint") ?? "", "scheme": page.field("scheme") ?? "", "events": page.field("events") ?? ""]
            return try await webhooks(page, context, id: id, form: form, errors: errors, status: answer.status, tested: nil)
        }
        return try Self.back(answer, to: "/console/integrations/\(id)/webhooks", notice: "webhook-created")
    }

    // MARK: Syncs

    private func syncs(_ page: ConsolePage, _ context: PortalRequestContext, id: String) async throws -> Response {
        async let integrationAnswer = api.fetch("/portal/integrations/\(id)", as: page.principal, context: context)
        async let jobsAnswer = api.call(.get, "/portal/integrations/\(id)/sync/jobs?limit=20", as: page.principal, context: context)
        async let scheduleAnswer = api.call(.get, "/portal/integrations/\(id)/sync/schedule", as: page.principal, context: context)
        async let conflictsAnswer = api.call(.get, "/portal/integrations/\(id)/sync/conflicts?status=open&limit=50", as: page.principal, context: context)
        let integration = try await integrationAnswer.objectValue ?? [:]
        let jobs = try await jobsAnswer
        let schedule = try await scheduleAnswer
        let conflicts = try await conflictsAnswer
        let canManage = page.principal.role.allows(.manageIntegrations)
        let entities = (integration["syncConfig"]?.objectValue?["entities"]?.objectValue ?? [:]).keys.sorted()
        let jobRows: [[String: Any]] = (jobs.json.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { j in
            let state = j["status"]?.stringValue ?? ""
            let counts = j["counts"]?.objectValue ?? [:]
            return [
                "jobId": j["id"]?.stringValue ?? "", "entity": j["entity"]?.stringValue ?? "", "syncType": j["syncType"]?.stringValue ?? "",
                "status": state, "statusBadge": Show.badge(state), "running": state == "running" || state == "pending",
                "processed": Show.count(j["recordsProcessed"]), "total": j["recordsTotal"].flatMap { Show.number($0) }.map { Show.count(.int(Int64($0))) } ?? "",
                "created": Show.count(counts["created"]), "updated": Show.count(counts["updated"]), "deleted": Show.count(counts["deleted"]),
                "conflicts": Show.count(counts["conflicts"]), "error": j["error"]?.stringValue ?? "",
                "startedAt": Show.time(j["startedAt"]) ?? "", "completedAt": Show.time(j["completedAt"]) ?? "",
                "cancellable": canManage && state == "running" && j["cancelRequested"] != .bool(true),
            ]
        }
        let conflictRows: [[String: Any]] = (conflicts.json.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { c in
            [
                "conflictId": c["id"]?.stringValue ?? "", "entity": c["entity"]?.stringValue ?? "", "recordId": c["recordId"]?.stringValue ?? "",
                "source": Self.pretty(c["source"]), "destination": Self.pretty(c["destination"]),
                "fields": (c["fields"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", "),
                "createdAt": Show.time(c["createdAt"]) ?? "",
            ]
        }
        var values: [String: Any] = [
            "section": "Integrations", "id": id, "name": integration["name"]?.stringValue ?? "", "canManage": canManage,
            "entities": entities.map { ["name": $0, "records": "/console/integrations/\(id)/records/\($0)"] }, "noEntities": entities.isEmpty,
            "jobs": jobRows, "noJobs": jobRows.isEmpty, "live": jobRows.contains { $0["running"] as? Bool == true },
            "conflicts": conflictRows, "noConflicts": conflictRows.isEmpty,
        ]
        if schedule.ok, let s = schedule.json.objectValue, s["intervalSeconds"] != nil {
            values["schedule"] = [
                "every": Show.count(s["intervalSeconds"]), "paused": s["paused"] == .bool(true), "nextRunAt": Show.time(s["nextRunAt"]) ?? "—",
            ]
        }
        if let notice = page.parameter("done").flatMap({ Self.notices[$0] }) { values["notice"] = notice }
        return try page.render("sync", title: "Syncs of \(integration["name"]?.stringValue ?? "an integration")", values)
    }

    private func records(_ page: ConsolePage, _ context: PortalRequestContext, id: String, entity: String) async throws -> Response {
        guard (1...64).contains(entity.utf8.count), entity.utf8.allSatisfy({ Base64URL.isAlphabet($0) }) else {
            throw ConsolePageError(.init(status: .notFound, json: ["detail": "no such entity"], headers: [:]))
        }
        var path = "/portal/integrations/\(id)/records/\(entity)?limit=50"
        if let cursor = page.parameter("cursor") { path += "&cursor=\(ConsoleForm.encode(cursor))" }
        async let integrationAnswer = api.fetch("/portal/integrations/\(id)", as: page.principal, context: context)
        async let listAnswer = api.fetch(path, as: page.principal, context: context)
        let integration = try await integrationAnswer.objectValue ?? [:]
        let list = try await listAnswer
        let rows: [[String: Any]] = (list.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { r in
            [
                "recordId": r["recordId"]?.stringValue ?? "", "data": Self.pretty(r["data"]), "updatedAt": Show.time(r["updatedAt"]) ?? "",
                "deleted": r["deletedAt"] != nil && r["deletedAt"] != .null, "edited": r["locallyModifiedAt"] != nil && r["locallyModifiedAt"] != .null,
            ]
        }
        var values: [String: Any] = [
            "section": "Integrations", "id": id, "name": integration["name"]?.stringValue ?? "", "entity": entity, "rows": rows, "noRows": rows.isEmpty,
        ]
        if let next = list.objectValue?["nextCursor"]?.stringValue { values["next"] = "/console/integrations/\(id)/records/\(entity)?cursor=\(ConsoleForm.encode(next))" }
        return try page.render("records", title: "\(entity) of \(integration["name"]?.stringValue ?? "an integration")", values)
    }

    // MARK: Helpers

    /// A path parameter that is a UUID; anything else is not found (as the API answers).
    static func id(_ context: PortalRequestContext, _ name: String = "id") throws -> String {
        guard let text = context.parameters.get(name), let id = UUID(uuidString: text) else {
            throw ConsolePageError(.init(status: .notFound, json: ["detail": "not found"], headers: [:]))
        }
        return id.uuidString.lowercased()
    }

    /// After an action: back to `path` with its notice; a refusal is the page's error.
    static func back(_ answer: ConsoleAPI.Answer, to path: String, notice: String) throws -> Response {
        guard answer.ok else { throw ConsolePageError(answer) }
        return ConsoleSecurity.redirect(path + (path.contains("?") ? "&" : "?") + "done=\(notice)")
    }

    /// A record for side-by-side reading: one member per line, sorted.
    static func pretty(_ value: JSONValue?) -> String {
        guard let object = value?.objectValue else { return value?.sortedText ?? "" }
        return object.keys.sorted().map { "\($0): \(object[$0]?.stringValue ?? object[$0]?.sortedText ?? "")" }.joined(separator: "\n")
    }
}
