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
        let body = transforms.request.body(call.body) ?? call.body
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
            storeBodies: config.storeBodies, storedRequest: config.storeBodies ? call.storedBody : nil,
            usesOAuth: integration.authMethod == .oauth2 && config.oauth != nil,
            timeout: call.timeoutMs.map { Duration.milliseconds($0) } ?? defaultTimeout,
            retry: config.retry
        )
    }
}
