public import Foundation
public import PortalCore

/// The seed's `IntegrationType`.
public enum IntegrationType: String, Sendable, CaseIterable, Codable {
    case identityProvider = "identity_provider"
    case cloudStorage = "cloud_storage"
    case analytics
    case communication
    case security
    case enterprise
}

/// The seed's `AuthMethod`, plus AWS Signature Version 4.
public enum AuthMethod: String, Sendable, CaseIterable, Codable {
    case apiKey = "api_key"
    case oauth2
    case jwt
    case basicAuth = "basic_auth"
    case custom
    case awsSigV4 = "aws_sigv4"

    /// Credential fields this method cannot work without; `anyOf` lists alternatives of which one is needed.
    var requiredCredentials: (all: [String], anyOf: [String]) {
        switch self {
        case .apiKey: (["apiKey"], [])
        case .basicAuth: (["username", "password"], [])
        case .oauth2: (["clientId"], [])
        case .jwt: ([], ["privateKey", "secret", "token"])
        case .awsSigV4: (["accessKeyId", "secretAccessKey"], [])
        case .custom: ([], [])
        }
    }
}

/// The seed's integration status lifecycle.
public enum IntegrationStatus: String, Sendable, CaseIterable, Codable {
    /// Usable.
    case active
    /// Disabled or deleted.
    case inactive
    /// Authentication exhausted or failures persist.
    case error
    /// Created but not usable yet (awaiting approval).
    case pending
}

/// The statuses a client may set directly with PATCH (the others are set by the service).
enum SettableStatus: String, CaseIterable {
    case active
    case inactive
}

/// The webhook `signatureMethod` values of the seed's `WebhookConfig`.
enum SignatureMethod: String, CaseIterable {
    case hmacSHA256 = "hmac-sha256"
    case hmacSHA1 = "hmac-sha1"
}

/// Sync types of the seed.
enum SyncType: String, CaseIterable {
    case full
    case incremental
}

/// Conflict strategies of the seed's `ConflictResolution`.
enum ConflictStrategy: String, CaseIterable {
    case sourceWins = "source_wins"
    case destinationWins = "destination_wins"
    case merge
    case manual
}

/// An integration as the gateway uses it: configuration plus credentials in the clear (from the vault).
public struct OutboundIntegration: Sendable {
    public var id: UUID
    public var organizationID: UUID
    public var name: String
    public var baseURL: String
    public var authMethod: AuthMethod
    /// Secret values: never returned, logged or recorded.
    public var credentials: [String: String]
    public var config: JSONValue {
        didSet { configuration = .stored(config) }
    }
    /// `config`, typed (read once, when the integration is opened).
    public private(set) var configuration: IntegrationConfiguration
    public var rateLimits: JSONValue
    public var status: String
    /// The credentials before a rotation, while its overlap window lasts: tried once when the new ones
    /// are refused (401 or 403).
    public var previousCredentials: [String: String]?
    /// When the overlap window ends.
    public var previousUntil: Date?

    public init(
        id: UUID, organizationID: UUID, name: String, baseURL: String, authMethod: AuthMethod, credentials: [String: String],
        config: JSONValue, rateLimits: JSONValue, status: String
    ) {
        self.id = id
        self.organizationID = organizationID
        self.name = name
        self.baseURL = baseURL
        self.authMethod = authMethod
        self.credentials = credentials
        self.config = config
        configuration = .stored(config)
        self.rateLimits = rateLimits
        self.status = status
    }
}
