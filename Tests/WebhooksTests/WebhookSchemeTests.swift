import Crypto
import Foundation
import Ledger
import PortalCore
import Testing
import Webhooks

/// The signature schemes against the providers' published vectors (`Vectors/webhooks.json`, a copy of
/// `../shared/vectors/webhooks.json`) and self-made ones for the schemes without a published vector
/// (`Vectors/self-made.json`, computed with Python's hmac and openssl, labelled as such).
@Suite("Webhook signature schemes")
struct WebhookSchemeTests {
    struct Vector {
        var scheme: WebhookScheme
        var secret: String
        var timestamp: Int64
        var body: [UInt8]
        var url: String
        var method: String
        var headers: [(name: String, value: String)]
        var options: SchemeOptions
        var label: String
    }

    static func load(_ file: String) throws -> [JSONValue] {
        let url = try #require(Bundle.module.url(forResource: file, withExtension: "json", subdirectory: "Vectors"))
        return try JSONValue.parse(Data(contentsOf: url)).objectValue?["vectors"]?.arrayValue ?? []
    }

    /// The published vectors: each gives the expected signature header for (secret or key, id, timestamp, body).
    static func published() throws -> [Vector] {
        try load("webhooks").map { v in
            let m = v.objectValue ?? [:]
            let scheme = try #require(WebhookScheme(rawValue: m["scheme"]?.stringValue ?? ""))
            let timestamp: Int64 = if case .int(let t)? = m["timestamp"] { t } else { 1_700_000_000 }
            var headers: [(String, String)] = [(m["expected_header"]?.stringValue ?? "", m["expected"]?.stringValue ?? "")]
            if scheme == .standardWebhooks {
                headers += [("webhook-id", m["id"]?.stringValue ?? ""), ("webhook-timestamp", String(timestamp))]
            }
            let secret = m["secret"]?.stringValue ?? ("whpk_" + (m["public_key_base64"]?.stringValue ?? ""))
            return Vector(
                scheme: scheme, secret: secret, timestamp: timestamp, body: Array((m["body"]?.stringValue ?? "").utf8), url: "https://portal.example.test/webhooks/acme/x",
                method: "POST", headers: headers, options: SchemeOptions(), label: "\(scheme.rawValue) \(m["variant"]?.stringValue ?? "") (\(m["source"]?.stringValue ?? ""))"
            )
        }
    }

    static func selfMade() throws -> [Vector] {
        try load("self-made").map { v in
            let m = v.objectValue ?? [:]
            let scheme = try #require(WebhookScheme(rawValue: m["scheme"]?.stringValue ?? ""))
            let options = m["options"]?.objectValue ?? [:]
            let timestamp: Int64 = if case .int(let t)? = m["timestamp"] { t } else { 0 }
            return Vector(
                scheme: scheme, secret: m["secret"]?.stringValue ?? "", timestamp: timestamp, body: Array((m["body"]?.stringValue ?? "").utf8),
                url: m["url"]?.stringValue ?? "https://portal.example.test/webhooks/acme/x", method: m["method"]?.stringValue ?? "POST",
                headers: (m["headers"]?.objectValue ?? [:]).map { ($0.key, $0.value.stringValue ?? "") },
                options: SchemeOptions(signatureHeader: options["signatureHeader"]?.stringValue, signatureMethod: options["signatureMethod"]?.stringValue),
                label: "\(scheme.rawValue) (self-made)"
            )
        }
    }

    func verify(_ v: Vector, body: [UInt8]? = nil, secret: String? = nil, headers: [(name: String, value: String)]? = nil, at offset: TimeInterval = 0) throws(WebhookRejection) -> VerifiedWebhook {
        try WebhookVerifier.verify(
            InboundWebhook(method: v.method, url: v.url, headers: headers ?? v.headers, body: body ?? v.body), scheme: v.scheme, secrets: [secret ?? v.secret],
            options: v.options, now: Date(timeIntervalSince1970: TimeInterval(v.timestamp) + offset)
        )
    }

    static func flip(_ bytes: [UInt8], at index: Int) -> [UInt8] {
        var changed = bytes
        changed[index] ^= 0x01
        return changed
    }

