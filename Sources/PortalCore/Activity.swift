package import Foundation

/// What a capability saw happen, reported to monitoring as it happens. Outcome classes and error
/// categories are DESIGN section 7's; every value here is bounded (no raw paths, bodies or subject data).
package enum Activity: Sendable {
    /// One call through the gateway (refused and throttled ones included).
    case call(Call)
    /// One inbound webhook delivery or queue transition.
    case webhook(organizationID: UUID, integrationID: UUID, status: WebhookStatus)
    /// Records of one sync page or webhook-driven upsert, by operation.
    case syncRecords(organizationID: UUID, integrationID: UUID, counts: [SyncOperation: Int])
    /// An OAuth or JWT token request of an integration.
    case tokenRefresh(organizationID: UUID, integrationID: UUID, success: Bool)

    package struct Call: Sendable {
        package var organizationID: UUID
        package var integrationID: UUID
        /// The endpoint template (`/users/{id}`), never the raw path.
        package var endpoint: String
        package var outcome: String
        /// Nil on success.
        package var category: String?
        package var durationMicros: Int64
        package var at: Date
        /// A secret-free message for `lastError`.
        package var error: String?
        /// The provider's remaining quota and its limit, from its rate-limit headers, when it sent them.
        package var quotaRemaining: Int?
        package var quotaLimit: Int?

        package init(
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

    package enum WebhookStatus: String, Sendable, CaseIterable {
        case received, rejected, duplicate, processed, failed
        case deadLettered = "dead_lettered"
    }

    package enum SyncOperation: String, Sendable, CaseIterable {
        case fetched, created, updated, unchanged, deleted, conflicts, rejected
    }
}

/// Receives activity; must be cheap and must not block (it is called on the hot paths).
package protocol ActivityObserver: Sendable {
    func observe(_ activity: Activity)
}

/// Observes nothing: monitoring off.
package struct NoActivityObserver: ActivityObserver {
    package init() {}
    package func observe(_ activity: Activity) {}
}
