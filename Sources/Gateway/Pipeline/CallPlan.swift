import Crypto
import Foundation
import Integrations
import PortalCore
import Storage

/// A call checked and laid out before anything is sent or stored: the first step of the pipeline, pure
/// (the call, the integration and the gateway's limits in; the plan or the reason for refusal out), so that
/// every refusal is tested without a network or a database (`CallPlanTests`).
struct CallPlan {
    let method: String
    /// The absolute URL: the integration's base URL joined with the endpoint (never leaving it).
    let url: URL
    /// The endpoint as recorded: the configured template it matches, or the path with identifiers masked.
    let template: String
    /// The body after the request transforms.
    let body: [UInt8]
    /// The caller's headers after the request transforms, without hop-by-hop headers.
    let headers: [(name: String, value: String)]
    let transforms: Transforms
    let idempotent: Bool
    let cachePolicy: ResponseCache.Policy
    /// A GET of an endpoint the cache covers, not a test and not `no-store`.
    let cacheable: Bool
    let storeBodies: Bool
    /// The request body kept in `integration_requests` (when the integration asks for bodies).
    let storedRequest: JSONValue?
    /// The integration authenticates with an OAuth 2.0 access token.
    let usesOAuth: Bool
    let timeout: Duration
    let retry: IntegrationConfiguration.Retry
    /// The body's fields removed by data minimization (JSON pointers, array indexes as `*`).
    var stripped: [String] = []

    /// SHA-256 of the body sent, for the ledger entry.
    var requestDigest: String? { body.isEmpty ? nil : Hex.encode(SHA256.hash(data: body)) }

    /// Checks `call` against the integration (active, its allowed paths, its transforms) and the gateway's
    /// limits; `transient` is a test of an unsaved configuration (no cache).
    static func make(
        _ call: GatewayCall, for integration: OutboundIntegration, maxRequestBytes: Int, defaultTimeout: Duration, transient: Bool
    ) throws(PortalError) -> CallPlan {
        let config = integration.configuration
        if integration.status == .pending {
            var error = PortalError(.conflict, "the integration waits for approval: it makes no call until a second person approves it")
            error.details = ["approval": "pending"]
            throw error
        }
        guard integration.status == .active else {
            throw PortalError(.refused, "the integration is \(integration.status); only active integrations make calls")
        }
        guard APIRequest.methods.contains(call.method) else {
            throw PortalError(.methodNotAllowed, "the gateway sends GET, POST, PUT, DELETE and PATCH, not \(call.method)")
        }
        // Transforms stored before their limits existed may not be applied as written: the call is refused
        // with the reason rather than sent with a rule silently left out.
        let transforms = try Transforms.checked(config: config.transforms)
        var body = transforms.request.body(call.body) ?? call.body
        var stripped: [String] = []
        var minimized: JSONValue?
        if let minimization = config.minimization, !body.isEmpty {
            (body, stripped, minimized) = try Self.minimize(body, minimization)
        }
        guard body.count <= maxRequestBytes else {
            throw PortalError(.payloadTooLarge, "the request body is larger than \(maxRequestBytes) bytes")
        }
        let (url, path) = try Gateway.url(base: integration.baseURL, endpoint: call.endpoint)
        let template = EndpointTemplate.of(path: path, configured: config.endpoints)
        if let allowed = config.allowedPaths, !allowed.contains(where: { EndpointTemplate.of(path: path, configured: [$0]) == $0 }) {
            throw PortalError(.refused, "the integration does not allow calls to \(template)")
        }
        let cachePolicy = ResponseCache.Policy(config.cache)
        return CallPlan(
            method: call.method, url: url, template: template, body: body,
            headers: transforms.request.headers(call.headers).filter { !Gateway.hopByHop.contains($0.name.lowercased()) },
            transforms: transforms,
            idempotent: RetryPolicy.idempotent(method: call.method, headers: call.headers, retryNonIdempotent: config.retry.retryNonIdempotent),
            cachePolicy: cachePolicy,
            cacheable: !transient && call.method == "GET" && cachePolicy.covers(template) && !Gateway.noStore(call.headers),
            storeBodies: config.storeBodies, storedRequest: config.storeBodies ? minimized ?? call.storedBody : nil,
            usesOAuth: integration.authMethod == .oauth2 && config.oauth != nil,
            timeout: call.timeoutMs.map { Duration.milliseconds($0) } ?? defaultTimeout,
            retry: config.retry, stripped: stripped
        )
    }

    /// The body with only the fields the integration may send: stripped (the rest removed and named) or
    /// refused (a 422 naming them), as the integration's `minimization.mode` says. A body that is not JSON
    /// cannot be checked, and is refused.
    static func minimize(
        _ body: [UInt8], _ minimization: IntegrationConfiguration.Minimization
    ) throws(PortalError) -> (body: [UInt8], stripped: [String], kept: JSONValue?) {
        guard let json = try? JSONValue.parse(body) else {
            throw PortalError.validation([.init(pointer: "/body", message: "is not JSON: the integration sends only the JSON fields its minimization lists")])
        }
        let (kept, stripped) = FieldMinimizer(fields: minimization.fields).minimize(json)
        guard !stripped.isEmpty else { return (body, [], nil) }
        if minimization.mode == .refuse {
            throw PortalError.validation(stripped.prefix(50).map {
                .init(pointer: "/body" + $0, message: "is not among the fields the integration may send (config.minimization.fields)")
            })
        }
        return (Array(JSONValue.encodeText(kept).utf8), stripped, kept)
    }
}
