package import Foundation
package import PortalCore
package import Storage
import Ledger

/// Approvals of integrations with separation of duties (issue 21, DESIGN section 6): under the policy
/// `approvals: required`, a new integration, or a change to where or how one sends data, is `pending` until
/// a token with `approve_integrations` whose owner is not the requester's approves it. What was approved is
/// pinned by the digest of the material configuration (``materialDigest(_:_:)``); while a change waits,
/// the approved configuration keeps serving (``ServingConfiguration``) if the policy says so.
extension IntegrationRegistry {
    /// Configuration members that change neither where nor how data is sent: metric templates, the
    /// response cache, retries, the connection test and the service level objectives. Every other member is material, those added later too.
    static let operationalConfigKeys: Set<String> = ["endpoints", "cache", "retry", "testEndpoint", "testMethod", "slo"]

    /// SHA-256 (hex) of what an approval approves: the base URL, the auth method, the material configuration,
    /// the processing metadata and the names of the credential fields (never their values).
    static func materialDigest(_ r: IntegrationRecord, _ secrets: Secrets) -> String {
        var config = r.config.objectValue ?? [:]
        for key in operationalConfigKeys { config.removeValue(forKey: key) }
        return CanonicalJSON.digest([
            "baseUrl": r.baseURL.map(JSONValue.string) ?? .null, "authMethod": .string(r.authMethod.rawValue), "config": .object(config),
            "processing": r.processing ?? .null, "credentialFields": .array(secrets.credentials.keys.sorted().map(JSONValue.string)),
        ])
    }

    /// The organization's policy: its own, else the service's default.
    func policy(organizationID: UUID, in db: Transaction) async throws -> OrganizationPolicy {
        OrganizationPolicy.stored(try await GovernanceStore(db).policy(organizationID: organizationID), defaults: defaultPolicy)
    }

    /// The organization's policy (`GET /portal/policy`).
    package func policy(organizationID: UUID) async throws -> OrganizationPolicy {
        try await database.read { db in try await policy(organizationID: organizationID, in: db) }
    }

    /// Changes the organization's policy (`PUT /portal/policy`, administrators), ledgered as `policy.updated`
    /// with the policy before and after; `check` may refuse the result before it is written.
    package func setPolicy(
        _ body: JSONValue, by principal: Principal, check: (OrganizationPolicy) throws(PortalError) -> Void = { _ in }
    ) async throws -> OrganizationPolicy {
        try principal.require(.managePolicy)
        let now = clock.now()
        let updated = try await database.write { db in
            let before = try await self.policy(organizationID: principal.organizationID, in: db)
            let after = try OrganizationPolicy.patch(body, over: before)
            try check(after)
            try await GovernanceStore(db).setPolicy(organizationID: principal.organizationID, policy: after.json, at: now, by: Self.actor(principal))
            if after != before {
                try await audit.record(AuditEvent(
                    organizationID: principal.organizationID, type: .policyUpdated, actor: Self.actor(principal),
                    data: ["before": before.json, "after": after.json], time: now
                ), in: db)
            }
            return after
        }
        audit.wake()
        return updated
    }

    /// A request for approval of `record` as it is now: the row, and its `integration.requested` entry.
    func request(
        _ record: IntegrationRecord, digest: String, changed: [String], by principal: Principal, at now: Date, in db: Transaction
    ) async throws -> ApprovalRecord {
        let approval = ApprovalRecord(
            id: ids.next(), organizationID: principal.organizationID, integrationID: record.id, digest: digest, changed: changed,
            state: .pending, requestedBy: principal.tokenID, requestedOwner: principal.owner, requestedAt: now
        )
        try await GovernanceStore(db).insert(approval)
        try await audit.record(AuditEvent(
            organizationID: principal.organizationID, type: .integrationRequested, actor: Self.actor(principal), integrationID: record.id,
            data: [
                "approvalId": .string(approval.id.uuidString.lowercased()), "digest": .string(digest),
                "changed": .array(changed.map(JSONValue.string)), "requestedBy": .string(principal.owner),
                "servingApproved": record.serving.flatMap(ServingConfiguration.init(json:))?.serves == true ? 1 : 0,
            ], time: now
        ), in: db)
        return approval
    }

    /// Marks the integration's pending request (if any) superseded by a later change.
    func supersedePending(_ integrationID: UUID, by principal: Principal, at now: Date, in db: Transaction) async throws {
        guard var pending = try await GovernanceStore(db).pending(integrationID: integrationID, organizationID: principal.organizationID) else { return }
        pending.state = .superseded
        pending.decidedAt = now
        _ = try await GovernanceStore(db).decide(pending)
    }

