import Foundation
import Hummingbird
import Integrations
import Ledger
import PortalCore
import Storage

/// `POST/GET /portal/tokens`, `DELETE /portal/tokens/{id}`: admins manage their organization's tokens.
struct TokenRoutes {
    let clock: any WallClock
    let database: Database
    let ledger: LedgerSequencer
    let maxBodyBytes: Int
    let quotas: Quotas
    let tokens: APITokenAuthority

    func register(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        table.guarded(group, prefix: "/portal", .post, "/tokens", .manageTokens) { request, _, principal in
            let body = try await request.jsonBody(limit: self.maxBodyBytes)
            let input = try TokenInput.parse(body, now: self.clock.now(), defaultLifetime: self.quotas.tokenLifetime)
            let quotas = self.quotas
            let issued = try await self.database.write { db in
                let inForce = try await APITokenStore(db).countInForce(organizationID: principal.organizationID, now: self.clock.now())
                guard inForce < quotas.tokens else {
                    throw PortalError.validation([.init(
                        pointer: "", message: "the organization has \(inForce) tokens in force, the most allowed (PORTAL_MAX_TOKENS) is \(quotas.tokens): revoke one first"
                    )])
                }
                return try await self.tokens.issue(
                    organizationID: principal.organizationID, role: input.role, owner: input.owner,
                    description: input.description, expiresAt: input.expiresAt, createdBy: principal.tokenID,
                    actor: principal.tokenID.uuidString.lowercased(), in: db
                )
            }
            self.ledger.wake()
            let view = APITokenView(issued.record, organizationSlug: principal.organizationSlug, now: self.clock.now(), token: issued.token)
            var response = JSONOutput.response(view, status: .created)
            response.headers[.location] = "/portal/tokens/\(view.id)"
            response.headers[.cacheControl] = "no-store"
            return response
        }
        table.guarded(group, prefix: "/portal", .get, "/tokens", .manageTokens) { request, _, principal in
            let limit = try request.queryInteger("limit", default: 100, in: 1...1000)
            let cursor = try Page<APITokenView>.cursorID(request.queryString("cursor"))
            let records = try await self.database.read { db in
                try await APITokenStore(db).list(organizationID: principal.organizationID, limit: limit + 1, before: cursor)
            }
            let now = self.clock.now()
            let page = records.prefix(limit)
            return JSONOutput.response(Page(
                items: page.map { APITokenView($0, organizationSlug: principal.organizationSlug, now: now) },
                nextCursor: records.count > limit ? page.last?.id.uuidString.lowercased() : nil
            ))
        }
        table.guarded(group, prefix: "/portal", .delete, "/tokens/{id}", .manageTokens) { _, context, principal in
            let id = try context.uuidParameter("id", what: "token")
            let revoked = try await self.database.write { db in
                try await self.tokens.revoke(id: id, organizationID: principal.organizationID, actor: principal.tokenID.uuidString.lowercased(), in: db)
            }
            self.ledger.wake()
            if !revoked {
                // Revoking an already revoked token of this organization is a no-op; anything else is not found.
                let (exists, elsewhere) = try await self.database.read { db in
                    (
                        try await APITokenStore(db).find(id: id, organizationID: principal.organizationID) != nil,
                        try await APITokenStore(db).existsElsewhere(id: id, organizationID: principal.organizationID)
                    )
                }
                guard exists else { throw PortalError.notFound("token", acrossOrganizations: elsewhere) }
            }
            return Response(status: .noContent)
        }
    }
}

/// A validated `POST /portal/tokens` body.
struct TokenInput {
    var role: Role
    var owner: String
    var description: String?
    var expiresAt: Date?

    /// `defaultLifetime` applies when the body names no `expiresIn`; `"expiresIn": "never"` opts out.
    static func parse(_ body: JSONValue, now: Date, defaultLifetime: TimeInterval?) throws(PortalError) -> TokenInput {
        let errors = ValidationErrors()
        var r = JSONObjectReader(body, errors: errors)
        let role = r.enumeration("role", Role.self, required: true)
        let owner = r.string("owner", required: true, minLength: 1, maxLength: 200)
        let description = r.string("description", maxLength: 500)
        var expiresAt = defaultLifetime.map { now + $0 }
        if let text = r.string("expiresIn", minLength: 1, maxLength: 20) {
            do throws(PortalError) {
                if text == "never" {
                    expiresAt = nil
                } else {
                    let seconds = try DurationText.seconds(text, field: "/expiresIn")
                    if seconds > Timestamp.maxLifetime { throw PortalError.validation([.init(pointer: "/expiresIn", message: "must be at most 10 years (3660d), or never")]) }
                    expiresAt = now + seconds
                }
            } catch {
                errors.add("/expiresIn", error.fieldErrors.first?.message ?? "is not a duration, nor never")
            }
        }
        r.finish()
        try errors.throwIfAny()
        guard let role, let owner else { throw PortalError(.internal, "validation passed with a missing field") }
        return TokenInput(role: role, owner: owner, description: description, expiresAt: expiresAt)
    }
}
