import Foundation
import HTTPTypes
import Hummingbird
import PortalCore

/// The seed's IntegrationConfig in the console: add an integration from the provider catalog or from
/// scratch, test it before saving, edit it with its secrets masked, delete it, connect it with OAuth.
///
/// The form is a list of ``Field``s; each names where its value goes in the API's body (`credentials.apiKey`,
/// `config.oauth.tokenUrl`), so the API's 422 pointers land beside the field they name. A secret is never
/// written into a page: on edit its field is empty (left empty, it is kept), and after a failed save it must
/// be typed again.
struct ConsoleConfigure: Sendable {
    let api: ConsoleAPI

    struct Field: Sendable {
        enum Kind: Sendable, Equatable {
            case text, secret, secretArea, list, headers
            case select([String])
        }

        /// Where the value goes in the API's body, dot-separated.
        var path: String
        var label: String
        var help: String = ""
        var kind: Kind = .text
        /// The auth method the field belongs to; nil: every method.
        var method: String?

        var pointer: String { "/" + path.replacingOccurrences(of: ".", with: "/") }
        var formName: String { path }
        var isSecret: Bool { kind == .secret || kind == .secretArea }
    }

    static let authMethods = ["api_key", "basic_auth", "oauth2", "jwt", "aws_sigv4", "custom"]

    static let general: [Field] = [
        Field(path: "name", label: "Name", help: "How the integration is listed, e.g. Salesforce CRM."),
        Field(path: "type", label: "Type", kind: .select(ConsolePages.integrationTypes)),
        Field(path: "baseUrl", label: "Base URL", help: "Every call goes below it, e.g. https://api.example.com/v1."),
        Field(path: "authMethod", label: "Authentication", kind: .select(authMethods)),
        Field(path: "config.testEndpoint", label: "Test endpoint", help: "A GET below the base URL that answers 2xx when the credentials work, e.g. /me."),
    ]

    static let authentication: [Field] = [
        Field(path: "credentials.apiKey", label: "API key", kind: .secret, method: "api_key"),
        Field(path: "config.keyLocation", label: "Send the key in", kind: .select(["header", "query", "body"]), method: "api_key"),
        Field(path: "config.keyHeader", label: "Header name", help: "Default X-API-Key.", method: "api_key"),
        Field(path: "config.keyPrefix", label: "Value prefix", help: "e.g. Bearer (followed by a space).", method: "api_key"),
        Field(path: "config.keyParam", label: "Query parameter", help: "When the key goes in the query.", method: "api_key"),
        Field(path: "credentials.username", label: "Username", method: "basic_auth"),
        Field(path: "credentials.password", label: "Password", kind: .secret, method: "basic_auth"),
        Field(path: "credentials.clientId", label: "Client ID", method: "oauth2"),
        Field(path: "credentials.clientSecret", label: "Client secret", kind: .secret, method: "oauth2"),
        Field(path: "config.oauth.tokenUrl", label: "Token URL", method: "oauth2"),
        Field(path: "config.oauth.authorizationUrl", label: "Authorization URL", help: "For the authorization-code grant (Connect).", method: "oauth2"),
        Field(path: "config.oauth.scope", label: "Scopes", help: "Separated by spaces.", method: "oauth2"),
        Field(path: "config.oauth.grantType", label: "Grant", kind: .select(["client_credentials", "authorization_code", "refresh_token", "jwt_bearer"]), method: "oauth2"),
        Field(path: "config.oauth.clientAuth", label: "Client authentication", kind: .select(["basic", "post", "private_key_jwt"]), method: "oauth2"),
        Field(path: "credentials.privateKey", label: "Private key (PEM)", help: "For RS256, ES256 or EdDSA.", kind: .secretArea, method: "jwt"),
        Field(path: "credentials.secret", label: "Shared secret", help: "For HS256.", kind: .secret, method: "jwt"),
        Field(path: "config.jwt.algorithm", label: "Algorithm", kind: .select(["RS256", "ES256", "EdDSA", "HS256"]), method: "jwt"),
        Field(path: "config.jwt.issuer", label: "Issuer (iss)", method: "jwt"),
        Field(path: "config.jwt.subject", label: "Subject (sub)", method: "jwt"),
        Field(path: "config.jwt.audience", label: "Audience (aud)", method: "jwt"),
        Field(path: "credentials.accessKeyId", label: "Access key ID", method: "aws_sigv4"),
        Field(path: "credentials.secretAccessKey", label: "Secret access key", kind: .secret, method: "aws_sigv4"),
        Field(path: "config.region", label: "Region", help: "e.g. eu-central-1.", method: "aws_sigv4"),
        Field(path: "config.service", label: "Service", help: "e.g. s3.", method: "aws_sigv4"),
        Field(path: "credentials.token", label: "Secret", help: "Used in a header template as {{credentials.token}}.", kind: .secret, method: "custom"),
        Field(path: "config.headers", label: "Header templates", help: "One per line: Name: value, e.g. Authorization: Token {{credentials.token}}.", kind: .headers, method: "custom"),
    ]

