import Foundation
import Gateway
import HTTPTypes
import Hummingbird
import NIOCore
import Integrations
import Monitoring
import Logging
import PortalCore
import Storage
import Sync
import Webhooks

/// The seed's integration management endpoints under `/portal/integrations`.
struct IntegrationRoutes {
    let catalog: ProviderCatalog
    let database: Database
    let gateway: Gateway
    let integrations: IntegrationRegistry
    let logger: Logger
    let maxBodyBytes: Int
    let monitor: IntegrationMonitor
    let publicURL: String
    let webhooks: WebhookService

    static let cacheStatus = HTTPField.Name("X-Cache-Status")!
    /// The proxied call's record: its `integration_requests` row id and its ledger entry's `callId`.
    static let callID = HTTPField.Name("X-Call-Id")!
    /// Request and response headers the proxy never passes on: hop-by-hop ones, the caller's credentials
    /// (its portal token and cookies), and those the HTTP layers set themselves.
    static let notForwarded: Set<String> = [
        "authorization", "cookie", "set-cookie", "proxy-authorization", "proxy-authenticate", "connection", "keep-alive", "te",
        "trailer", "transfer-encoding", "upgrade", "host", "content-length", "x-request-id",
    ]
    /// Headers every proxied response carries in place of any the upstream sent: the upstream's
    /// bytes are served from the portal's origin, so they must not run script there, be sniffed into HTML,
    /// be framed, or be read by other origins.
    static let proxySecurityHeaders: [(name: HTTPField.Name, value: String)] = [
        (HTTPField.Name("Content-Security-Policy")!, "sandbox; default-src 'none'; frame-ancestors 'none'"),
        (HTTPField.Name("X-Content-Type-Options")!, "nosniff"),
        (HTTPField.Name("Cross-Origin-Resource-Policy")!, "same-origin"),
    ]
    /// Upstream response headers replaced by ``proxySecurityHeaders`` (lowercased), the report-only policy included.
    static let proxyReplaced: Set<String> = Set(proxySecurityHeaders.map { $0.name.canonicalName }).union(["content-security-policy-report-only"])

    /// The provider's redirect back after an authorization: open, because the single-use `state` bound to the
    /// organization, integration and requesting token is what authorizes it.
    func registerCallback(on router: Router<PortalRequestContext>, table: RouteTable) {
        table.open(router, .get, "/portal/oauth/callback") { request, _ in
            if let error = request.queryString("error") {
                throw PortalError(.malformedRequest, "the provider refused the authorization: \(error.prefix(100))")
            }
            guard let state = request.queryString("state"), let code = request.queryString("code"), !state.isEmpty, !code.isEmpty else {
                throw PortalError.validation([.init(pointer: "?state", message: "state and code are required")])
            }
            let (_, integrationID) = try await self.gateway.completeAuthorization(state: state, code: code)
            let id = integrationID.uuidString.lowercased()
            // A browser (the console's "Connect") comes back to the integration's page; an API client gets JSON.
            if request.headers[.accept]?.contains("text/html") == true {
                return Response(status: .seeOther, headers: [.location: "/console/integrations/\(id)?done=connected"])
            }
            return JSONOutput.response(["connected": true, "integrationId": .string(id)] as JSONValue)
        }
    }

    /// The webhook endpoint a create body's `webhookConfig` describes, validated (422s name
    /// `/webhookConfig/...`) and checked unused in the organization (409); nil without one.
    func webhookEndpoint(_ config: JSONValue?, principal: Principal) async throws -> WebhookEndpointInput? {
        guard let config, config != .null else { return nil }
        let input: WebhookEndpointInput
        do {
            input = try WebhookEndpointInput.parse(config, partial: false)
        } catch {
            throw PortalError.validation(error.fieldErrors.map { .init(pointer: "/webhookConfig" + $0.pointer, message: $0.message) })
        }
        if let name = input.name, try await self.database.read({ db in try await WebhookEndpointStore(db).find(slug: principal.organizationSlug, name: name) }) != nil {
            throw PortalError(.conflict, "the organization already has a webhook endpoint named '\(name)'")
        }
        return input
    }

    func register(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        registerCatalog(on: group, table: table)
        registerLifecycle(on: group, table: table)
        registerAuthorization(on: group, table: table)
        registerCalls(on: group, table: table)
    }

    /// The provider catalog.
    private func registerCatalog(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        // The provider catalog: presets to create integrations from (`"preset"` in the create body).
        table.guarded(group, prefix: "/portal", .get, "/catalog", .readIntegrations) { request, _, _ in
            let type = request.queryString("type")
            if let type, IntegrationType(rawValue: type) == nil {
                throw PortalError.validation([.init(pointer: "?type", message: "must be one of \(IntegrationType.allCases.map(\.rawValue).joined(separator: ", "))")])
            }
            let query = request.queryString("q")?.lowercased()
            let providers = self.catalog.providers.filter { preset in
                (type == nil || preset.type.rawValue == type)
                    && (query.map { q in [preset.id, preset.name, preset.category].contains { $0.lowercased().contains(q) } } ?? true)
            }
            return JSONOutput.response(["providers": .array(providers.map(\.document))] as JSONValue)
        }
        table.guarded(group, prefix: "/portal", .get, "/catalog/{preset}", .readIntegrations) { _, context, _ in
            guard let id = context.parameters.get("preset"), let preset = self.catalog.preset(id) else {
                throw PortalError.notFound("preset")
            }
            return JSONOutput.response(preset.document)
        }
    }

