import Crypto
package import Foundation

/// Standard Webhooks symmetric signing (standardwebhooks.com): `webhook-id`, `webhook-timestamp`, and
/// `webhook-signature: v1,<base64 HMAC-SHA256>` over `id.timestamp.body`, keyed with the base64 bytes after
/// `whsec_`. The endpoint test route signs sample deliveries with it (Webhooks) and alert receivers are
/// sent signed deliveries (Monitoring): one signer for both.
package enum StandardWebhooks {
    /// The three headers; nil for a public-key secret (`whpk_`, verify-only) or a key that is not base64.
    package static func headers(secret: String, id: String, body: [UInt8], now: Date) -> [(name: String, value: String)]? {
        guard !secret.hasPrefix("whpk_"), let key = Data(base64Encoded: secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret) else { return nil }
        let stamp = String(Int64(now.timeIntervalSince1970))
        let mac = HMAC<SHA256>.authenticationCode(for: Array("\(id).\(stamp).".utf8) + body, using: SymmetricKey(data: key))
        return [("webhook-id", id), ("webhook-timestamp", stamp), ("webhook-signature", "v1," + Data(mac).base64EncodedString())]
    }
}
