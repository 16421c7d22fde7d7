import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PortalCore
import Webhooks

/// The seed's webhook endpoints: registration per integration, logs, retries, and the receiver at
/// `/webhooks/{slug}/{name}` (open: the provider's signature is what authorizes a delivery).
struct WebhookRoutes {
    let maxBodyBytes: Int
    let publicURL: String
    let webhooks: WebhookService

    func register(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        let webhooks = self.webhooks
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/webhooks", .manageIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let input = try WebhookEndpointInput.parse(try await request.jsonBody(limit: self.maxBodyBytes), partial: false)
            let view = try await webhooks.register(integrationID: id, input: input, by: principal)
            var response = JSONOutput.response(view, status: .created)
            response.headers[.location] = "/portal/integrations/\(view.integrationId)/webhooks/\(view.id)"
            return response
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/webhooks", .readIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            return JSONOutput.response(["items": try await webhooks.list(integrationID: id, by: principal)])
        }
        // The seed's getWebhookLogs.
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/webhooks/logs", .readIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            return JSONOutput.response(try await webhooks.logs(
                integrationID: id, status: request.queryString("status"), cursor: request.queryString("cursor"),
                limit: try request.queryInteger("limit", default: 100, in: 1...1000), by: principal
            ))
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/webhooks/{webhookId}", .readIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let endpointID = try context.uuidParameter("webhookId", what: "webhook endpoint")
            return JSONOutput.response(try await webhooks.get(integrationID: id, endpointID: endpointID, by: principal))
        }
        table.guarded(group, prefix: "/portal", .patch, "/integrations/{id}/webhooks/{webhookId}", .manageIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let endpointID = try context.uuidParameter("webhookId", what: "webhook endpoint")
            var body = try await request.jsonBody(limit: self.maxBodyBytes, acceptMergePatch: true)
            // A secret rotation keeps the old secret verifying for overlapSeconds.
            var overlap: Int?
            if case .object(var members) = body, let value = members.removeValue(forKey: "overlapSeconds") {
                guard case .int(let seconds) = value, (0...2_592_000).contains(seconds) else {
                    throw PortalError.validation([.init(pointer: "/overlapSeconds", message: "must be whole seconds from 0 to 2592000")])
                }
                overlap = Int(seconds)
                body = .object(members)
            }
            let input = try WebhookEndpointInput.parse(body, partial: true)
            return JSONOutput.response(try await webhooks.update(integrationID: id, endpointID: endpointID, input: input, overlapSeconds: overlap, by: principal))
        }
        table.guarded(group, prefix: "/portal", .delete, "/integrations/{id}/webhooks/{webhookId}", .manageIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let endpointID = try context.uuidParameter("webhookId", what: "webhook endpoint")
            try await webhooks.delete(integrationID: id, endpointID: endpointID, by: principal)
            return Response(status: .noContent)
        }
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/webhooks/{webhookId}/test", .manageIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let endpointID = try context.uuidParameter("webhookId", what: "webhook endpoint")
            return JSONOutput.response(try await webhooks.test(integrationID: id, endpointID: endpointID, by: principal))
        }
        // The seed's retryFailedWebhook, one event or all failed events matching a filter.
        table.guarded(group, prefix: "/portal", .post, "/webhooks/events/{eventId}/retry", .manageIntegrations) { _, context, principal in
            let eventID = try context.uuidParameter("eventId", what: "webhook event")
            return JSONOutput.response(try await webhooks.retry(eventID: eventID, by: principal))
        }
        table.guarded(group, prefix: "/portal", .post, "/webhooks/events/retry", .manageIntegrations) { request, _, principal in
            let errors = ValidationErrors()
            var reader = JSONObjectReader(try await request.jsonBody(limit: self.maxBodyBytes), errors: errors)
            let integration = reader.string("integrationId", minLength: 1, maxLength: 64)
            let eventType = reader.string("eventType", minLength: 1, maxLength: 100)
            let limit = reader.integer("limit", in: 1...10_000) ?? 1_000
            reader.finish()
            var integrationID: UUID?
            if let integration {
                if let id = UUID(uuidString: integration) { integrationID = id } else { errors.add("/integrationId", "must be a UUID") }
            }
            try errors.throwIfAny()
            return JSONOutput.response(try await webhooks.retryFailed(integrationID: integrationID, eventType: eventType, limit: Int(limit), by: principal))
        }
    }

    /// The receiver. Unknown paths are 404 before the body is read (at most a bounded number of database lookups
    /// a second for paths another instance may have registered); the body is read up to the limit.
    func registerReceiver(on router: Router<PortalRequestContext>, table: RouteTable) {
        let webhooks = self.webhooks
        let publicURL = self.publicURL
        let limit = self.maxBodyBytes
        for method in [HTTPRequest.Method.post, .get] {
            table.open(router, method, "/webhooks/{slug}/{name}") { request, context in
                let slug = context.parameters.get("slug") ?? ""
                let name = context.parameters.get("name") ?? ""
                guard try await webhooks.resolves(slug: slug, name: name) else { throw PortalError.notFound("webhook endpoint") }
                let body: ByteBuffer
                do {
                    body = try await request.body.collect(upTo: limit)
                } catch {
                    throw PortalError(.payloadTooLarge, "the body is larger than \(limit) bytes")
                }
                let url = publicURL + request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
                let inbound = InboundWebhook(
                    method: request.method.rawValue, url: url, headers: request.headers.map { (name: $0.name.rawName, value: $0.value) }, body: Array(buffer: body),
                    source: context.remoteAddress
                )
                let answer = try await webhooks.receive(slug: slug, name: name, inbound)
                if let rejection = answer.rejection {
                    let code: PortalError.Code = switch rejection.status {
                    case 413: .payloadTooLarge
                    case 401: .unauthenticated
                    case 403: .forbidden
                    default: .malformedRequest
                    }
                    throw PortalError(code, rejection.message)
                }
                return Response(
                    status: .init(code: answer.status), headers: [.contentType: answer.contentType],
                    body: .init(byteBuffer: ByteBuffer(bytes: answer.body))
                )
            }
        }
    }
}
