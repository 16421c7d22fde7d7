package import PortalCore
package import Storage

/// An integration as the API returns it: the seed's `Integration` with every secret masked.
package struct IntegrationView: Sendable, Encodable {
    package var id: String
    package var name: String
    package var type: IntegrationType
    package var baseUrl: String?
    package var authMethod: AuthMethod
    /// Every credential field, masked.
    package var credentials: [String: String]
    package var config: JSONValue
    /// The rate limits in force (DESIGN section 7 defaults when none were given).
    package var rateLimits: JSONValue
    /// The webhook configuration with its secret masked.
    package var webhookConfig: JSONValue?
    package var syncConfig: JSONValue?
    /// GDPR Art. 30 processing metadata (purposes and lawful bases, categories, recipient role, locations,
    /// transfer mechanism, retention, DPA, security measures).
    package var processing: JSONValue?
    package var status: IntegrationStatus
    package var errorMessage: String?
    package var lastSync: String?
    package var createdAt: String
    package var updatedAt: String
    package var deletedAt: String?
    package var metrics: IntegrationMetricsView
    /// Where the integration stands with approvals (issue 21).
    package var approval: ApprovalSummary
}

/// An integration's approval state: the digest of the material configuration last approved, whether a
/// request waits, and whether the approved configuration serves calls meanwhile.
package struct ApprovalSummary: Sendable, Encodable, Equatable {
    /// Null when never approved (new and waiting, rejected, or made before approvals existed).
    package var approvedDigest: String?
    /// The digest of the configuration as it is now.
    package var currentDigest: String
    package var pending: Bool
    /// While a change waits: whether calls go out with the approved configuration.
    package var servingApproved: Bool
}

/// The seed's `IntegrationMetrics`, from the integration's recorded requests. Rates are fractions between 0
/// and 1 and durations milliseconds (DESIGN section 7); a rate is null while there were no requests.
package struct IntegrationMetricsView: Sendable, Encodable, Equatable {
    package var totalRequests: Int
    package var successfulRequests: Int
    package var failedRequests: Int
    package var successRate: Double?
    package var errorRate: Double?
    package var averageResponseTime: Double
    package var lastError: LastError?

    /// When, where and why the last failed request failed.
    package struct LastError: Sendable, Encodable, Equatable {
        package var timestamp: String
        package var message: String?
        package var endpoint: String
    }

    // Rates are encoded as JSON null while there is nothing to divide by.
    enum CodingKeys: String, CodingKey {
        case totalRequests, successfulRequests, failedRequests, successRate, errorRate, averageResponseTime, lastError
    }

    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(totalRequests, forKey: .totalRequests)
        try c.encode(successfulRequests, forKey: .successfulRequests)
        try c.encode(failedRequests, forKey: .failedRequests)
        try c.encode(successRate, forKey: .successRate)
        try c.encode(errorRate, forKey: .errorRate)
        try c.encode(averageResponseTime, forKey: .averageResponseTime)
        try c.encodeIfPresent(lastError, forKey: .lastError)
    }
}

/// The answer of `GET /portal/integrations/{id}/status`: the seed's `IntegrationStatus`.
package struct IntegrationStatusView: Sendable, Encodable {
    package var id: String
    package var name: String
    package var status: IntegrationStatus
    /// Whether the integration is usable now: active and not deleted.
    package var usable: Bool
    package var errorMessage: String?
    package var lastSync: String?
    package var deletedAt: String?
    package var metrics: IntegrationMetricsView
    package var checkedAt: String
}


