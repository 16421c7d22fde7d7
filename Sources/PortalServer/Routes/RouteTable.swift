import Foundation
import Hummingbird
import Ledger
package import PortalCore

/// One route of the API as documented: method, OpenAPI-style path, and what the caller needs.
package struct APIRoute: Sendable, Hashable, CustomStringConvertible {
    package var method: String
    /// The path with `{name}` parameters, exactly as in `openapi.json`.
    package var path: String
    /// Whether a bearer token is needed.
    package var authenticated: Bool
    /// The permission the caller's role needs, nil when any authenticated caller may call it.
    package var permission: Permission?

    package var description: String { "\(method) \(path)" }
}

/// Registers routes on the router and records each with its permission, so the role matrix test and the
/// OpenAPI comparison read the same table the server enforces.
final class RouteTable {
    typealias Context = PortalRequestContext
    typealias Handler = @Sendable (Request, Context) async throws -> Response
    typealias GuardedHandler = @Sendable (Request, Context, Principal) async throws -> Response

    private(set) var routes: [APIRoute] = []
    private let audit: any AuditTrail
    /// Counts refusals per token, route, status and minute; nil: one `access.denied` entry each.
    private let failures: AuthFailureRecorder?

    init(audit: any AuditTrail, failures: AuthFailureRecorder? = nil) {
        self.audit = audit
        self.failures = failures
    }

    /// A route open to anyone (health, the OpenAPI document, the webhook receiver). The peer's address is
    /// in ``RequestSource/address`` while it runs, for the refusals its services record (hashed).
    func open(_ router: Router<Context>, _ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Handler) {
        router.on(RouterPath(path), method: method) { request, context in
            try await RequestSource.$address.withValue(context.remoteAddress) { try await handler(request, context) }
        }
        routes.append(APIRoute(method: method.rawValue, path: path, authenticated: false, permission: nil))
    }

    /// A route behind the token check of `group` (mounted at `prefix`) that also needs `permission`.
    ///
    /// A refusal by role (403) and a request for another organization's resource (answered 404) are
    /// recorded in the caller's ledger as `access.denied`: the first per token, route, method and status
    /// of a minute before the answer goes out, the others of that minute in one entry with their `count`
    /// when the minute ends.
    func guarded(
        _ group: RouterGroup<Context>, prefix: String, _ method: HTTPRequest.Method, _ path: String,
        _ permission: Permission?, documentedPath: String? = nil, _ handler: @escaping GuardedHandler
    ) {
        let template = prefix + (documentedPath ?? path)
        let audit = audit
        let failures = failures
        group.on(RouterPath(path), method: method) { request, context in
            let principal = try context.caller()
            do {
                if let permission { try principal.require(permission) }
                return try await handler(request, context, principal)
            } catch let error as PortalError where error.code == .forbidden || (error.code == .notFound && error.acrossOrganizations) {
                let event = AuditEvent(
                    organizationID: principal.organizationID, type: .accessDenied, actor: principal.tokenID.uuidString.lowercased(),
                    data: [
                        "route": .string(template), "method": .string(method.rawValue),
                        "status": .int(error.code == .forbidden ? 403 : 404), "tokenId": .string(principal.tokenID.uuidString.lowercased()),
                    ],
                    time: failures?.clock.now() ?? Date()
                )
                if let failures {
                    try await failures.refused(event, keyFields: ["tokenId", "route", "method", "status"], address: context.remoteAddress)
                } else {
                    try await audit.append([event])
                }
                throw error
            }
        }
        routes.append(APIRoute(method: method.rawValue, path: template, authenticated: true, permission: permission))
    }
}
