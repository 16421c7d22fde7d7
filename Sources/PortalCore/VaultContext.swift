public import Foundation

/// The context each kind of secret is sealed under (bound into the AEAD as associated data): a secret opened
/// under another context fails, so a sealed value cannot be moved from one row or kind to another. One list,
/// so that the module that seals and the module that opens name it the same way.
public enum VaultContext {
    /// An integration's credentials.
    public static func integration(_ id: UUID) -> String { "integration:\(id.uuidString.lowercased())" }
    /// A webhook endpoint's signing secret.
    public static func webhookEndpoint(_ id: UUID) -> String { "webhook-endpoint:\(id.uuidString.lowercased())" }
    /// A received webhook event's body.
    public static func webhookEvent(_ id: UUID) -> String { "webhook-event:\(id.uuidString.lowercased())" }
    /// An OAuth authorization's PKCE verifier, while the user is at the provider.
    public static func oauthState(_ integrationID: UUID) -> String { "oauth-state:\(integrationID.uuidString.lowercased())" }
    /// A data subject's commitment key (its lookup value).
    public static func subjectKey(_ lookup: String) -> String { "subject-key:\(lookup)" }
    /// A ledger signing key's private half.
    public static func signingKey(_ id: UUID) -> String { "signing-key:\(id.uuidString.lowercased())" }
}
