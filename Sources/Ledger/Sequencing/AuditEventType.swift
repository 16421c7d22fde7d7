/// Every type of ledger entry this version writes: one catalogue, so that a writer cannot misspell a type
/// and the documentation cannot drift (`docs/design.md` section 4.1 lists exactly these, which a test
/// checks, as it checks that the report mappings under `reports/mappings/` name only these). A type is
/// never removed or renamed once written: auditors' queries and old ledgers rely on it. Entries read back
/// keep their type as text (``LedgerEntry/type``), so a ledger written by a later version still verifies.
package enum AuditEventType: String, Sendable, CaseIterable, Codable {
    case integrationApproved = "integration.approved"
    case integrationCreated = "integration.created"
    case integrationDeleted = "integration.deleted"
    case integrationRejected = "integration.rejected"
    case integrationRequested = "integration.requested"
    case integrationTested = "integration.tested"
    case integrationUpdated = "integration.updated"

    case credentialRotated = "credential.rotated"

    case keyRotated = "key.rotated"

    case apitokenCreated = "apitoken.created"
    case apitokenRevoked = "apitoken.revoked"
    case apitokenUsedExpired = "apitoken.used_expired"

    case sessionEnded = "session.ended"
    case sessionStarted = "session.started"

    case tokenIssued = "token.issued"
    case tokenRefreshFailed = "token.refresh_failed"
    case tokenRefreshed = "token.refreshed"
    case tokenRevoked = "token.revoked"

    case requestCompleted = "request.completed"
    case requestFailed = "request.failed"

    case webhookDeleted = "webhook.deleted"
    case webhookFailed = "webhook.failed"
    case webhookProcessed = "webhook.processed"
    case webhookReceived = "webhook.received"
    case webhookRegistered = "webhook.registered"
    case webhookRejected = "webhook.rejected"
    case webhookRetried = "webhook.retried"
    case webhookUpdated = "webhook.updated"

    case syncCompleted = "sync.completed"
    case syncConflict = "sync.conflict"
    case syncFailed = "sync.failed"
    case syncSchedule = "sync.schedule"
    case syncStarted = "sync.started"

    case recordUpdated = "record.updated"

    case accessDenied = "access.denied"

    case authFailures = "auth.failures"

    case alertFiring = "alert.firing"
    case alertReceiverAdded = "alert.receiver_added"
    case alertReceiverRemoved = "alert.receiver_removed"
    case alertResolved = "alert.resolved"
    case alertSilenced = "alert.silenced"
    case alertUnsilenced = "alert.unsilenced"

    case reportExported = "report.exported"

    case subjectErased = "subject.erased"
    case subjectExported = "subject.exported"
    case subjectRequestReceived = "subject.request_received"

    case retentionApplied = "retention.applied"
    case retentionUpdated = "retention.updated"

    case ledgerVerified = "ledger.verified"

    case policyUpdated = "policy.updated"

    case reviewRecorded = "review.recorded"

    case bulkCompleted = "bulk.completed"

    /// Names reserved for writers not built yet: report mappings may already name them, so that a
    /// criterion's population includes them from the first one written; nothing writes them.
    package static let reserved: Set<String> = []

    /// Whether a report mapping may name `type`: a catalogue type or a reserved one.
    package static func isKnown(_ type: String) -> Bool { AuditEventType(rawValue: type) != nil || reserved.contains(type) }
}
