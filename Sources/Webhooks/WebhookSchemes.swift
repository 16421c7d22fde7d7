package import Foundation
import Crypto
import Ledger
import PortalCore

/// A webhook delivery as received: what signature schemes read. `url` is the full URL the provider
/// called (Twilio and HubSpot sign it).
package struct InboundWebhook: Sendable {
    package var method: String
    package var url: String
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]
    /// The client's address (the peer's, or the one a trusted proxy forwarded), for the endpoint's allow-list.
    package var source: String?

    package init(method: String, url: String, headers: [(name: String, value: String)], body: [UInt8], source: String? = nil) {
        self.source = source
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    /// The first header of that name (ASCII case-insensitive), trimmed.
    package func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name.lowercased() == lowered }?.value.trimmingCharacters(in: .whitespaces)
    }
}

/// The signature schemes (formats: `../shared/vectors/webhooks.json`), plus `shared-secret` for
/// providers that send a static secret (Okta event hooks, Auth0 log streams, Microsoft Graph `clientState`).
package enum WebhookScheme: String, Sendable, CaseIterable, Codable {
    case standardWebhooks = "standard-webhooks"
    case stripe
    case github
    case slack
    case shopify
    case twilio
    case sendgrid
    case hubspot
    case hmac
    case sharedSecret = "shared-secret"

    /// Whether the scheme signs a timestamp (and so has a tolerance window).
    package var hasTimestamp: Bool {
        switch self {
        case .standardWebhooks, .stripe, .slack, .sendgrid, .hubspot: true
        case .github, .shopify, .twilio, .hmac, .sharedSecret: false
        }
    }

    /// Whether a captured delivery can be sent again and verify: the signature covers no timestamp (and
    /// the id, when there is one, is an unsigned header). The receiver then deduplicates on the body's
    /// SHA-256 for as long as the event is kept.
    package var replayable: Bool { !hasTimestamp }

    /// Whether the signature covers the body (a shared secret covers nothing).
    package var signsBody: Bool { self != .sharedSecret }
}

/// Options of an endpoint that the schemes read (the seed's `signatureHeader` and `signatureMethod` for
/// `hmac`, the header or JSON field for `shared-secret`, where event ids come from).
package struct SchemeOptions: Sendable, Equatable {
    package var signatureHeader: String?
    /// `hmac-sha256` (default) or `hmac-sha1`.
    package var signatureMethod: String?
    /// Timestamp tolerance in seconds (default 300, the seed's validateTimestamp).
    package var tolerance: TimeInterval
    /// Where the provider's event id is, for `hmac` and `shared-secret`: a header name or a JSON pointer.
    package var eventIDHeader: String?
    package var eventIDPointer: String?
    /// `shared-secret` in a JSON field rather than a header: `clientState` (Microsoft Graph) checks the
    /// `clientState` of every notification in `value`.
    package var secretField: String?

    package init(
        signatureHeader: String? = nil, signatureMethod: String? = nil, tolerance: TimeInterval = 300, eventIDHeader: String? = nil,
        eventIDPointer: String? = nil, secretField: String? = nil
    ) {
        self.signatureHeader = signatureHeader
        self.signatureMethod = signatureMethod
        self.tolerance = tolerance
        self.eventIDHeader = eventIDHeader
        self.eventIDPointer = eventIDPointer
        self.secretField = secretField
    }
}

/// What a verified delivery says about itself.
package struct VerifiedWebhook: Sendable, Equatable {
    /// The provider's event id, when the scheme carries one (`webhook-id`, GitHub's delivery id, Stripe's
    /// event id...).
    package var eventID: String?
    /// The event type, when a header carries it (GitHub, Shopify).
    package var eventType: String?
    /// The signed timestamp, for schemes that have one.
    package var timestamp: Date?
    /// Whether the signature covers where `eventID` came from (false: an unsigned header, or a shared secret).
    package var eventIDSigned = true
    /// Whether the signature covers where `eventType` came from (false: an unsigned header).
    package var eventTypeSigned = true
}