    static let processing: [Field] = [
        Field(path: "processing.purpose", label: "Purpose", help: "Why personal data goes to this provider, e.g. workforce identity management."),
        Field(path: "processing.lawfulBasis", label: "Lawful basis (Art. 6)", kind: .select(["", "consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests"])),
        Field(path: "processing.recipientRole", label: "The provider's role", kind: .select(["", "processor", "sub_processor", "independent_controller", "joint_controller"])),
        Field(path: "processing.personalDataCategories", label: "Personal data categories", help: "Comma-separated, e.g. contact, identifiers.", kind: .list),
        Field(path: "processing.dataSubjectCategories", label: "Data subject categories", help: "Comma-separated, e.g. employees, customers.", kind: .list),
        Field(path: "processing.destinationCountries", label: "Destination countries", help: "ISO codes, comma-separated, e.g. US, DE.", kind: .list),
        Field(path: "processing.retention", label: "Retention at the provider"),
    ]

    static var all: [Field] { general + authentication + processing }

    func register(_ routes: ConsoleRoutes, on router: Router<PortalRequestContext>) {
        routes.page(router, .get, "/console/integrations/new") { _, context, page in
            if let preset = page.parameter("preset") {
                return try await presetForm(page, context, preset: preset, errors: [:], status: .ok, tested: nil)
            }
            return try await catalogPage(page, context)
        }
        routes.page(router, .get, "/console/integrations/new/scratch") { _, _, page in
            try form(page, mode: .create, values: [:], masked: [:], errors: [:], status: .ok, tested: nil)
        }
        routes.page(router, .post, "/console/integrations") { request, context, page in
            let test = page.field("intent") == "test"
            if let preset = page.field("preset"), !preset.isEmpty {
                let body = Self.presetBody(page)
                if test { return try await runTest(page, context, body: body, json: Self.wantsJSON(request)) { tested in
                    try await presetForm(page, context, preset: preset, errors: [:], status: .ok, tested: tested)
                } }
                let answer = try await api.call(.post, "/portal/integrations", body: body, as: page.principal, context: context)
                if answer.status == .unprocessableContent || answer.status == .conflict {
                    return try await presetForm(page, context, preset: preset, errors: Self.errors(answer), status: answer.status, tested: nil)
                }
                return try Self.created(answer)
            }
            let body = Self.body(page, includeEmpty: false)
            if test { return try await runTest(page, context, body: body, json: Self.wantsJSON(request)) { tested in
                try form(page, mode: .create, values: Self.typed(page), masked: [:], errors: [:], status: .ok, tested: tested)
            } }
            let answer = try await api.call(.post, "/portal/integrations", body: body, as: page.principal, context: context)
            if answer.status == .unprocessableContent || answer.status == .conflict {
                return try form(page, mode: .create, values: Self.typed(page), masked: [:], errors: Self.errors(answer), status: answer.status, tested: nil)
            }
            return try Self.created(answer)
        }
        routes.page(router, .get, "/console/integrations/{id}/edit") { _, context, page in
            let id = try ConsoleOperations.id(context)
            let current = try await api.fetch("/portal/integrations/\(id)", as: page.principal, context: context)
            return try form(page, mode: .edit(id), values: Self.values(of: current), masked: Self.masked(of: current), errors: [:], status: .ok, tested: nil)
        }
        routes.page(router, .post, "/console/integrations/{id}/edit") { _, context, page in
            let id = try ConsoleOperations.id(context)
            let answer = try await api.call(.patch, "/portal/integrations/\(id)", body: Self.body(page, includeEmpty: false), as: page.principal, context: context)
            if answer.status == .unprocessableContent || answer.status == .conflict {
                let current = try await api.fetch("/portal/integrations/\(id)", as: page.principal, context: context)
                return try form(page, mode: .edit(id), values: Self.typed(page), masked: Self.masked(of: current), errors: Self.errors(answer), status: answer.status, tested: nil)
            }
            guard answer.ok else { throw ConsolePageError(answer) }
            return ConsoleSecurity.redirect("/console/integrations/\(id)?done=saved")
        }
        routes.page(router, .post, "/console/integrations/{id}/delete") { _, context, page in
            let answer = try await api.call(.delete, "/portal/integrations/\(try ConsoleOperations.id(context))", as: page.principal, context: context)
            guard answer.ok else { throw ConsolePageError(answer) }
            return ConsoleSecurity.redirect("/console/integrations?done=deleted")
        }
        routes.page(router, .post, "/console/integrations/{id}/test") { _, context, page in
            let id = try ConsoleOperations.id(context)
            let answer = try await api.call(.post, "/portal/integrations/\(id)/test", as: page.principal, context: context)
            guard answer.ok else { throw ConsolePageError(answer) }
            let success = answer.json.objectValue?["success"] == .bool(true)
            return ConsoleSecurity.redirect("/console/integrations/\(id)?done=\(success ? "test-passed" : "test-failed")")
        }
        // "Connect": a GET (a form cannot be redirected to the provider under form-action 'self'), so it
        // carries the session's CSRF token in its query instead.
        routes.page(router, .get, "/console/integrations/{id}/connect") { _, context, page in
            guard ConsoleSessions.csrfMatches(page.parameter("csrf"), page.session) else {
                throw ConsolePageError(.init(status: .forbidden, json: ["detail": "the link's CSRF token is not valid; nothing was started"], headers: [:]))
            }
            let answer = try await api.call(.get, "/portal/integrations/\(try ConsoleOperations.id(context))/oauth/authorize", as: page.principal, context: context)
            guard answer.ok, let url = answer.json.objectValue?["authorizationUrl"]?.stringValue,
                  url.hasPrefix("https://") || url.hasPrefix("http://")
            else { throw ConsolePageError(answer.ok ? .init(status: .badGateway, json: ["detail": "no authorization URL"], headers: [:]) : answer) }
            var response = Response(status: .seeOther, headers: [.location: url])
            response = ConsoleSecurity.secured(response)
            return response
        }
    }

