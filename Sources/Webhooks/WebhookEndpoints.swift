package import Foundation
import Crypto
import Integrations
package import PortalCore

/// A validated registration body: the seed's WebhookConfig (endpoint, events, secret, signatureHeader,
/// signatureMethod, retryPolicy) plus `scheme` and the scheme's options.
package struct WebhookEndpointInput: Sendable {
    package var name: String?
    package var scheme: WebhookScheme?
    package var events: [String]?
    package var secret: String?
    /// The config members given (signatureHeader, signatureMethod, retryPolicy, tolerance, eventIdHeader,
    /// eventIdPointer, secretField).
    package var config: [String: JSONValue]

    /// Parses a create (`partial` false) or update body; every problem in one 422.
    package static func parse(_ body: JSONValue, partial: Bool) throws(PortalError) -> WebhookEndpointInput {
        let errors = ValidationErrors()
        var r = JSONObjectReader(body, errors: errors)
        var input = WebhookEndpointInput(config: [:])
        _ = r.string("integrationId", maxLength: 64)
        if let endpoint = r.string("endpoint", required: !partial, minLength: 1, maxLength: 200) {
            let name = endpoint.hasPrefix("/webhooks/") ? String(endpoint.dropFirst("/webhooks/".count)) : endpoint.hasPrefix("/") ? String(endpoint.dropFirst()) : endpoint
            if name.isEmpty || name.count > 100 || !name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") }) {
                r.reject("endpoint", "must be /webhooks/<name> with a name of lowercase letters, digits, '-' or '_'")
            } else {
                input.name = name
            }
        }
        input.events = r.strings("events", maxLength: 100)
        input.secret = r.string("secret", required: !partial, minLength: 8, maxLength: 4096)
        input.scheme = r.enumeration("scheme", WebhookScheme.self)
        if let header = r.string("signatureHeader", minLength: 1, maxLength: 100) { input.config["signatureHeader"] = .string(header) }
        if let method = r.string("signatureMethod", minLength: 1, maxLength: 20) {
            if ["hmac-sha256", "hmac-sha1"].contains(method) { input.config["signatureMethod"] = .string(method) } else { r.reject("signatureMethod", "must be hmac-sha256 or hmac-sha1") }
        }
        if let tolerance = r.integer("toleranceSeconds", in: 1...86_400) { input.config["toleranceSeconds"] = .int(tolerance) }
        if let header = r.string("eventIdHeader", minLength: 1, maxLength: 100) { input.config["eventIdHeader"] = .string(header) }
        if let pointer = r.string("eventIdPointer", minLength: 1, maxLength: 200) {
            if pointer.hasPrefix("/") { input.config["eventIdPointer"] = .string(pointer) } else { r.reject("eventIdPointer", "must be a JSON pointer starting with /") }
        }
        if let field = r.string("secretField", minLength: 1, maxLength: 50) {
            if field == "clientState" { input.config["secretField"] = .string(field) } else { r.reject("secretField", "must be clientState") }
        }
        if let policy = r.nested("retryPolicy", WebhookRetryPolicyFields.read) { input.config["retryPolicy"] = policy }
        if let sources = r.value("allowedSources") {
            do {
                input.config["allowedSources"] = .array(try IPNetwork.list(sources, pointer: r.pointer("allowedSources")).map { .string($0.description) })
            } catch {
                for field in error.fieldErrors { errors.add(field.pointer, field.message) }
            }
        }
        r.finish()
        try errors.throwIfAny()
        return input
    }
}

/// An endpoint as the API shows it: never the secret.
package struct WebhookEndpointView: Sendable, Encodable {
    package var id: String
    package var integrationId: String
    package var endpoint: String
    /// The receive path, namespaced by organization, and the absolute URL to give the provider.
    package var path: String
    package var url: String
    package var scheme: String
    package var events: [String]
    package var signatureHeader: String?
    package var signatureMethod: String?
    package var toleranceSeconds: Int
    package var retryPolicy: RetryPolicy
    /// Where deliveries may come from (empty: anywhere).
    package var allowedSources: [String]
    package var secretRotation: String?
    package var createdAt: String
    package var updatedAt: String
}

/// The seed's RetryPolicy, delays in milliseconds.
package struct RetryPolicy: Sendable, Encodable, Equatable {
    package var maxRetries: Int
    package var baseDelay: Int
    package var maxDelay: Int

    package init(_ config: JSONValue?) {
        let m = config?.objectValue ?? [:]
        func int(_ key: String, _ fallback: Int) -> Int { if case .int(let v)? = m[key] { Int(v) } else { fallback } }
        maxRetries = int("maxRetries", 5)
        baseDelay = int("baseDelay", 1_000)
        maxDelay = int("maxDelay", 300_000)
    }

    /// `min(maxDelay, baseDelay * 2^(retry-1))` with full jitter, for retry number `retry` (1-based).
    package func delay(retry: Int, unit: Double) -> TimeInterval {
        let ceiling = min(Double(maxDelay), Double(baseDelay) * pow(2, Double(max(0, retry - 1))))
        return ceiling * unit / 1000
    }
}

/// The secrets of an endpoint, sealed together: the current one and, during a rotation's overlap, the
/// previous one.
struct EndpointSecrets: Codable {
    var current: String
    var previous: String?
    var previousUntil: Date?
}
