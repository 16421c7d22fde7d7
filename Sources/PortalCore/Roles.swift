/// The role bound to an API token (DESIGN section 6).
package enum Role: String, Sendable, CaseIterable, Codable {
    case admin
    case `operator`
    case compliance
    case auditor

    /// What this role may do; the server checks it on every route.
    package var permissions: Set<Permission> {
        switch self {
        case .admin:
            return Set(Permission.allCases)
        case .operator:
            return [.manageIntegrations, .readIntegrations, .readLedger]
        case .compliance:
            return [.approveIntegrations, .readIntegrations, .manageReports, .readReports, .readLedger]
        case .auditor:
            return [.readIntegrations, .readReports, .readLedger]
        }
    }

    /// Whether this role may perform `permission`.
    package func allows(_ permission: Permission) -> Bool {
        permissions.contains(permission)
    }
}

/// An action guarded by the role table of DESIGN section 6.
package enum Permission: String, Sendable, CaseIterable, Codable {
    /// Issue, list and revoke API tokens.
    case manageTokens = "manage_tokens"
    /// Create, change and delete integrations, webhooks and syncs; run requests.
    case manageIntegrations = "manage_integrations"
    /// Approve or reject integrations (never one requested by the approver's own owner).
    case approveIntegrations = "approve_integrations"
    /// Read integrations, metrics, alerts and logs.
    case readIntegrations = "read_integrations"
    /// Create reports and handle data-subject requests.
    case manageReports = "manage_reports"
    /// Read reports.
    case readReports = "read_reports"
    /// Read the ledger and verify it.
    case readLedger = "read_ledger"
    /// Set the organization's governance policy (approvals, allow-lists, quotas).
    case managePolicy = "manage_policy"
}
