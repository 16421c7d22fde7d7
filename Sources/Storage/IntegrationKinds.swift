/// The values an `integrations` row's `type`, `auth_method` and `status` columns may hold, as the records
/// carry them: a row holding anything else is refused when read (`PortalError.storage`), never passed on
/// as text for a consumer to misread.

/// The seed's `IntegrationType`.
package enum IntegrationType: String, Sendable, CaseIterable, Codable {
    case identityProvider = "identity_provider"
    case cloudStorage = "cloud_storage"
    case analytics
    case communication
    case security
    case enterprise
}

/// The seed's `AuthMethod`, plus AWS Signature Version 4.
package enum AuthMethod: String, Sendable, CaseIterable, Codable {
    case apiKey = "api_key"
    case oauth2
    case jwt
    case basicAuth = "basic_auth"
    case custom
    case awsSigV4 = "aws_sigv4"
}

/// The seed's integration status lifecycle.
package enum IntegrationStatus: String, Sendable, CaseIterable, Codable {
    /// Usable.
    case active
    /// Disabled or deleted.
    case inactive
    /// Authentication exhausted or failures persist.
    case error
    /// Created but not usable yet (awaiting approval).
    case pending
}
