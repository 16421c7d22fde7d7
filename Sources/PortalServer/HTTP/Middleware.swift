import Foundation
import HTTPTypes
import Hummingbird
import Logging
import PortalCore

/// Gives each request an id, maps every error to a problem+json response, and writes one access log
/// line with the route template (never the raw path), status and duration.
struct RequestLogMiddleware: RouterMiddleware {
    typealias Context = PortalRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let requestID = Self.requestID(from: request)
        context.requestID = requestID
        context.logger[metadataKey: "portal.request_id"] = .string(requestID)
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            let problem = Problem.portalError(from: error, logger: context.logger)
            response = Problem.response(for: problem, requestID: requestID)
        }
        response.headers[.requestID] = requestID
        let elapsed = ContinuousClock.now - start
        let micros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        context.logger.info("request", metadata: [
            "portal.method": .string(request.method.rawValue),
            "portal.route": .string(context.endpointPath ?? "unmatched"),
            "portal.status": .stringConvertible(response.status.code),
            "portal.duration_us": .stringConvertible(micros),
        ])
        return response
    }

    /// The caller's `X-Request-Id` when it is short and plain, else a new random id.
    static func requestID(from request: Request) -> String {
        if let given = request.headers[.requestID], (1...64).contains(given.count),
           given.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
            return given
        }
        var rng = SystemRandomNumberGenerator()
        let value = rng.next()
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// Rejects a body whose declared length exceeds the limit before any of it is read.
struct BodyLimitMiddleware: RouterMiddleware {
    typealias Context = PortalRequestContext
    let limit: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let declared = request.headers[.contentLength], let length = Int(declared), length > limit {
            throw PortalError(.payloadTooLarge, "the body is larger than \(limit) bytes")
        }
        return try await next(request, context)
    }
}

/// Puts the client's address in the context: the peer's, or the one a trusted proxy forwarded.
struct ClientAddressMiddleware: RouterMiddleware {
    typealias Context = PortalRequestContext
    let trusted: [IPNetwork]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !trusted.isEmpty else { return try await next(request, context) }
        var context = context
        context.remoteAddress = ClientAddress.resolve(peer: context.remoteAddress, forwardedFor: request.headers[values: .xForwardedFor], trusted: trusted)
        return try await next(request, context)
    }
}

/// Authenticates `/portal` requests with a bearer API token and puts the caller in the context; then the
/// organization's allow-list and the API's rate limits (``APIAccessGuard``).
struct AuthenticationMiddleware: RouterMiddleware {
    typealias Context = PortalRequestContext
    let authority: APITokenAuthority
    let failures: AuthFailureRecorder
    let access: APIAccessGuard

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // The console's in-process calls (ConsoleAPI) arrive with the session's caller already set; a
        // request from the network never does (the context is built by the server).
        if context.principal != nil { return try await next(request, context) }
        let principal: Principal
        do {
            principal = try await authenticate(request)
        } catch let error as PortalError where error.code == .unauthenticated {
            failures.note(route: context.endpointPath ?? "unmatched", address: context.remoteAddress)
            throw error
        }
        var context = context
        context.principal = principal
        context.logger[metadataKey: "portal.token_id"] = .string(principal.tokenID.uuidString.lowercased())
        context.logger[metadataKey: "portal.org"] = .string(principal.organizationSlug)
        try await access.check(principal, address: context.remoteAddress, route: context.endpointPath ?? "unmatched", method: request.method.rawValue)
        return try await next(request, context)
    }

    private func authenticate(_ request: Request) async throws -> Principal {
        guard let header = request.headers[.authorization] else {
            throw PortalError(.unauthenticated, "a bearer token is required (Authorization: Bearer <token>)")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw PortalError(.unauthenticated, "the Authorization header must be 'Bearer <token>'")
        }
        return try await authority.authenticate(String(parts[1]).trimmingCharacters(in: .whitespaces))
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
    static let xForwardedFor = Self("X-Forwarded-For")!
}
