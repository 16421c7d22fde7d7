package import Foundation

/// The context each kind of secret is sealed under (bound into the AEAD as associated data): a secret opened
/// under another context fails, so a sealed value cannot be moved from one row or kind to another. One list,
/// so that the module that seals and the module that opens name it the same way.
package enum VaultContext {
    /// An integration's credentials.
    package static func integration(_ id: UUID) -> String { "integration:\(id.uuidString.lowercased())" }
    /// A webhook endpoint's signing secret.
    package static func webhookEndpoint(_ id: UUID) -> String { "webhook-endpoint:\(id.uuidString.lowercased())" }
    /// A received webhook event's body.
    package static func webhookEvent(_ id: UUID) -> String { "webhook-event:\(id.uuidString.lowercased())" }
    /// An OAuth authorization's PKCE verifier, while the user is at the provider.
    package static func oauthState(_ integrationID: UUID) -> String { "oauth-state:\(integrationID.uuidString.lowercased())" }
    /// A data subject's commitment key (its lookup value).
    package static func subjectKey(_ lookup: String) -> String { "subject-key:\(lookup)" }
    /// A ledger signing key's private half.
    package static func signingKey(_ id: UUID) -> String { "signing-key:\(id.uuidString.lowercased())" }
}