    enum Mode {
        case create
        case edit(String)
    }

    // MARK: Pages

    private func catalogPage(_ page: ConsolePage, _ context: PortalRequestContext) async throws -> Response {
        let catalog = try await api.fetch("/portal/catalog", as: page.principal, context: context)
        let providers: [[String: Any]] = (catalog.objectValue?["providers"]?.arrayValue ?? []).compactMap(\.objectValue).map { p in
            [
                "id": p["id"]?.stringValue ?? "", "name": p["name"]?.stringValue ?? "", "category": p["category"]?.stringValue ?? "",
                "description": p["description"]?.stringValue ?? "", "authMethod": p["authMethod"]?.stringValue ?? "",
            ]
        }
        return try page.render("catalog", title: "Add an integration", ["section": "Integrations", "providers": providers])
    }

    private func presetForm(
        _ page: ConsolePage, _ context: PortalRequestContext, preset: String, errors: [String: String], status: HTTPResponse.Status, tested: JSONValue?
    ) async throws -> Response {
        guard (1...100).contains(preset.utf8.count), preset.utf8.allSatisfy({ Base64URL.isAlphabet($0) }) else {
            throw ConsolePageError(.init(status: .notFound, json: ["detail": "no such preset"], headers: [:]))
        }
        let p = try await api.fetch("/portal/catalog/\(preset)", as: page.principal, context: context).objectValue ?? [:]
        let parameters: [[String: Any]] = (p["parameters"]?.arrayValue ?? []).compactMap(\.objectValue).map { parameter in
            let name = parameter["name"]?.stringValue ?? ""
            var field: [String: Any] = [
                "name": "parameters.\(name)", "id": "f-parameters-\(name)", "label": parameter["label"]?.stringValue ?? name,
                "help": parameter["example"]?.stringValue.map { "For example \($0)." } ?? "", "value": page.field("parameters.\(name)") ?? "",
            ]
            if let error = errors["/parameters/\(name)"] { field["error"] = error }
            return field
        }
        let credentials: [[String: Any]] = (p["credentials"]?.arrayValue ?? []).compactMap(\.objectValue).map { credential in
            let name = credential["name"]?.stringValue ?? ""
            let visible = ["clientId", "username", "accessKeyId"].contains(name)
            var field: [String: Any] = [
                "name": "credentials.\(name)", "id": "f-credentials-\(name)", "label": credential["label"]?.stringValue ?? name,
                "secret": !visible, "area": name == "privateKey", "value": visible ? page.field("credentials.\(name)") ?? "" : "",
            ]
            if let error = errors["/credentials/\(name)"] { field["error"] = error }
            return field
        }
        let placed = (parameters + credentials).compactMap { $0["name"] as? String }.map { "/" + $0.replacingOccurrences(of: ".", with: "/") }
        var values: [String: Any] = [
            "section": "Integrations", "preset": preset, "presetName": p["name"]?.stringValue ?? preset,
            "description": p["description"]?.stringValue ?? "", "docs": p["docs"]?.stringValue ?? "",
            "authMethod": p["authMethod"]?.stringValue ?? "", "baseUrl": p["baseUrl"]?.stringValue ?? "",
            "name": page.field("name") ?? p["name"]?.stringValue ?? "",
            "parameters": parameters, "credentials": credentials,
            "processing": Self.fieldValues(Self.processing, values: Self.typed(page), masked: [:], errors: errors),
            "otherErrors": Self.unplaced(errors, known: Set(placed + ["/name"] + Self.processing.map(\.pointer))),
        ]
        values["hasOtherErrors"] = !((values["otherErrors"] as? [String]) ?? []).isEmpty
        if let error = errors["/name"] { values["nameError"] = error }
        if let tested { values["tested"] = Self.testView(tested) }
        return try page.render("preset", title: "Add \(p["name"]?.stringValue ?? "an integration")", status: status, values)
    }