    /// What a change of `original` into `record` means under the policy: a change that is not material
    /// changes nothing; a material one is in force at once (policy `off`, flagged in the ledger), back to what
    /// was approved, or pending with the approved configuration serving meanwhile (or suspended). Returns
    /// the ledger members of `integration.updated` about it and the request made, if any.
    func govern(
        original: IntegrationRecord, originalSecrets: Secrets, record: inout IntegrationRecord, secrets: Secrets, changed: [String],
        by principal: Principal, at now: Date, in db: Transaction
    ) async throws -> (members: [String: JSONValue], request: IntegrationRecord?) {
        let before = Self.materialDigest(original, originalSecrets), after = Self.materialDigest(record, secrets)
        guard before != after else { return (["material": 0], nil) }
        let policy = try await policy(organizationID: principal.organizationID, in: db)
        try await supersedePending(record.id, by: principal, at: now, in: db)
        var members: [String: JSONValue] = ["material": 1, "materialDigest": .string(after), "approval": .string(policy.approvals.rawValue)]
        switch policy.approvals {
        case .off:
            record.approvedDigest = after
            record.serving = nil
            if record.status == .pending {
                record.status = .active
                record.errorMessage = nil
            }
            return (members, nil)
        case .required where after == record.approvedDigest:
            // Back to exactly what was approved: nothing to approve.
            record.serving = nil
            if record.status == .pending { record.status = .active }
            members["approval"] = "back_to_approved"
            return (members, nil)
        case .required:
            // The approved configuration is kept to restore on a rejection; it serves meanwhile if the policy
            // says so. (A change to a change that waits keeps the approved one from before it.)
            let serves = policy.whileChangePending == .serveApproved
            if original.status != .pending, original.approvedDigest != nil {
                record.serving = ServingConfiguration(original, serves: serves).json
            } else if var kept = original.serving.flatMap(ServingConfiguration.init(json:)) {
                kept.serves = serves
                record.serving = kept.json
            }
            record.status = .pending
            record.errorMessage = nil
            members["servingApproved"] = record.serving.flatMap(ServingConfiguration.init(json:))?.serves == true ? 1 : 0
            return (members, record)
        }
    }

    // MARK: - Decisions

    /// Approves the integration's pending request (`POST /portal/integrations/{id}/approve`): the approver's
    /// owner must differ from the requester's, and `digest`, when given, must be what waits (so the approver
    /// approves what they reviewed, not a change made meanwhile). The integration becomes `active` with the
    /// approved configuration pinned.
    package func approve(id: UUID, comment: String, digest: String?, by principal: Principal) async throws -> ApprovalView {
        try await decide(id: id, approve: true, comment: comment, digest: digest, by: principal)
    }

    /// Rejects the integration's pending request: a change goes back to the approved configuration, which
    /// keeps serving; an integration never approved becomes `inactive`.
    package func reject(id: UUID, comment: String, digest: String?, by principal: Principal) async throws -> ApprovalView {
        try await decide(id: id, approve: false, comment: comment, digest: digest, by: principal)
    }

    private func decide(id: UUID, approve: Bool, comment: String, digest: String?, by principal: Principal) async throws -> ApprovalView {
        try principal.require(.approveIntegrations)
        let trimmed = comment.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty, comment.count <= 2_000 else {
            throw PortalError.validation([.init(pointer: "/comment", message: "is required: 1 to 2000 characters saying why")])
        }
        let now = clock.now()
        let decided = try await database.write { db in
            let store = IntegrationStore(db)
            guard var record = try await store.find(id: id, organizationID: principal.organizationID) else {
                throw PortalError.notFound("integration", acrossOrganizations: try await store.existsElsewhere(id: id, organizationID: principal.organizationID))
            }
            guard record.deletedAt == nil else { throw PortalError(.conflict, "the integration was deleted") }
            guard var approval = try await GovernanceStore(db).pending(integrationID: id, organizationID: principal.organizationID) else {
                throw PortalError(.conflict, "nothing about this integration waits for approval")
            }
            if let digest, digest != approval.digest {
                var error = PortalError(.conflict, "the configuration changed since it was reviewed: review the one that waits now")
                error.details = ["digest": .string(approval.digest)]
                throw error
            }
            // Separation of duties: never the requester's own owner, whichever token they hold.
            guard approval.requestedOwner != principal.owner else {
                throw PortalError(.forbidden, "separation of duties: \(principal.owner) asked for this change and may not \(approve ? "approve" : "reject") it")
            }
            if approve {
                // An imported definition has no credentials until someone gives them: nothing to approve yet.
                let errors = ValidationErrors()
                IntegrationFields.checkRequired(try await open(record, in: db).credentials, for: record.authMethod, pointer: "/credentials", errors: errors)
                if !errors.all.isEmpty {
                    throw PortalError(.conflict, "the integration has no credentials yet: give them (PATCH credentials) before it is approved")
                }
            }
            approval.state = approve ? .approved : .rejected
            approval.decidedBy = principal.tokenID
            approval.decidedOwner = principal.owner
            approval.decidedAt = now
            approval.comment = trimmed
            guard try await GovernanceStore(db).decide(approval) else { throw PortalError(.conflict, "someone decided on this request meanwhile") }
            let serving = record.serving.flatMap(ServingConfiguration.init(json:))
            if approve {
                // Tokens obtained for the approved destination are not sent to the new one.
                if let serving, Self.credentialRouting(serving.apply(to: record)) != Self.credentialRouting(record) {
                    try await IntegrationTokenStore(db).delete(integrationID: id)
                }
                record.approvedDigest = approval.digest
                record.status = .active
                record.errorMessage = nil
            } else if let serving {
                record = serving.apply(to: record)
                record.status = .active
            } else {
                record.status = .inactive
                record.errorMessage = "the approval was rejected: \(trimmed.prefix(200))"
            }
            record.serving = nil
            record.updatedAt = now
            _ = try await store.update(record)
            opened.forget(id)
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: approve ? .integrationApproved : .integrationRejected, actor: Self.actor(principal),
                integrationID: id, data: [
                    "approvalId": .string(approval.id.uuidString.lowercased()), "digest": .string(approval.digest), "comment": .string(trimmed),
                    "requestedBy": .string(approval.requestedOwner), "requestedAt": .string(Timestamp.rfc3339(approval.requestedAt)),
                    "decidedBy": .string(principal.owner), "restored": !approve && serving != nil ? 1 : 0,
                ], time: now
            ), in: db)
            return approval
        }
        audit.wake()
        opened.forget(id)
        return ApprovalView(decided)
    }

    /// The organization's approval requests, newest first (`GET /portal/approvals`), optionally of one state
    /// or one integration.
    package func approvals(
        organizationID: UUID, state: ApprovalRecord.State?, integrationID: UUID?, limit: Int, cursor: String?
    ) async throws -> Page<ApprovalView> {
        let after = try Page<ApprovalView>.cursorID(cursor)
        let rows = try await database.read { db in
            try await GovernanceStore(db).list(organizationID: organizationID, state: state, integrationID: integrationID, limit: limit + 1, before: after)
        }
        let page = rows.prefix(limit)
        return Page(items: page.map(ApprovalView.init), nextCursor: rows.count > limit ? page.last?.id.uuidString.lowercased() : nil)
    }
}

