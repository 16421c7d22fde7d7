public import PortalCore
public import Storage

/// An integration as the API returns it: the seed's `Integration` with every secret masked.
public struct IntegrationView: Sendable, Encodable {
    public var id: String
    public var name: String
    public var type: IntegrationType
    public var baseUrl: String?
    public var authMethod: AuthMethod
    /// Every credential field, masked.
    public var credentials: [String: String]
    public var config: JSONValue
    /// The rate limits in force (DESIGN section 7 defaults when none were given).
    public var rateLimits: JSONValue
    /// The webhook configuration with its secret masked.
    public var webhookConfig: JSONValue?
    public var syncConfig: JSONValue?
    /// GDPR Art. 30 processing metadata (purposes and lawful bases, categories, recipient role, locations,
    /// transfer mechanism, retention, DPA, security measures).
    public var processing: JSONValue?
    public var status: IntegrationStatus
    public var errorMessage: String?
    public var lastSync: String?
    public var createdAt: String
    public var updatedAt: String
    public var deletedAt: String?
    public var metrics: IntegrationMetricsView
}

/// The seed's `IntegrationMetrics`, from the integration's recorded requests. Rates are fractions between 0
/// and 1 and durations milliseconds (DESIGN section 7); a rate is null while there were no requests.
public struct IntegrationMetricsView: Sendable, Encodable, Equatable {
    public var totalRequests: Int
    public var successfulRequests: Int
    public var failedRequests: Int
    public var successRate: Double?
    public var errorRate: Double?
    public var averageResponseTime: Double
    public var lastError: LastError?

    /// When, where and why the last failed request failed.
    public struct LastError: Sendable, Encodable, Equatable {
        public var timestamp: String
        public var message: String?
        public var endpoint: String
    }

    // Rates are encoded as JSON null while there is nothing to divide by.
    enum CodingKeys: String, CodingKey {
        case totalRequests, successfulRequests, failedRequests, successRate, errorRate, averageResponseTime, lastError
    }

    public func encode(to encoder: any Encoder) throws {
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
public struct IntegrationStatusView: Sendable, Encodable {
    public var id: String
    public var name: String
    public var status: IntegrationStatus
    /// Whether the integration is usable now: active and not deleted.
    public var usable: Bool
    public var errorMessage: String?
    public var lastSync: String?
    public var deletedAt: String?
    public var metrics: IntegrationMetricsView
    public var checkedAt: String
}


