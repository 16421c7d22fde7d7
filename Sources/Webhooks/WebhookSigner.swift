package import Foundation
import Crypto
import Integrations
import PortalCore

/// Signs a delivery the way each provider does, for the endpoint test route (`POST .../webhooks/{id}/test`):
/// a sample event signed with the endpoint's current secret goes through the same verification and ingest
/// as a real one. Schemes verified with a public key (Standard Webhooks `whpk_`, SendGrid) cannot be signed
/// by the portal, which holds only that key.
package enum WebhookSigner {
    /// The headers that make `body` (sent to `url` with `method`) verify under `scheme` with `secret`; nil
    /// when the portal cannot sign for the scheme.
    package static func headers(
        scheme: WebhookScheme, secret: String, options: SchemeOptions, method: String, url: String, body: [UInt8], eventID: String, now: Date
    ) -> [(name: String, value: String)]? {
        let stamp = String(Int64(now.timeIntervalSince1970))
        func hmac256(_ key: [UInt8], _ content: [UInt8]) -> [UInt8] { Array(HMAC<SHA256>.authenticationCode(for: content, using: SymmetricKey(data: key))) }
        switch scheme {
        case .standardWebhooks:
            return StandardWebhooks.headers(secret: secret, id: eventID, body: body, now: now)
        case .stripe:
            return [("Stripe-Signature", "t=\(stamp),v1=" + Hex.encode(hmac256(Array(secret.utf8), Array("\(stamp).".utf8) + body)))]
        case .github:
            return [("X-Hub-Signature-256", "sha256=" + Hex.encode(hmac256(Array(secret.utf8), body))), ("X-GitHub-Delivery", eventID), ("X-GitHub-Event", "ping")]
        case .slack:
            return [("X-Slack-Request-Timestamp", stamp), ("X-Slack-Signature", "v0=" + Hex.encode(hmac256(Array(secret.utf8), Array("v0:\(stamp):".utf8) + body)))]
        case .shopify:
            return [("X-Shopify-Hmac-SHA256", Data(hmac256(Array(secret.utf8), body)).base64EncodedString()), ("X-Shopify-Webhook-Id", eventID)]
        case .twilio:
            // A JSON body is covered by bodySHA256 in the URL, which the caller must have added.
            let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Array(url.utf8), using: SymmetricKey(data: Array(secret.utf8)))
            return [("X-Twilio-Signature", Data(mac).base64EncodedString()), ("I-Twilio-Idempotency-Token", eventID)]
        case .sendgrid:
            return nil
        case .hubspot:
            let millis = String(Int64(now.timeIntervalSince1970 * 1000))
            let mac = hmac256(Array(secret.utf8), Array((method.uppercased() + url).utf8) + body + Array(millis.utf8))
            return [("X-HubSpot-Signature-v3", Data(mac).base64EncodedString()), ("X-HubSpot-Request-Timestamp", millis)]
        case .hmac:
            let key = SymmetricKey(data: Array(secret.utf8))
            let value = options.signatureMethod == "hmac-sha1"
                ? "sha1=" + Hex.encode(HMAC<Insecure.SHA1>.authenticationCode(for: body, using: key))
                : "sha256=" + Hex.encode(HMAC<SHA256>.authenticationCode(for: body, using: key))
            var headers = [(options.signatureHeader ?? "X-Webhook-Signature", value)]
            if let name = options.eventIDHeader { headers.append((name, eventID)) }
            return headers
        case .sharedSecret:
            if options.secretField == "clientState" { return [] }
            var headers = [(options.signatureHeader ?? "Authorization", secret)]
            if let name = options.eventIDHeader { headers.append((name, eventID)) }
            return headers
        }
    }
}
