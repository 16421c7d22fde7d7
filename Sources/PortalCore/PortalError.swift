/// The one error type of the product: a stable code, a human message, and for validation the list of
/// offending JSON fields.
///
/// `description` never contains secrets or personal data: messages are written by us, not copied from
/// input values. The HTTP layer maps ``Code`` to a status and an RFC 9457 problem body in one place.
package struct PortalError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A stable, machine-readable error code.
    package struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Base: String, Sendable {
            case malformedRequest = "malformed_request"
            case validationFailed = "validation_failed"
            case unauthenticated
            case forbidden
            case notFound = "not_found"
            case conflict
            case payloadTooLarge = "payload_too_large"
            case unsupportedMediaType = "unsupported_media_type"
            case methodNotAllowed = "method_not_allowed"
            case configuration
            case storage
            case crypto
            case unavailable
            case refused
            case throttled
            case upstreamFailed = "upstream_failed"
            case upstreamTimeout = "upstream_timeout"
            case `internal`
        }

        let base: Base

        /// The body is not syntactically valid (for example not JSON).
        package static let malformedRequest = Code(base: .malformedRequest)
        /// The body is JSON but breaks the schema: wrong type, missing or unknown field, unknown enum value.
        package static let validationFailed = Code(base: .validationFailed)
        /// No valid bearer token: missing, unknown, expired or revoked.
        package static let unauthenticated = Code(base: .unauthenticated)
        /// The caller's role does not allow the action.
        package static let forbidden = Code(base: .forbidden)
        /// No such resource in the caller's organization.
        package static let notFound = Code(base: .notFound)
        /// The request conflicts with the current state (duplicate name, deleted resource).
        package static let conflict = Code(base: .conflict)
        /// The body exceeds the route's size limit.
        package static let payloadTooLarge = Code(base: .payloadTooLarge)
        /// The body's content type is not accepted by the route.
        package static let unsupportedMediaType = Code(base: .unsupportedMediaType)
        /// The route exists but not with this method.
        package static let methodNotAllowed = Code(base: .methodNotAllowed)
        /// The service is configured wrongly (missing master key, bad database URL).
        package static let configuration = Code(base: .configuration)
        /// The database failed or is unreachable.
        package static let storage = Code(base: .storage)
        /// Encryption or decryption failed (wrong master key, tampered ciphertext).
        package static let crypto = Code(base: .crypto)
        /// A dependency is temporarily unavailable.
        package static let unavailable = Code(base: .unavailable)
        /// The portal will not make the outbound call: destination policy (SSRF), scheme, pending approval.
        package static let refused = Code(base: .refused)
        /// The portal's own rate limit (or one learned from the provider) refuses the call for now.
        package static let throttled = Code(base: .throttled)
        /// The upstream could not be reached or answered with something unusable (DNS, connect, TLS, size).
        package static let upstreamFailed = Code(base: .upstreamFailed)
        /// The upstream did not answer within the request's timeout.
        package static let upstreamTimeout = Code(base: .upstreamTimeout)
        /// A bug: something that should not happen.
        package static let `internal` = Code(base: .internal)

        /// The code as a short snake_case string, stable across versions.
        package var rawValue: String { base.rawValue }
        package var description: String { base.rawValue }
    }

    /// One offending field of a JSON document.
    package struct FieldError: Sendable, Equatable, Codable {
        /// JSON Pointer (RFC 6901) to the field, `""` for the whole document.
        package var pointer: String
        /// What is wrong with it.
        package var message: String

        package init(pointer: String, message: String) {
            self.pointer = pointer
            self.message = message
        }
    }

    package var code: Code
    package var message: String
    package var fieldErrors: [FieldError]
    /// For `not_found`: the resource exists, in another organization. The caller still gets a plain 404;
    /// the ledger records the attempt as `access.denied`.
    package var acrossOrganizations = false
    /// For `throttled`: seconds after which the call may succeed (the `Retry-After` header).
    package var retryAfterSeconds: Int?
    /// Extension members of the problem document (RFC 9457 section 3.2), such as the id of the running job
    /// behind a 409.
    package var details: [String: JSONValue] = [:]
    /// What an operator needs and a client must not see (which database could not be reached): shown by
    /// the CLI, never put in a problem document or `description`.
    package var operatorContext: String?

    package init(_ code: Code, _ message: String, fieldErrors: [FieldError] = []) {
        self.code = code
        self.message = message
        self.fieldErrors = fieldErrors
    }

    package var description: String { "\(code): \(message)" }

    /// A 422 naming the fields that break the schema.
    package static func validation(_ errors: [FieldError]) -> PortalError {
        let message = errors.count == 1
            ? "\(errors[0].pointer.isEmpty ? "the document" : errors[0].pointer): \(errors[0].message)"
            : "\(errors.count) fields are invalid"
        return PortalError(.validationFailed, message, fieldErrors: errors)
    }

    package static func notFound(_ what: String, acrossOrganizations: Bool = false) -> PortalError {
        var error = PortalError(.notFound, "\(what) not found")
        error.acrossOrganizations = acrossOrganizations
        return error
    }
}