/// An approval request as the API returns it.
package struct ApprovalView: Sendable, Encodable, Equatable {
    package var id: String
    package var integrationId: String
    /// The integration's name (in lists).
    package var integrationName: String?
    package var digest: String
    package var changed: [String]
    package var state: String
    package var requestedBy: String
    package var requestedAt: String
    package var decidedBy: String?
    package var decidedAt: String?
    package var comment: String?

    init(_ r: ApprovalRecord) {
        id = r.id.uuidString.lowercased()
        integrationId = r.integrationID.uuidString.lowercased()
        integrationName = r.integrationName
        digest = r.digest
        changed = r.changed
        state = r.state.rawValue
        requestedBy = r.requestedOwner
        requestedAt = Timestamp.rfc3339(r.requestedAt)
        decidedBy = r.decidedOwner
        decidedAt = r.decidedAt.map(Timestamp.rfc3339)
        comment = r.comment
    }
}

/// The approved configuration of an integration kept while a change to it waits for approval: what the
/// gateway calls out with meanwhile, and what a rejection restores. Its credentials stay the sealed envelope
/// they were (the vault opens it as the row's own).
struct ServingConfiguration: Equatable {
    var baseURL: String?
    var authMethod: AuthMethod
    var config: JSONValue
    var rateLimits: JSONValue?
    var processing: JSONValue?
    var credentials: JSONValue
    /// Whether the gateway calls out with it while the change waits (policy `serve_approved`).
    var serves: Bool

    init(_ r: IntegrationRecord, serves: Bool) {
        self.serves = serves
        baseURL = r.baseURL
        authMethod = r.authMethod
        config = r.config
        rateLimits = r.rateLimits
        processing = r.processing
        credentials = r.credentials
    }

    init?(json: JSONValue) {
        guard let m = json.objectValue, let method = m["authMethod"]?.stringValue.flatMap(AuthMethod.init(rawValue:)), let credentials = m["credentials"] else {
            return nil
        }
        baseURL = m["baseUrl"]?.stringValue
        authMethod = method
        config = m["config"] ?? [:]
        rateLimits = m["rateLimits"].flatMap { $0 == .null ? nil : $0 }
        processing = m["processing"].flatMap { $0 == .null ? nil : $0 }
        self.credentials = credentials
        serves = m["serves"] == .bool(true)
    }

    var json: JSONValue {
        [
            "baseUrl": baseURL.map(JSONValue.string) ?? .null, "authMethod": .string(authMethod.rawValue), "config": config,
            "rateLimits": rateLimits ?? .null, "processing": processing ?? .null, "credentials": credentials,
            "serves": .bool(serves),
        ]
    }

    /// `record` with this configuration in place of its own.
    func apply(to record: IntegrationRecord) -> IntegrationRecord {
        var r = record
        r.baseURL = baseURL
        r.authMethod = authMethod
        r.config = config
        r.rateLimits = rateLimits
        r.processing = processing
        r.credentials = credentials
        return r
    }
}
