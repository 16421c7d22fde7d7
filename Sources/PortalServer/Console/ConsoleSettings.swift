import Foundation
import Hummingbird
import PortalCore

/// The organization's settings in the console: who is signed in and what the role allows, where alerts go
/// (receivers: their URLs and keys are secrets, never shown), and links to the other settings.
struct ConsoleSettings: Sendable {
    let api: ConsoleAPI

    static let kinds = ["slack", "teams", "webhook", "sendgrid"]

    func register(_ routes: ConsoleRoutes, on router: Router<PortalRequestContext>) {
        routes.page(router, .get, "/console/settings") { _, context, page in try await settings(page, context, errors: [:], status: .ok) }
        routes.page(router, .post, "/console/settings/receivers") { _, context, page in
            var body: [String: JSONValue] = ["name": .string(page.field("name") ?? ""), "kind": .string(page.field("kind") ?? "")]
            for key in ["url", "secret", "apiKey", "from"] {
                if let value = page.field(key)?.trimmingCharacters(in: .whitespaces), !value.isEmpty { body[key] = .string(value) }
            }
            if let to = page.field("to"), !to.isEmpty {
                body["to"] = .array(to.split(separator: ",").map { .string($0.trimmingCharacters(in: .whitespaces)) })
            }
            let answer = try await api.call(.post, "/portal/alerts/receivers", body: .object(body), as: page.principal, context: context)
            if answer.status == .unprocessableContent || answer.status == .conflict {
                var errors = answer.fieldErrors.reduce(into: [String: String]()) { $0[String($1.key.dropFirst())] = $1.value }
                if errors.isEmpty { errors["form"] = answer.detail }
                return try await settings(page, context, errors: errors, status: answer.status)
            }
            return try ConsoleOperations.back(answer, to: "/console/settings", notice: "receiver-added")
        }
        routes.page(router, .post, "/console/settings/receivers/{id}/delete") { _, context, page in
            let answer = try await api.call(.delete, "/portal/alerts/receivers/\(try ConsoleOperations.id(context))", as: page.principal, context: context)
            return try ConsoleOperations.back(answer, to: "/console/settings", notice: "receiver-removed")
        }
    }

    private func settings(_ page: ConsolePage, _ context: PortalRequestContext, errors: [String: String], status: HTTPResponse.Status) async throws -> Response {
        async let whoamiAnswer = api.fetch("/portal/whoami", as: page.principal, context: context)
        async let receiversAnswer = api.call(.get, "/portal/alerts/receivers", as: page.principal, context: context)
        let whoami = try await whoamiAnswer.objectValue ?? [:]
        let receivers = try await receiversAnswer
        let canManage = page.principal.role.allows(.manageIntegrations)
        var values: [String: Any] = [
            "section": "Settings", "permissions": (whoami["permissions"]?.arrayValue ?? []).compactMap(\.stringValue),
            "tokenId": whoami["tokenId"]?.stringValue ?? "", "canManage": canManage, "errors": errors,
            "canTokens": page.principal.role.allows(.manageTokens), "canRetention": page.principal.role.allows(.readIntegrations),
            "kinds": Self.kinds.map { ["value": $0, "selected": $0 == (page.field("kind") ?? "slack")] },
            "form": ["name": page.field("name") ?? "", "from": page.field("from") ?? "", "to": page.field("to") ?? ""],
        ]
        if receivers.ok {
            let rows = (receivers.json.objectValue?["items"]?.arrayValue ?? []).compactMap(\.objectValue).map { r -> [String: Any] in
                [
                    "receiverId": r["id"]?.stringValue ?? "", "name": r["name"]?.stringValue ?? "", "kind": r["kind"]?.stringValue ?? "",
                    "signed": r["signed"] == .bool(true), "createdAt": Show.time(r["createdAt"]) ?? "",
                ]
            }
            values["receivers"] = rows
            values["noReceivers"] = rows.isEmpty
        }
        let notices = ["receiver-added": "The receiver was added; alerts matching its routes now go to it.", "receiver-removed": "The receiver was removed."]
        if let notice = page.parameter("done").flatMap({ notices[$0] }) { values["notice"] = notice }
        return try page.render("settings", title: "Settings of \(page.principal.organizationSlug)", status: status, values)
    }
}