    private func form(
        _ page: ConsolePage, mode: Mode, values: [String: String], masked: [String: String], errors: [String: String],
        status: HTTPResponse.Status, tested: JSONValue?
    ) throws -> Response {
        let method = values["authMethod"] ?? "api_key"
        var view: [String: Any] = ["section": "Integrations"]
        view["general"] = Self.fieldValues(Self.general, values: values, masked: masked, errors: errors)
        view["methods"] = Self.authMethods.map { m -> [String: Any] in
            [
                "method": m, "hidden": m != method,
                "fields": Self.fieldValues(Self.authentication.filter { $0.method == m }, values: values, masked: masked, errors: errors),
            ]
        }
        view["processing"] = Self.fieldValues(Self.processing, values: values, masked: masked, errors: errors)
        let unplaced = Self.unplaced(errors, known: Set(Self.all.map(\.pointer)))
        view["otherErrors"] = unplaced
        view["hasOtherErrors"] = !unplaced.isEmpty
        if let tested { view["tested"] = Self.testView(tested) }
        switch mode {
        case .create:
            view["action"] = "/console/integrations"
            view["creating"] = true
            return try page.render("configure", title: "Add an integration", status: status, view)
        case .edit(let id):
            view["action"] = "/console/integrations/\(id)/edit"
            view["id"] = id
            view["integrationName"] = values["name"] ?? ""
            return try page.render("configure", title: "Edit \(values["name"] ?? "the integration")", status: status, view)
        }
    }

