package import Foundation
package import PortalCore
package import Storage

extension AuthMethod {
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

/// Conflict strategies of the seed's `ConflictResolution`.
enum ConflictStrategy: String, CaseIterable {
    case sourceWins = "source_wins"
    case destinationWins = "destination_wins"
    case merge
    case manual
}

/// An integration as the gateway uses it: configuration plus credentials in the clear (from the vault).
package struct OutboundIntegration: Sendable {
    package var id: UUID
    package var organizationID: UUID
    package var name: String
    package var baseURL: String
    package var authMethod: AuthMethod
    /// Secret values: never returned, logged or recorded.
    package var credentials: [String: String]
    package var config: JSONValue {
        didSet { configuration = .stored(config) }
    }
    /// `config`, typed (read once, when the integration is opened).
    package private(set) var configuration: IntegrationConfiguration
    package var rateLimits: JSONValue
    package var status: IntegrationStatus
    /// The credentials before a rotation, while its overlap window lasts: tried once when the new ones
    /// are refused (401 or 403).
    package var previousCredentials: [String: String]?
    /// When the overlap window ends.
    package var previousUntil: Date?

    package init(
        id: UUID, organizationID: UUID, name: String, baseURL: String, authMethod: AuthMethod, credentials: [String: String],
        config: JSONValue, rateLimits: JSONValue, status: IntegrationStatus
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
