import Foundation
package import Hummingbird
import Logging
package import PortalCore

/// The one mapping from errors to HTTP responses: RFC 9457 `application/problem+json` bodies.
package enum Problem {
    /// The HTTP status for an error code.
    package static func status(for code: PortalError.Code) -> HTTPResponse.Status {
        switch code {
        case .malformedRequest: .badRequest
        case .validationFailed: .unprocessableContent
        case .unauthenticated: .unauthorized
        case .forbidden: .forbidden
        case .notFound: .notFound
        case .conflict: .conflict
        case .payloadTooLarge: .contentTooLarge
        case .unsupportedMediaType: .unsupportedMediaType
        case .methodNotAllowed: .methodNotAllowed
        case .storage, .unavailable: .serviceUnavailable
        case .refused: .forbidden
        case .throttled: .tooManyRequests
        case .upstreamFailed: .badGateway
        case .upstreamTimeout: .gatewayTimeout
        default: .internalServerError
        }
    }

    /// Turns any error into a portal error: Hummingbird's own errors keep their status, anything
    /// unexpected becomes an `internal` error whose details go only to the log.
    static func portalError(from error: any Error, logger: Logger) -> PortalError {
        if let error = error as? PortalError { return error }
        if let error = error as? any HTTPResponseError {
            switch error.status {
            case .notFound: return PortalError(.notFound, "no such route")
            case .methodNotAllowed: return PortalError(.methodNotAllowed, "the route does not accept this method")
            case .contentTooLarge: return PortalError(.payloadTooLarge, "the body is larger than this route accepts")
            case .badRequest: return PortalError(.malformedRequest, "the request is malformed")
            case .unsupportedMediaType: return PortalError(.unsupportedMediaType, "unsupported content type")
            default:
                logger.warning("unmapped HTTP error", metadata: ["portal.status": "\(error.status.code)"])
                return PortalError(.internal, "the request failed")
            }
        }
        logger.error("unexpected error", metadata: ["portal.error_type": "\(type(of: error))"])
        return PortalError(.internal, "an unexpected error occurred; the request id identifies it in the logs")
    }

    /// The problem+json response for `error`.
    package static func response(for error: PortalError, requestID: String) -> Response {
        let status = status(for: error.code)
        var body: [String: JSONValue] = [
            "type": .string("urn:portal:problem:\(error.code.rawValue)"),
            "title": .string(status.reasonPhrase),
            "status": .int(Int64(status.code)),
            "detail": .string(error.message),
            "code": .string(error.code.rawValue),
        ]
        for (key, value) in error.details where body[key] == nil { body[key] = value }
        if !requestID.isEmpty { body["requestId"] = .string(requestID) }
        if !error.fieldErrors.isEmpty {
            body["errors"] = .array(error.fieldErrors.map { ["pointer": .string($0.pointer), "message": .string($0.message)] })
        }
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if error.code == .unauthenticated { headers[.wwwAuthenticate] = "Bearer realm=\"portal\"" }
        if let seconds = error.retryAfterSeconds {
            headers[.retryAfter] = String(seconds)
        } else if status == .serviceUnavailable {
            // A database that cannot be reached is back within seconds (a restart, a failover), or not soon.
            headers[.retryAfter] = "5"
        }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: JSONOutput.encode(JSONValue.object(body)))))
    }
}
