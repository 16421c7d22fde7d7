import Foundation
import Hummingbird
import Ledger
public import PortalCore

/// One route of the API as documented: method, OpenAPI-style path, and what the caller needs.
public struct APIRoute: Sendable, Hashable, CustomStringConvertible {
    public var method: String
    /// The path with `{name}` parameters, exactly as in `openapi.json`.
    public var path: String
    /// Whether a bearer token is needed.
    public var authenticated: Bool
    /// The permission the caller's role needs, nil when any authenticated caller may call it.
    public var permission: Permission?

    public var description: String { "\(method) \(path)" }
}

/// Registers routes on the router and records each with its permission, so the role matrix test and the
/// OpenAPI comparison read the same table the server enforces.
final class RouteTable {
    typealias Context = PortalRequestContext
    typealias Handler = @Sendable (Request, Context) async throws -> Response
    typealias GuardedHandler = @Sendable (Request, Context, Principal) async throws -> Response

    private(set) var routes: [APIRoute] = []
    private let audit: any AuditTrail

    init(audit: any AuditTrail) {
        self.audit = audit
    }

    /// A route open to anyone (health, the OpenAPI document).
    func open(_ router: Router<Context>, _ method: HTTPRequest.Method, _ path: String, _ handler: @escaping Handler) {
        router.on(RouterPath(path), method: method, use: handler)
        routes.append(APIRoute(method: method.rawValue, path: path, authenticated: false, permission: nil))
    }

    /// A route behind the token check of `group` (mounted at `prefix`) that also needs `permission`.
    ///
    /// A refusal by role (403) and a request for another organization's resource (answered 404) are
    /// appended to the caller's ledger as `access.denied` before the answer goes out.
    func guarded(
        _ group: RouterGroup<Context>, prefix: String, _ method: HTTPRequest.Method, _ path: String,
        _ permission: Permission?, documentedPath: String? = nil, _ handler: @escaping GuardedHandler
    ) {
        let template = prefix + (documentedPath ?? path)
        let audit = audit
        group.on(RouterPath(path), method: method) { request, context in
            let principal = try context.caller()
            do {
                if let permission { try principal.require(permission) }
                return try await handler(request, context, principal)
            } catch let error as PortalError where error.code == .forbidden || (error.code == .notFound && error.acrossOrganizations) {
                try await audit.append([AuditEvent(
                    organizationID: principal.organizationID, type: "access.denied", actor: principal.tokenID.uuidString.lowercased(),
                    data: [
                        "route": .string(template), "method": .string(method.rawValue),
                        "status": .int(error.code == .forbidden ? 403 : 404), "tokenId": .string(principal.tokenID.uuidString.lowercased()),
                    ],
                    time: Date()
                )])
                throw error
            }
        }
        routes.append(APIRoute(method: method.rawValue, path: template, authenticated: true, permission: permission))
    }
}
