public import Foundation

/// What a capability saw happen, reported to monitoring as it happens. Outcome classes and error
/// categories are DESIGN section 7's; every value here is bounded (no raw paths, bodies or subject data).
public enum Activity: Sendable {
    /// One call through the gateway (refused and throttled ones included).
    case call(Call)
    /// One inbound webhook delivery or queue transition.
    case webhook(organizationID: UUID, integrationID: UUID, status: WebhookStatus)
    /// Records of one sync page or webhook-driven upsert, by operation.
    case syncRecords(organizationID: UUID, integrationID: UUID, counts: [SyncOperation: Int])
    /// An OAuth or JWT token request of an integration.
    case tokenRefresh(organizationID: UUID, integrationID: UUID, success: Bool)

    public struct Call: Sendable {
        public var organizationID: UUID
        public var integrationID: UUID
        /// The endpoint template (`/users/{id}`), never the raw path.
        public var endpoint: String
        public var outcome: String
        /// Nil on success.
        public var category: String?
        public var durationMicros: Int64
        public var at: Date
        /// A secret-free message for `lastError`.
        public var error: String?
        /// The provider's remaining quota and its limit, from its rate-limit headers, when it sent them.
        public var quotaRemaining: Int?
        public var quotaLimit: Int?

        public init(
            organizationID: UUID, integrationID: UUID, endpoint: String, outcome: String, category: String?, durationMicros: Int64, at: Date,
            error: String? = nil, quotaRemaining: Int? = nil, quotaLimit: Int? = nil
        ) {
            self.organizationID = organizationID
            self.integrationID = integrationID
            self.endpoint = endpoint
            self.outcome = outcome
            self.category = category
            self.durationMicros = durationMicros
            self.at = at
            self.error = error
            self.quotaRemaining = quotaRemaining
            self.quotaLimit = quotaLimit
        }
    }

    public enum WebhookStatus: String, Sendable, CaseIterable {
        case received, rejected, duplicate, processed, failed
        case deadLettered = "dead_lettered"
    }

    public enum SyncOperation: String, Sendable, CaseIterable {
        case fetched, created, updated, unchanged, deleted, conflicts, rejected
    }
}

/// Receives activity; must be cheap and must not block (it is called on the hot paths).
public protocol ActivityObserver: Sendable {
    func observe(_ activity: Activity)
}

/// Observes nothing: monitoring off.
public struct NoActivityObserver: ActivityObserver {
    public init() {}
    public func observe(_ activity: Activity) {}
}