/// Why a delivery was refused: the HTTP status it gets and a reason safe to return and record.
package struct WebhookRejection: Error, Sendable, Equatable {
    package enum Kind: String, Sendable {
        case missingSignature = "missing_signature"
        case badSignature = "bad_signature"
        case staleTimestamp = "stale_timestamp"
        case malformed
        case filteredEvent = "filtered_event"
        case tooLarge = "too_large"
        /// The delivery came from an address outside the endpoint's `allowedSources`.
        case sourceNotAllowed = "source_not_allowed"
    }

    package var kind: Kind
    package var message: String

    package init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// 413 for a body too large, 401 for signatures and timestamps, 403 for a source not allowed, 400 otherwise.
    package var status: Int {
        switch kind {
        case .sourceNotAllowed: 403
        case .tooLarge: 413
        case .missingSignature, .badSignature, .staleTimestamp: 401
        case .malformed, .filteredEvent: 400
        }
    }
}

/// Verifies deliveries against the raw bytes, in constant time, with any of the endpoint's current secrets
/// (several during a rotation's overlap).
package enum WebhookVerifier {
    package static func verify(
        _ request: InboundWebhook, scheme: WebhookScheme, secrets: [String], options: SchemeOptions = SchemeOptions(), now: Date
    ) throws(WebhookRejection) -> VerifiedWebhook {
        guard !secrets.isEmpty else { throw WebhookRejection(.badSignature, "the endpoint has no secret to verify with") }
        switch scheme {
        case .standardWebhooks: return try standardWebhooks(request, secrets: secrets, options: options, now: now)
        case .stripe: return try stripe(request, secrets: secrets, options: options, now: now)
        case .github: return try github(request, secrets: secrets)
        case .slack: return try slack(request, secrets: secrets, options: options, now: now)
        case .shopify: return try shopify(request, secrets: secrets)
        case .twilio: return try twilio(request, secrets: secrets)
        case .sendgrid: return try sendgrid(request, secrets: secrets, options: options, now: now)
        case .hubspot: return try hubspot(request, secrets: secrets, options: options, now: now)
        case .hmac: return try hmac(request, secrets: secrets, options: options)
        case .sharedSecret: return try sharedSecret(request, secrets: secrets, options: options)
        }
    }

    // MARK: Schemes

    static func standardWebhooks(_ r: InboundWebhook, secrets: [String], options: SchemeOptions, now: Date) throws(WebhookRejection) -> VerifiedWebhook {
        let prefix = r.header("webhook-signature") != nil ? "webhook" : "svix"
        guard let id = r.header("\(prefix)-id"), let stamp = r.header("\(prefix)-timestamp"), let signatures = r.header("\(prefix)-signature") else {
            throw WebhookRejection(.missingSignature, "webhook-id, webhook-timestamp and webhook-signature are required")
        }
        let timestamp = try checkTimestamp(stamp, now: now, tolerance: options.tolerance)
        let content = Array("\(id).\(stamp).".utf8) + r.body
        let entries = signatures.split(separator: " ").compactMap { entry -> (String, [UInt8])? in
            let parts = entry.split(separator: ",", maxSplits: 1)
            guard parts.count == 2, let bytes = Data(base64Encoded: String(parts[1])) else { return nil }
            return (String(parts[0]), Array(bytes))
        }
        for secret in secrets {
            if secret.hasPrefix("whpk_") {
                // v1a: Ed25519 over the same content, with the endpoint's public key.
                guard let raw = Data(base64Encoded: String(secret.dropFirst(5))), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { continue }
                if entries.contains(where: { $0.0 == "v1a" && key.isValidSignature($0.1, for: content) }) {
                    return VerifiedWebhook(eventID: id, timestamp: timestamp)
                }
            } else {
                let keyText = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret
                guard let key = Data(base64Encoded: keyText) else { continue }
                let expected = Array(HMAC<SHA256>.authenticationCode(for: content, using: SymmetricKey(data: key)))
                if entries.contains(where: { $0.0 == "v1" && ConstantTime.equals($0.1, expected) }) {
                    return VerifiedWebhook(eventID: id, timestamp: timestamp)
                }
            }
        }
        throw WebhookRejection(.badSignature, "no signature in webhook-signature matches")
    }

    static func stripe(_ r: InboundWebhook, secrets: [String], options: SchemeOptions, now: Date) throws(WebhookRejection) -> VerifiedWebhook {
        guard let header = r.header("Stripe-Signature") else { throw WebhookRejection(.missingSignature, "Stripe-Signature is required") }
        var stamp: String?
        var signatures: [[UInt8]] = []
        for item in header.split(separator: ",") {
            let pair = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            if pair[0] == "t" { stamp = pair[1] }
            // Only v1 entries count (v0 is Stripe's test scheme).
            if pair[0] == "v1", let bytes = Hex.decode(pair[1]) { signatures.append(bytes) }
        }
        guard let stamp, !signatures.isEmpty else { throw WebhookRejection(.malformed, "Stripe-Signature needs t= and at least one v1=") }
        let timestamp = try checkTimestamp(stamp, now: now, tolerance: options.tolerance)
        let content = Array("\(stamp).".utf8) + r.body
        try match(secrets, signatures) { secret in Array(HMAC<SHA256>.authenticationCode(for: content, using: SymmetricKey(data: Array(secret.utf8)))) }
        return VerifiedWebhook(eventID: jsonString(r.body, "/id"), eventType: jsonString(r.body, "/type"), timestamp: timestamp)
    }

    static func github(_ r: InboundWebhook, secrets: [String]) throws(WebhookRejection) -> VerifiedWebhook {
        // Both headers are outside the signature, which covers only the body.
        let verified = VerifiedWebhook(eventID: r.header("X-GitHub-Delivery"), eventType: r.header("X-GitHub-Event"), eventIDSigned: false, eventTypeSigned: false)
        if let header = r.header("X-Hub-Signature-256") {
            guard header.hasPrefix("sha256="), let signature = Hex.decode(String(header.dropFirst(7))) else {
                throw WebhookRejection(.malformed, "X-Hub-Signature-256 is sha256=<hex>")
            }
            try match(secrets, [signature]) { Array(HMAC<SHA256>.authenticationCode(for: r.body, using: SymmetricKey(data: Array($0.utf8)))) }
            return verified
        }
        // Legacy deliveries carry only the SHA-1 form.
        guard let header = r.header("X-Hub-Signature") else { throw WebhookRejection(.missingSignature, "X-Hub-Signature-256 is required") }
        guard header.hasPrefix("sha1="), let signature = Hex.decode(String(header.dropFirst(5))) else {
            throw WebhookRejection(.malformed, "X-Hub-Signature is sha1=<hex>")
        }
        try match(secrets, [signature]) { Array(HMAC<Insecure.SHA1>.authenticationCode(for: r.body, using: SymmetricKey(data: Array($0.utf8)))) }
        return verified
    }

    static func slack(_ r: InboundWebhook, secrets: [String], options: SchemeOptions, now: Date) throws(WebhookRejection) -> VerifiedWebhook {
        guard let stamp = r.header("X-Slack-Request-Timestamp"), let header = r.header("X-Slack-Signature") else {
            throw WebhookRejection(.missingSignature, "X-Slack-Request-Timestamp and X-Slack-Signature are required")
        }
        guard header.hasPrefix("v0="), let signature = Hex.decode(String(header.dropFirst(3))) else {
            throw WebhookRejection(.malformed, "X-Slack-Signature is v0=<hex>")
        }
        let timestamp = try checkTimestamp(stamp, now: now, tolerance: options.tolerance)
        let content = Array("v0:\(stamp):".utf8) + r.body
        try match(secrets, [signature]) { Array(HMAC<SHA256>.authenticationCode(for: content, using: SymmetricKey(data: Array($0.utf8)))) }
        return VerifiedWebhook(eventID: jsonString(r.body, "/event_id"), eventType: jsonString(r.body, "/event/type") ?? jsonString(r.body, "/type"), timestamp: timestamp)
    }

    static func shopify(_ r: InboundWebhook, secrets: [String]) throws(WebhookRejection) -> VerifiedWebhook {
        guard let header = r.header("X-Shopify-Hmac-SHA256") else { throw WebhookRejection(.missingSignature, "X-Shopify-Hmac-SHA256 is required") }
        guard let signature = Data(base64Encoded: header).map(Array.init) else { throw WebhookRejection(.malformed, "X-Shopify-Hmac-SHA256 is base64") }
        try match(secrets, [signature]) { Array(HMAC<SHA256>.authenticationCode(for: r.body, using: SymmetricKey(data: Array($0.utf8)))) }
        return VerifiedWebhook(
            eventID: r.header("X-Shopify-Webhook-Id") ?? r.header("X-Shopify-Event-Id"), eventType: r.header("X-Shopify-Topic"), eventIDSigned: false, eventTypeSigned: false
        )
    }

    /// Twilio: base64 HMAC-SHA1 of the full URL followed by the form parameters sorted by name, each name
    /// then value; a JSON body is covered by the URL's `bodySHA256` parameter instead.
    static func twilio(_ r: InboundWebhook, secrets: [String]) throws(WebhookRejection) -> VerifiedWebhook {
        guard let header = r.header("X-Twilio-Signature") else { throw WebhookRejection(.missingSignature, "X-Twilio-Signature is required") }
        guard let signature = Data(base64Encoded: header).map(Array.init) else { throw WebhookRejection(.malformed, "X-Twilio-Signature is base64") }
        var content = r.url
        let isForm = r.header("Content-Type")?.lowercased().hasPrefix("application/x-www-form-urlencoded") ?? false
        if isForm {
            for (name, value) in formParameters(r.body).sorted(by: { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }) { content += name + value }
        } else if let digest = URLComponents(string: r.url)?.queryItems?.first(where: { $0.name == "bodySHA256" })?.value {
            guard ConstantTime.equals(Array(digest.lowercased().utf8), Array(Hex.encode(SHA256.hash(data: r.body)).utf8)) else {
                throw WebhookRejection(.badSignature, "the body does not match bodySHA256")
            }
        } else if !r.body.isEmpty {
            // Otherwise nothing would cover the body.
            throw WebhookRejection(.malformed, "a body that is not a form must be covered by the URL's bodySHA256 parameter")
        }
        let bytes = Array(content.utf8)
        try match(secrets, [signature]) { Array(HMAC<Insecure.SHA1>.authenticationCode(for: bytes, using: SymmetricKey(data: Array($0.utf8)))) }
        return VerifiedWebhook(eventID: r.header("I-Twilio-Idempotency-Token"), eventIDSigned: false)
    }

    /// SendGrid's signed event webhook: ECDSA P-256 with SHA-256 over timestamp + body; the endpoint's
    /// "secret" is the verification key SendGrid shows (base64 DER, or PEM).
    static func sendgrid(_ r: InboundWebhook, secrets: [String], options: SchemeOptions, now: Date) throws(WebhookRejection) -> VerifiedWebhook {
        guard let header = r.header("X-Twilio-Email-Event-Webhook-Signature"), let stamp = r.header("X-Twilio-Email-Event-Webhook-Timestamp") else {
            throw WebhookRejection(.missingSignature, "X-Twilio-Email-Event-Webhook-Signature and -Timestamp are required")
        }
        guard let der = Data(base64Encoded: header), let signature = try? P256.Signing.ECDSASignature(derRepresentation: der) else {
            throw WebhookRejection(.malformed, "the signature is base64 DER")
        }
        let timestamp = try checkTimestamp(stamp, now: now, tolerance: options.tolerance)
        let content = Array(stamp.utf8) + r.body
        for secret in secrets {
            let key = secret.contains("-----BEGIN")
                ? try? P256.Signing.PublicKey(pemRepresentation: secret)
                : Data(base64Encoded: secret).flatMap { try? P256.Signing.PublicKey(derRepresentation: $0) }
            if let key, key.isValidSignature(signature, for: SHA256.hash(data: content)) {
                return VerifiedWebhook(eventID: jsonString(r.body, "/0/sg_event_id"), timestamp: timestamp)
            }
        }
        throw WebhookRejection(.badSignature, "the signature does not verify with the endpoint's key")
    }

    /// HubSpot v3: base64 HMAC-SHA256 of method + full URL + body + timestamp (milliseconds).
    static func hubspot(_ r: InboundWebhook, secrets: [String], options: SchemeOptions, now: Date) throws(WebhookRejection) -> VerifiedWebhook {
        guard let header = r.header("X-HubSpot-Signature-v3"), let stamp = r.header("X-HubSpot-Request-Timestamp") else {
            throw WebhookRejection(.missingSignature, "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required")
        }
        guard let signature = Data(base64Encoded: header).map(Array.init), let millis = Double(stamp) else {
            throw WebhookRejection(.malformed, "X-HubSpot-Signature-v3 is base64 and the timestamp milliseconds")
        }
        let timestamp = Date(timeIntervalSince1970: millis / 1000)
        guard abs(now.timeIntervalSince(timestamp)) <= options.tolerance else {
            throw WebhookRejection(.staleTimestamp, "the timestamp is outside the \(Int(options.tolerance)) s tolerance")
        }
        let content = Array((r.method.uppercased() + r.url).utf8) + r.body + Array(stamp.utf8)
        try match(secrets, [signature]) { Array(HMAC<SHA256>.authenticationCode(for: content, using: SymmetricKey(data: Array($0.utf8)))) }
        return VerifiedWebhook(eventID: jsonString(r.body, "/0/eventId").map { $0 } ?? jsonNumber(r.body, "/0/eventId"), timestamp: timestamp)
    }

    /// The seed's generic scheme: `signatureHeader` (default `X-Webhook-Signature`) holding
    /// `sha256=<hex>`, `sha1=<hex>` or bare hex (several comma-separated) of HMAC over the raw body.
    static func hmac(_ r: InboundWebhook, secrets: [String], options: SchemeOptions) throws(WebhookRejection) -> VerifiedWebhook {
        let name = options.signatureHeader ?? "X-Webhook-Signature"
        guard let header = r.header(name) else { throw WebhookRejection(.missingSignature, "\(name) is required") }
        let sha1 = options.signatureMethod == "hmac-sha1"
        let signatures = header.split(separator: ",").compactMap { item -> [UInt8]? in
            var text = item.trimmingCharacters(in: .whitespaces)
            for prefix in ["sha256=", "sha1="] where text.hasPrefix(prefix) { text.removeFirst(prefix.count) }
            return Hex.decode(text)
        }
        guard !signatures.isEmpty else { throw WebhookRejection(.malformed, "\(name) is hex, optionally sha256= or sha1= prefixed") }
        try match(secrets, signatures) { secret in
            let key = SymmetricKey(data: Array(secret.utf8))
            return sha1 ? Array(HMAC<Insecure.SHA1>.authenticationCode(for: r.body, using: key)) : Array(HMAC<SHA256>.authenticationCode(for: r.body, using: key))
        }
        return verifiedID(r, options, bodySigned: true)
    }

    /// A static secret the provider sends back: in a header (default `Authorization`, optionally as
    /// `Bearer <secret>`), or Microsoft Graph's `clientState` in every notification.
    static func sharedSecret(_ r: InboundWebhook, secrets: [String], options: SchemeOptions) throws(WebhookRejection) -> VerifiedWebhook {
        if options.secretField == "clientState" {
            guard case .array(let items)? = (try? JSONValue.parse(Data(r.body)))?.objectValue?["value"], !items.isEmpty else {
                throw WebhookRejection(.malformed, "a Microsoft Graph notification has a value array")
            }
            for item in items {
                let state = Array((item.objectValue?["clientState"]?.stringValue ?? "").utf8)
                guard secrets.contains(where: { ConstantTime.equals(Array($0.utf8), state) }) else {
                    throw WebhookRejection(.badSignature, "a notification's clientState does not match")
                }
            }
            return verifiedID(r, options, bodySigned: false)
        }
        let name = options.signatureHeader ?? "Authorization"
        guard var presented = r.header(name) else { throw WebhookRejection(.missingSignature, "\(name) is required") }
        if presented.hasPrefix("Bearer ") { presented.removeFirst(7) }
        guard secrets.contains(where: { ConstantTime.equals(Array($0.utf8), Array(presented.utf8)) }) else {
            throw WebhookRejection(.badSignature, "\(name) does not carry the endpoint's secret")
        }
        return verifiedID(r, options, bodySigned: false)
    }

    // MARK: Helpers

    /// Passes if any secret's expected signature equals any presented one (constant time per comparison).
    static func match(_ secrets: [String], _ signatures: [[UInt8]], expected: (String) -> [UInt8]) throws(WebhookRejection) {
        for secret in secrets {
            let mac = expected(secret)
            var matched = false
            for signature in signatures where ConstantTime.equals(signature, mac) { matched = true }
            if matched { return }
        }
        throw WebhookRejection(.badSignature, "the signature does not match")
    }

    static func checkTimestamp(_ text: String, now: Date, tolerance: TimeInterval) throws(WebhookRejection) -> Date {
        guard let seconds = Int64(text) else { throw WebhookRejection(.malformed, "the timestamp is not whole seconds") }
        let timestamp = Date(timeIntervalSince1970: TimeInterval(seconds))
        guard abs(now.timeIntervalSince(timestamp)) <= tolerance else {
            throw WebhookRejection(.staleTimestamp, "the timestamp is outside the \(Int(tolerance)) s tolerance")
        }
        return timestamp
    }

    /// The configured event id and whether it came from a header (never signed by these schemes).
    static func eventIDSource(_ r: InboundWebhook, _ options: SchemeOptions) -> (id: String, fromHeader: Bool)? {
        if let name = options.eventIDHeader, let value = r.header(name), !value.isEmpty { return (value, true) }
        if let pointer = options.eventIDPointer, let value = jsonString(r.body, pointer) ?? jsonNumber(r.body, pointer) { return (value, false) }
        return nil
    }

    /// `hmac` and `shared-secret`: the configured event id, signed only when it is read from a signed body.
    static func verifiedID(_ r: InboundWebhook, _ options: SchemeOptions, bodySigned: Bool) -> VerifiedWebhook {
        let source = eventIDSource(r, options)
        return VerifiedWebhook(eventID: source?.id, eventIDSigned: source.map { !$0.fromHeader && bodySigned } ?? true)
    }

    static func jsonValue(_ body: [UInt8], _ pointer: String) -> JSONValue? {
        guard var value = try? JSONValue.parse(Data(body)) else { return nil }
        for token in pointer.split(separator: "/", omittingEmptySubsequences: true) {
            let key = token.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch value {
            case .object(let members): guard let next = members[key] else { return nil }; value = next
            case .array(let items): guard let index = Int(key), items.indices.contains(index) else { return nil }; value = items[index]
            default: return nil
            }
        }
        return value
    }

    static func jsonString(_ body: [UInt8], _ pointer: String) -> String? { jsonValue(body, pointer)?.stringValue }

    static func jsonNumber(_ body: [UInt8], _ pointer: String) -> String? {
        if case .int(let n)? = jsonValue(body, pointer) { return String(n) }
        return nil
    }

    static func formParameters(_ body: [UInt8]) -> [(String, String)] {
        String(decoding: body, as: UTF8.self).split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1).map { part in
                String(part).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(part)
            }
            return (parts[0], parts.count > 1 ? parts[1] : "")
        }
    }
}