    /// Create, list, read, update and delete integrations, and their status.
    private func registerLifecycle(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        let registry = self.integrations
        table.guarded(group, prefix: "/portal", .post, "/integrations", .manageIntegrations) { request, _, principal in
            let body = try self.catalog.expand(try await request.jsonBody(limit: self.maxBodyBytes))
            var input = try IntegrationInput.parse(body)
            input.syncConfig = try input.syncConfig.map { config throws(PortalError) in try SyncConfiguration.parse(config).json }
            // The seed's webhookConfig registers the endpoint it describes: read as an endpoint body and checked
            // free before anything is written, then registered right after the integration.
            let endpoint = try await webhookEndpoint(body.objectValue?["webhookConfig"], principal: principal)
            let view = try await registry.register(input, by: principal)
            if let endpoint, let id = UUID(uuidString: view.id) {
                do {
                    _ = try await self.webhooks.register(integrationID: id, input: endpoint, by: principal)
                } catch {
                    // Taken meanwhile (a race with another request): the integration does not stay half-made.
                    try? await registry.delete(id: id, by: principal)
                    throw error
                }
            }
            var response = JSONOutput.response(view, status: .created)
            response.headers[.location] = "/portal/integrations/\(view.id)"
            return response
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations", .readIntegrations) { request, _, principal in
            let page = try await registry.list(
                organizationID: principal.organizationID,
                limit: try request.queryInteger("limit", default: 100, in: 1...1000),
                cursor: request.queryString("cursor"),
                includeDeleted: try request.queryBool("includeDeleted", default: false),
                type: try request.queryChoice("type", IntegrationType.self),
                status: try request.queryChoice("status", IntegrationStatus.self)
            )
            return JSONOutput.response(page)
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}", .readIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            return JSONOutput.response(try await registry.get(id: id, organizationID: principal.organizationID))
        }
        table.guarded(group, prefix: "/portal", .patch, "/integrations/{id}", .manageIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            var patch = try IntegrationPatch.parse(try await request.jsonBody(limit: self.maxBodyBytes))
            // The sync engine's own reading of syncConfig: a 422 names every field it cannot use.
            if case .set(let config) = patch.syncConfig { patch.syncConfig = .set(try SyncConfiguration.parse(config).json) }
            return JSONOutput.response(try await registry.update(id: id, patch: patch, by: principal))
        }
        table.guarded(group, prefix: "/portal", .delete, "/integrations/{id}", .manageIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            // OAuth tokens are revoked at the provider first (RFC 7009); a provider that cannot be reached
            // does not block the deletion (the token.revoked entry says how many it accepted).
            do {
                try await self.gateway.revokeTokens(integrationID: id, by: principal)
            } catch let error as PortalError where error.code == .forbidden {
                throw error
            } catch let error as PortalError where error.code == .notFound {
                // Absent, elsewhere or already deleted: the deletion below answers for it.
            } catch {
                self.logger.warning("token revocation failed; deleting anyway", metadata: ["portal.error_type": "\(type(of: error))"])
            }
            try await registry.delete(id: id, by: principal)
            return Response(status: .noContent)
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/status", .readIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let status = try await registry.status(id: id, organizationID: principal.organizationID)
            // Health from the last 5 minutes (monitoring), beside the lifecycle status.
            let recent = try await self.monitor.report(integrationID: id, organizationID: principal.organizationID, status: status.status, window: .fiveMinutes)
            guard case .object(var fields) = try JSONValue.parse(JSONOutput.encode(status)) else { return JSONOutput.response(status) }
            fields["health"] = .string(recent.health)
            fields["consecutiveFailures"] = .int(Int64(recent.consecutiveFailures))
            return JSONOutput.response(JSONValue.object(fields))
        }
    }

    /// OAuth 2.0 authorization and credential rotation.
    private func registerAuthorization(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        // OAuth 2.0 authorization code with PKCE: the start (a bearer route) and the provider's redirect
        // (open: the single-use state authorizes it).
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/oauth/authorize", .manageIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            return JSONOutput.response(try await self.gateway.authorize(
                integrationID: id, by: principal, defaultRedirectURI: self.publicURL + "/portal/oauth/callback"
            ))
        }
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/credentials/rotate", .manageIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let body = try await request.jsonBody(limit: self.maxBodyBytes)
            var errors: [PortalError.FieldError] = []
            let members = body.objectValue ?? [:]
            if body.objectValue == nil { errors.append(.init(pointer: "", message: "must be an object")) }
            for key in members.keys.sorted() where !["credentials", "overlapSeconds"].contains(key) { errors.append(.init(pointer: "/\(key)", message: "unknown field")) }
            var credentials: [String: String] = [:]
            if case .object(let fields)? = members["credentials"], !fields.isEmpty, fields.values.allSatisfy({ $0.stringValue != nil }) {
                credentials = fields.compactMapValues(\.stringValue)
            } else {
                errors.append(.init(pointer: "/credentials", message: "must be a non-empty object of strings"))
            }
            var overlap: Int64 = 0
            if let value = members["overlapSeconds"] {
                if case .int(let seconds) = value, (0...604_800).contains(seconds) { overlap = seconds } else {
                    errors.append(.init(pointer: "/overlapSeconds", message: "must be seconds from 0 to 604800"))
                }
            }
            guard errors.isEmpty else { throw PortalError.validation(errors) }
            return JSONOutput.response(try await self.gateway.rotateCredentials(
                integrationID: id, credentials: credentials, overlap: TimeInterval(overlap), by: principal
            ))
        }
    }

    /// Calls through an integration: tests, the seed's executeRequest, and the transparent proxy.
    private func registerCalls(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        // The seed's onConfigTest for an unsaved configuration: credentials used once, nothing stored.
        table.guarded(group, prefix: "/portal", .post, "/integrations/test", .manageIntegrations) { request, _, principal in
            let input = try IntegrationInput.parse(try self.catalog.expand(try await request.jsonBody(limit: self.maxBodyBytes)))
            return JSONOutput.response(try await self.gateway.test(unsaved: input, by: principal))
        }
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/test", .manageIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            return JSONOutput.response(try await self.gateway.test(integrationID: id, by: principal))
        }
        // The seed's executeRequest: an APIRequest in, the upstream's APIResponse out (whatever its status).
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/requests", .manageIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let call = try APIRequest.parse(try await request.jsonBody(limit: self.maxBodyBytes), integrationID: id)
            // As for the proxy: a percent-encoded NUL in the path would reach the stored call record (a 503 on PostgreSQL).
            guard call.endpoint.split(separator: "?", maxSplits: 1).first.map(String.init)?.removingPercentEncoding?.unicodeScalars.contains("\u{0}") != true else {
                throw PortalError.validation([.init(pointer: "/endpoint", message: "must not contain U+0000 (NUL)")])
            }
            let answer = try await self.gateway.execute(call, integrationID: id, by: principal)
            var response = JSONOutput.response(answer)
            response.headers[Self.cacheStatus] = answer.cacheStatus
            return response
        }
        // The transparent proxy: method, query, headers (minus hop-by-hop ones and the caller's portal token)
        // and body forwarded as they are; the upstream's status, headers and body returned as they are.
        for method in [HTTPRequest.Method.get, .post, .put, .patch, .delete] {
            table.guarded(
                group, prefix: "/portal", method, "/integrations/{id}/proxy/**", .manageIntegrations, documentedPath: "/integrations/{id}/proxy/{path}"
            ) { request, context, principal in
                let id = try context.uuidParameter("id", what: "integration")
                let path = "/" + context.parameters.getCatchAll().joined(separator: "/")
                // A percent-encoded NUL would reach the stored call record, which PostgreSQL refuses (a 503).
                guard path.removingPercentEncoding?.unicodeScalars.contains("\u{0}") != true else {
                    throw PortalError.validation([.init(pointer: "path", message: "must not contain U+0000 (NUL)")])
                }
                let body: ByteBuffer
                do {
                    body = try await request.body.collect(upTo: self.maxBodyBytes)
                } catch {
                    throw PortalError(.payloadTooLarge, "the body is larger than \(self.maxBodyBytes) bytes")
                }
                let headers = request.headers.filter { !Self.notForwarded.contains($0.name.canonicalName) }.map { (name: $0.name.rawName, value: $0.value) }
                let result = try await self.gateway.perform(
                    GatewayCall(method: method.rawValue, endpoint: path + (request.uri.query.map { "?" + $0 } ?? ""), headers: headers, body: Array(buffer: body)),
                    integrationID: id, by: principal
                )
                var fields = HTTPFields()
                for header in result.headers {
                    guard let name = HTTPField.Name(header.name), !Self.notForwarded.contains(name.canonicalName),
                          !Self.proxyReplaced.contains(name.canonicalName)
                    else { continue }
                    fields.append(HTTPField(name: name, value: header.value))
                }
                for header in Self.proxySecurityHeaders { fields[header.name] = header.value }
                fields[Self.cacheStatus] = result.cacheStatus
                if let callID = result.callID { fields[Self.callID] = callID.uuidString.lowercased() }
                return Response(status: .init(code: result.status), headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: result.body)))
            }
        }
    }
}