    private func runTest(
        _ page: ConsolePage, _ context: PortalRequestContext, body: JSONValue, json: Bool, render: (JSONValue) async throws -> Response
    ) async throws -> Response {
        let answer = try await api.call(.post, "/portal/integrations/test", body: body, as: page.principal, context: context)
        // A 422 is a result too: the configuration cannot be tested as it stands.
        let result: JSONValue = answer.ok ? answer.json : [
            "success": false, "message": .string(answer.detail),
            "details": .object(["errors": .array(answer.fieldErrors.sorted { $0.key < $1.key }.map { .string("\($0.key): \($0.value)") })]),
        ]
        if json { return JSONOutput.response(result, status: .ok) }
        return try await render(result)
    }

    // MARK: Form values and bodies

    /// The fields as templates show them: value (never a secret's), masked hint, error, options.
    static func fieldValues(_ fields: [Field], values: [String: String], masked: [String: String], errors: [String: String]) -> [[String: Any]] {
        fields.map { f -> [String: Any] in
            var view: [String: Any] = [
                "name": f.formName, "id": "f-" + f.path.replacingOccurrences(of: ".", with: "-"), "label": f.label, "help": f.help,
                "secret": f.kind == .secret, "area": f.kind == .secretArea || f.kind == .headers, "list": f.kind == .list,
            ]
            if !f.isSecret { view["value"] = values[f.path] ?? "" }
            if let hint = masked[f.path] { view["masked"] = hint }
            if case .select(let options) = f.kind {
                view["select"] = true
                view["options"] = options.map { ["value": $0, "label": $0.isEmpty ? "—" : $0, "selected": $0 == (values[f.path] ?? "")] }
            }
            if let error = errors[f.pointer] { view["error"] = error }
            return view
        }
    }

    /// What the person typed, secrets left out (they are never written back into a page).
    static func typed(_ page: ConsolePage) -> [String: String] {
        var values: [String: String] = [:]
        for f in all where !f.isSecret { if let v = page.field(f.formName) { values[f.path] = v } }
        for (name, value) in page.fields where name.hasPrefix("parameters.") || name == "name" { values[name] = value }
        return values
    }

