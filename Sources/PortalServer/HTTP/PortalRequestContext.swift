package import Hummingbird
package import PortalCore

/// The request context of every route: Hummingbird's core storage plus who is calling.
package struct PortalRequestContext: RequestContext {
    package var coreContext: CoreRequestContextStorage
    /// The authenticated caller, set by ``AuthenticationMiddleware`` on `/portal` routes.
    package var principal: Principal?
    /// The request id, echoed in `X-Request-Id` and every log line of the request.
    package var requestID: String = ""

    /// The peer's IP address, for hashed counts of failed authentications.
    package var remoteAddress: String?

    package init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress
    }

    /// Hummingbird's own limit, for any body it decodes itself; the API's limit is enforced earlier by
    /// ``BodyLimitMiddleware`` and ``Request/jsonBody(context:limit:)``.
    package var maxUploadSize: Int { 1 << 20 }

    /// The authenticated caller; throws `unauthenticated` on a route that was not authenticated.
    package func caller() throws(PortalError) -> Principal {
        guard let principal else { throw PortalError(.unauthenticated, "a bearer token is required") }
        return principal
    }
}