    static func flip(_ text: String, at index: Int) -> String {
        String(decoding: flip(Array(text.utf8), at: index), as: UTF8.self)
    }

    @Test("every published vector verifies, and fails after a one-byte change to the body, id, timestamp or secret")
    func publishedVectors() throws {
        let vectors = try Self.published()
        #expect(vectors.count == 4)
        for v in vectors {
            #expect(throws: Never.self, "\(v.label)") { _ = try verify(v) }
            for i in [0, v.body.count / 2, v.body.count - 1] {
                #expect(throws: WebhookRejection.self, "\(v.label): body byte \(i)") { _ = try verify(v, body: Self.flip(v.body, at: i)) }
            }
            if !v.secret.hasPrefix("whpk_") {
                #expect(throws: WebhookRejection.self, "\(v.label): secret") { _ = try verify(v, secret: Self.flip(v.secret, at: v.secret.count - 2)) }
            } else {
                // An Ed25519 key changed by one byte (another valid key) does not verify.
                let raw = try #require(Data(base64Encoded: String(v.secret.dropFirst(5))))
                #expect(throws: WebhookRejection.self, "\(v.label): key") { _ = try verify(v, secret: "whpk_" + Data(Self.flip(Array(raw), at: 3)).base64EncodedString()) }
            }
            for (index, header) in v.headers.enumerated() where header.name == "webhook-id" || header.name == "webhook-timestamp" {
                var headers = v.headers
                headers[index].value = Self.flip(header.value, at: header.value.count - 1)
                #expect(throws: WebhookRejection.self, "\(v.label): \(header.name)") { _ = try verify(v, headers: headers) }
            }
        }
    }

    @Test("self-made vectors for Stripe, Slack, Shopify, Twilio, SendGrid, HubSpot, generic HMAC and GitHub's legacy SHA-1")
    func selfMadeVectors() throws {
        let vectors = try Self.selfMade()
        #expect(Set(vectors.map(\.scheme)) == [.stripe, .slack, .shopify, .twilio, .hubspot, .hmac, .github, .sendgrid])
        for v in vectors {
            #expect(throws: Never.self, "\(v.label)") { _ = try verify(v) }
            for i in [0, v.body.count - 1] {
                #expect(throws: WebhookRejection.self, "\(v.label): body byte \(i)") { _ = try verify(v, body: Self.flip(v.body, at: i)) }
            }
            if v.scheme != .sendgrid {
                #expect(throws: WebhookRejection.self, "\(v.label): secret") { _ = try verify(v, secret: Self.flip(v.secret, at: 0)) }
            }
        }
    }

