import Foundation
import Gateway
import Hummingbird
import Integrations
import PortalCore

/// The seed's integration management endpoints under `/portal/integrations`.
struct IntegrationRoutes {
    let services: PortalServices

    func register(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        let registry = services.integrations
        table.guarded(group, prefix: "/portal", .post, "/integrations", .manageIntegrations) { request, _, principal in
            let input = try IntegrationInput.parse(try await request.jsonBody(limit: services.maxBodyBytes))
            let view = try await registry.register(input, by: principal)
            var response = JSONOutput.response(view, status: .created)
            response.headers[.location] = "/portal/integrations/\(view.id)"
            return response
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations", .readIntegrations) { request, _, principal in
            let page = try await registry.list(
                organizationID: principal.organizationID,
                limit: try request.queryInteger("limit", default: 100, in: 1...1000),
                cursor: request.queryString("cursor"),
                includeDeleted: try request.queryBool("includeDeleted", default: false)
            )
            return JSONOutput.response(page)
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}", .readIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            return JSONOutput.response(try await registry.get(id: id, organizationID: principal.organizationID))
        }
        table.guarded(group, prefix: "/portal", .patch, "/integrations/{id}", .manageIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let patch = try IntegrationPatch.parse(try await request.jsonBody(limit: services.maxBodyBytes))
            return JSONOutput.response(try await registry.update(id: id, patch: patch, by: principal))
        }
        table.guarded(group, prefix: "/portal", .delete, "/integrations/{id}", .manageIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            try await registry.delete(id: id, by: principal)
            return Response(status: .noContent)
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/status", .readIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            return JSONOutput.response(try await registry.status(id: id, organizationID: principal.organizationID))
        }
        // The seed's executeRequest: an APIRequest in, the upstream's APIResponse out (whatever its status).
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/requests", .manageIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let call = try APIRequest.parse(try await request.jsonBody(limit: services.maxBodyBytes), integrationID: id)
            return JSONOutput.response(try await services.gateway.execute(call, integrationID: id, by: principal))
        }
    }
}
