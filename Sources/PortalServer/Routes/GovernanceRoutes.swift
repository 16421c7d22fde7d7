import Compliance
import Foundation
import Hummingbird
import Integrations
import PortalCore
import Storage

/// Governance (issue 21): the organization's policy, and approvals of integrations with separation of duties.
struct GovernanceRoutes {
    let access: APIAccessGuard
    let integrations: IntegrationRegistry
    let maxBodyBytes: Int
    let reviews: SecurityReviews
    let bulk: IntegrationBulk

    func register(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        let registry = integrations
        table.guarded(group, prefix: "/portal", .get, "/policy", .readIntegrations) { _, _, principal in
            JSONOutput.response(try await registry.policy(organizationID: principal.organizationID).json)
        }
        table.guarded(group, prefix: "/portal", .put, "/policy", .managePolicy) { request, context, principal in
            let body = try await request.jsonBody(limit: self.maxBodyBytes)
            // An allow-list that leaves out the address the change comes from would lock its author out.
            let address = context.remoteAddress
            let policy = try await registry.setPolicy(body, by: principal) { policy throws(PortalError) in
                guard policy.allows(address) else {
                    throw PortalError.validation([.init(
                        pointer: "/apiAllowList", message: "leaves out the address this request comes from (\(address ?? "unknown")): add it, or you lock yourself out"
                    )])
                }
            }
            self.access.forget(principal.organizationID)
            return JSONOutput.response(policy.json)
        }
        table.guarded(group, prefix: "/portal", .get, "/approvals", .readIntegrations) { request, _, principal in
            let integration = try request.queryString("integrationId").map { text throws(PortalError) -> UUID in
                guard let id = UUID(uuidString: text) else {
                    throw PortalError.validation([.init(pointer: "?integrationId", message: "is not an integration id")])
                }
                return id
            }
            return JSONOutput.response(try await registry.approvals(
                organizationID: principal.organizationID, state: try request.queryChoice("state", ApprovalRecord.State.self), integrationID: integration,
                limit: try request.queryInteger("limit", default: 100, in: 1...1000), cursor: request.queryString("cursor")
            ))
        }
        let reviews = self.reviews
        table.guarded(group, prefix: "/portal", .get, "/reviews/questionnaire", .readIntegrations) { _, _, _ in
            JSONOutput.response(try reviews.questionnaire().json)
        }
        table.guarded(group, prefix: "/portal", .get, "/reviews", .readIntegrations) { _, _, principal in
            JSONOutput.response(try await reviews.schedule(organizationID: principal.organizationID))
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/reviews", .readIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let items = try await reviews.list(integrationID: id, organizationID: principal.organizationID)
            return JSONOutput.response(["items": .array(items.map(\.json))] as JSONValue)
        }
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/reviews", .approveIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let view = try await reviews.record(integrationID: id, body: try await request.jsonBody(limit: self.maxBodyBytes), by: principal)
            var response = JSONOutput.response(view.json, status: .created)
            response.headers[.location] = "/portal/integrations/\(view.integrationId)/reviews"
            return response
        }
        // Bulk operations: the route needs read access (an export); each action checks its own permission.
        let bulk = self.bulk
        table.guarded(group, prefix: "/portal", .post, "/bulk-jobs", .readIntegrations) { request, _, principal in
            let view = try await bulk.run(try await request.jsonBody(limit: self.maxBodyBytes), by: principal)
            var response = JSONOutput.response(view, status: .created)
            if let id = view.objectValue?["id"]?.stringValue { response.headers[.location] = "/portal/bulk-jobs/\(id)" }
            return response
        }
        table.guarded(group, prefix: "/portal", .get, "/bulk-jobs", .readIntegrations) { _, _, principal in
            JSONOutput.response(try await bulk.jobs(organizationID: principal.organizationID))
        }
        table.guarded(group, prefix: "/portal", .get, "/bulk-jobs/{id}", .readIntegrations) { _, context, principal in
            JSONOutput.response(try await bulk.job(id: try context.uuidParameter("id", what: "bulk job"), organizationID: principal.organizationID))
        }
        for (path, approve) in [("/integrations/{id}/approve", true), ("/integrations/{id}/reject", false)] {
            table.guarded(group, prefix: "/portal", .post, path, .approveIntegrations) { request, context, principal in
                let id = try context.uuidParameter("id", what: "integration")
                let (comment, digest) = try Self.decision(try await request.jsonBody(limit: self.maxBodyBytes))
                let view = approve
                    ? try await registry.approve(id: id, comment: comment, digest: digest, by: principal)
                    : try await registry.reject(id: id, comment: comment, digest: digest, by: principal)
                return JSONOutput.response(view)
            }
        }
    }

    /// A decision's body: `comment` (required) and `digest` (the configuration reviewed, optional).
    static func decision(_ body: JSONValue) throws(PortalError) -> (comment: String, digest: String?) {
        guard case .object(let members) = body else { throw PortalError.validation([.init(pointer: "", message: "must be an object")]) }
        var errors: [PortalError.FieldError] = []
        for key in members.keys.sorted() where !["comment", "digest"].contains(key) {
            errors.append(.init(pointer: "/\(jsonPointerEscape(key))", message: "unknown field"))
        }
        let comment = members["comment"]?.stringValue
        if comment == nil { errors.append(.init(pointer: "/comment", message: "is required: say why")) }
        let digest = members["digest"]
        if let digest, digest.stringValue.map({ $0.count == 64 && $0.allSatisfy(\.isHexDigit) }) != true {
            errors.append(.init(pointer: "/digest", message: "must be the 64 hex digits of the configuration digest reviewed"))
        }
        guard errors.isEmpty, let comment else { throw PortalError.validation(errors) }
        return (comment, digest?.stringValue?.lowercased())
    }
}