    @Test("timestamps outside the tolerance are stale; event ids and types come from where each provider puts them")
    func timestampsAndIDs() throws {
        let published = try Self.published()
        let standard = try #require(published.first { $0.scheme == .standardWebhooks && !$0.secret.hasPrefix("whpk_") })
        #expect(try verify(standard, at: 299).eventID == "msg_p5jXN8AQM9LWM0D4loKWxJek")
        let stale = #expect(throws: WebhookRejection.self) { _ = try verify(standard, at: 301) }
        #expect(stale?.kind == .staleTimestamp && stale?.status == 401)
        #expect(throws: WebhookRejection.self) { _ = try verify(standard, at: -301) }

        // Svix's header names carry the same scheme.
        let svix = standard.headers.map { (name: $0.name.replacingOccurrences(of: "webhook-", with: "svix-"), value: $0.value) }
        #expect(try verify(standard, headers: svix).eventID == "msg_p5jXN8AQM9LWM0D4loKWxJek")

        let selfMade = try Self.selfMade()
        let stripe = try #require(selfMade.first { $0.scheme == .stripe })
        let verified = try verify(stripe)
        #expect(verified.eventID == "evt_1" && verified.eventType == "customer.created")
        #expect(throws: WebhookRejection.self) { _ = try verify(stripe, at: 400) }
        let shopify = try #require(selfMade.first { $0.scheme == .shopify })
        #expect(try verify(shopify).eventID == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")

        // Several signatures in one header: any current one passes (rotation).
        let hmac = try #require(selfMade.first { $0.scheme == .hmac && $0.options.signatureMethod == nil })
        let value = try #require(hmac.headers.first?.value)
        #expect(throws: Never.self) { _ = try verify(hmac, headers: [("X-Salesforce-Signature", "sha256=00ff, " + value)]) }
        // Two secrets during an overlap: either verifies.
        #expect(throws: Never.self) {
            _ = try WebhookVerifier.verify(
                InboundWebhook(method: "POST", url: hmac.url, headers: hmac.headers, body: hmac.body), scheme: .hmac, secrets: ["new-secret-0000", hmac.secret],
                options: hmac.options, now: Date()
            )
        }
        let missing = #expect(throws: WebhookRejection.self) { _ = try verify(hmac, headers: []) }
        #expect(missing?.kind == .missingSignature)
    }

    @Test("shared secrets: a header compared in constant time, or Microsoft Graph's clientState in every notification")
    func sharedSecrets() throws {
        let now = Date()
        let okta = InboundWebhook(method: "POST", url: "https://p/x", headers: [("Authorization", "okta-shared-secret-1")], body: Array(#"{"eventType":"user.lifecycle.create"}"#.utf8))
        #expect(throws: Never.self) { _ = try WebhookVerifier.verify(okta, scheme: .sharedSecret, secrets: ["okta-shared-secret-1"], now: now) }
        #expect(throws: WebhookRejection.self) { _ = try WebhookVerifier.verify(okta, scheme: .sharedSecret, secrets: ["okta-shared-secret-2"], now: now) }
        let body = Array(#"{"value":[{"clientState":"graph-state-1","changeType":"created"},{"clientState":"graph-state-1","changeType":"updated"}]}"#.utf8)
        let graph = InboundWebhook(method: "POST", url: "https://p/x", headers: [], body: body)
        let options = SchemeOptions(secretField: "clientState")
        #expect(throws: Never.self) { _ = try WebhookVerifier.verify(graph, scheme: .sharedSecret, secrets: ["graph-state-1"], options: options, now: now) }
        let forged = InboundWebhook(method: "POST", url: "https://p/x", headers: [], body: Array(String(decoding: body, as: UTF8.self).replacingOccurrences(of: "graph-state-1\",\"changeType\":\"updated", with: "other\",\"changeType\":\"updated").utf8))
        #expect(throws: WebhookRejection.self) { _ = try WebhookVerifier.verify(forged, scheme: .sharedSecret, secrets: ["graph-state-1"], options: options, now: now) }
    }

    @Test("the portal's own signer produces what the verifier accepts, for every scheme it can sign")
    func signerRoundTrip() throws {
        let now = Date()
        let body = Array(#"{"id":"evt_9","type":"user.created"}"#.utf8)
        for scheme in WebhookScheme.allCases where scheme != .sendgrid {
            let secret = scheme == .standardWebhooks ? "whsec_" + Data((0..<24).map { UInt8($0) }).base64EncodedString() : "secret-\(scheme.rawValue)-0123"
            let options = scheme == .hmac ? SchemeOptions(signatureHeader: "X-Sig", signatureMethod: "hmac-sha1") : SchemeOptions()
            var url = "https://p.test/webhooks/a/b"
            if scheme == .twilio { url += "?bodySHA256=" + Hex.encode(SHA256.hash(data: body)) }
            let headers = try #require(WebhookSigner.headers(scheme: scheme, secret: secret, options: options, method: "POST", url: url, body: body, eventID: "evt_9", now: now))
            let request = InboundWebhook(method: "POST", url: url, headers: headers, body: body)
            #expect(throws: Never.self, "\(scheme)") { _ = try WebhookVerifier.verify(request, scheme: scheme, secrets: [secret], options: options, now: now) }
            if scheme != .sharedSecret {
                let tampered = InboundWebhook(method: "POST", url: request.url, headers: headers, body: Self.flip(body, at: 5))
                #expect(throws: WebhookRejection.self, "\(scheme) tampered") { _ = try WebhookVerifier.verify(tampered, scheme: scheme, secrets: [secret], options: options, now: now) }
            }
        }
    }
}