    /// The API body of the scratch form: fields of the chosen auth method and the general and processing
    /// ones; empty fields are left out (on edit: unchanged).
    static func body(_ page: ConsolePage, includeEmpty: Bool) -> JSONValue {
        let method = page.field("authMethod") ?? ""
        var root: [String: JSONValue] = [:]
        var purpose: String?
        var basis: String?
        for f in all where f.method == nil || f.method == method {
            guard let raw = page.field(f.formName) else { continue }
            let text = f.kind == .secretArea ? raw : raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty && !includeEmpty { continue }
            if f.path == "processing.purpose" { purpose = text; continue }
            if f.path == "processing.lawfulBasis" { basis = text; continue }
            let value: JSONValue
            switch f.kind {
            case .list:
                value = .array(text.split(separator: ",").map { .string($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 != .string("") })
            case .headers:
                var headers: [String: JSONValue] = [:]
                for line in text.split(whereSeparator: \.isNewline) {
                    let parts = line.split(separator: ":", maxSplits: 1)
                    if parts.count == 2 { headers[parts[0].trimmingCharacters(in: .whitespaces)] = .string(parts[1].trimmingCharacters(in: .whitespaces)) }
                }
                value = .object(headers)
            default:
                value = .string(text)
            }
            set(value, at: f.path.split(separator: ".").map(String.init), in: &root)
        }
        if purpose != nil || basis != nil {
            set(.array([["purpose": .string(purpose ?? ""), "lawfulBasis": .string(basis ?? "")]]), at: ["processing", "purposes"], in: &root)
        }
        return .object(root)
    }

    /// The API body of a preset form.
    static func presetBody(_ page: ConsolePage) -> JSONValue {
        var root: [String: JSONValue] = ["preset": .string(page.field("preset") ?? "")]
        var parameters: [String: JSONValue] = [:]
        var credentials: [String: JSONValue] = [:]
        for (name, value) in page.fields {
            let text = name == "credentials.privateKey" ? value : value.trimmingCharacters(in: .whitespacesAndNewlines)
            if name.hasPrefix("parameters."), !text.isEmpty { parameters[String(name.dropFirst("parameters.".count))] = .string(text) }
            if name.hasPrefix("credentials."), !text.isEmpty { credentials[String(name.dropFirst("credentials.".count))] = .string(text) }
        }
        root["parameters"] = .object(parameters)
        root["credentials"] = .object(credentials)
        if let name = page.field("name")?.trimmingCharacters(in: .whitespaces), !name.isEmpty { root["name"] = .string(name) }
        if case .object(let processing)? = body(page, includeEmpty: false).objectValue?["processing"] { root["processing"] = .object(processing) }
        return .object(root)
    }

    static func set(_ value: JSONValue, at path: [String], in object: inout [String: JSONValue]) {
        guard let first = path.first else { return }
        if path.count == 1 {
            object[first] = value
            return
        }
        var inner = object[first]?.objectValue ?? [:]
        set(value, at: Array(path.dropFirst()), in: &inner)
        object[first] = .object(inner)
    }

    /// An integration's current values for the edit form (secrets left out).
    static func values(of integration: JSONValue) -> [String: String] {
        var values: [String: String] = [:]
        for f in all where !f.isSecret {
            var node: JSONValue? = integration
            for key in f.path.split(separator: ".") { node = node?.objectValue?[String(key)] }
            switch node {
            case .string(let s)?: values[f.path] = s
            case .int(let n)?: values[f.path] = String(n)
            case .array(let items)?: values[f.path] = items.compactMap(\.stringValue).joined(separator: f.path.hasSuffix("scope") ? " " : ", ")
            case .object(let members)? where f.kind == .headers:
                values[f.path] = members.keys.sorted().map { "\($0): \(members[$0]?.stringValue ?? "")" }.joined(separator: "\n")
            default: break
            }
        }
        if let scopes = integration.objectValue?["config"]?.objectValue?["oauth"]?.objectValue?["scopes"]?.arrayValue {
            values["config.oauth.scope"] = scopes.compactMap(\.stringValue).joined(separator: " ")
        }
        if let first = integration.objectValue?["processing"]?.objectValue?["purposes"]?.arrayValue?.first?.objectValue {
            values["processing.purpose"] = first["purpose"]?.stringValue
            values["processing.lawfulBasis"] = first["lawfulBasis"]?.stringValue
        }
        return values
    }

    /// The masked credentials the API shows (`••••1234`), as hints beside their empty fields.
    static func masked(of integration: JSONValue) -> [String: String] {
        var hints: [String: String] = [:]
        for (name, value) in integration.objectValue?["credentials"]?.objectValue ?? [:] {
            if let text = value.stringValue { hints["credentials.\(name)"] = text }
        }
        return hints
    }

    static func errors(_ answer: ConsoleAPI.Answer) -> [String: String] {
        var errors = answer.fieldErrors
        if errors.isEmpty { errors[""] = answer.detail }
        return errors
    }

    /// Errors whose pointer names no field of the form, listed above it.
    static func unplaced(_ errors: [String: String], known: Set<String>) -> [String] {
        errors.filter { !known.contains($0.key) }.sorted { $0.key < $1.key }.map { $0.key.isEmpty ? $0.value : "\($0.key): \($0.value)" }
    }

    static func testView(_ result: JSONValue) -> [String: Any] {
        let r = result.objectValue ?? [:]
        return [
            "success": r["success"] == .bool(true), "message": r["message"]?.stringValue ?? "",
            "details": r["details"].map { Show.prettyJSON($0) } ?? "",
            // Rendered by the server (no script): the secrets typed are not in the page any more.
            "reenter": true,
        ]
    }

    static func created(_ answer: ConsoleAPI.Answer) throws -> Response {
        guard answer.ok, let id = answer.json.objectValue?["id"]?.stringValue else { throw ConsolePageError(answer) }
        return ConsoleSecurity.redirect("/console/integrations/\(id)?done=created")
    }

    static func wantsJSON(_ request: Request) -> Bool {
        request.headers[.accept]?.contains("application/json") == true
    }
}
