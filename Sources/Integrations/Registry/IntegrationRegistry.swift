package import Foundation
package import PortalCore
package import Storage
package import Ledger
import Synchronization

/// Registers and manages integrations: the seed's `IntegrationService` (register, read, change, delete,
/// status), with credentials sealed by the vault inside the same transaction as the row.
package struct IntegrationRegistry: Sendable {
    let database: Database
    let vault: CredentialVault
    let audit: any AuditTrail
    let clock: any WallClock
    let ids: IdentifierGenerator
    let opened: OutboundCache

    /// Rate limits in force when an integration gives none (DESIGN section 7).
    package static let defaultRateLimits: JSONValue = ["requestsPerSecond": 10, "burst": 20]

    /// `outboundCacheSeconds`: how long an opened outbound configuration (credentials in the clear, in
    /// memory only) is reused by the gateway before it is read and unsealed again (default 1 s). Changes
    /// made through this registry take effect at once; changes made by another instance within that time.
    /// The most integrations (not deleted) an organization may have.
    let maxIntegrations: Int
    /// The governance policy of organizations that have not set their own.
    let defaultPolicy: OrganizationPolicy

    package init(
        database: Database, vault: CredentialVault, audit: any AuditTrail, clock: any WallClock = SystemWallClock(), ids: IdentifierGenerator = .shared,
        outboundCacheSeconds: TimeInterval = 1, maxIntegrations: Int = Quotas().integrations, defaultPolicy: OrganizationPolicy = OrganizationPolicy()
    ) {
        self.defaultPolicy = defaultPolicy
        self.maxIntegrations = maxIntegrations
        self.database = database
        self.vault = vault
        self.audit = audit
        self.clock = clock
        self.ids = ids
        self.opened = OutboundCache(ttl: outboundCacheSeconds)
    }

    /// Forgets the cached outbound configuration of an integration changed outside the registry (the
    /// gateway setting status `error`).
    package func invalidate(id: UUID) { opened.forget(id) }

    /// The secrets of one integration, sealed together as one envelope.
    struct Secrets: Codable, Equatable {
        var credentials: [String: String]
        var webhookSecret: String?
        /// The credentials before the last rotation, usable until `previousUntil` (the overlap window).
        var previous: [String: String]?
        var previousUntil: Date?
    }

    /// Creates an integration from a validated configuration: `pending` until approved when the
    /// organization's policy requires approvals (an `integration.requested` entry follows the
    /// `integration.created` one), else `active` at once.
    package func register(_ input: IntegrationInput, by principal: Principal, imported: Bool = false) async throws -> IntegrationView {
        try principal.require(.manageIntegrations)
        let now = clock.now()
        let id = ids.next()
        let record = try await database.write { db in
            let live = try await IntegrationStore(db).countLive(organizationID: principal.organizationID)
            guard live < maxIntegrations else {
                throw PortalError.validation([.init(
                    pointer: "", message: "the organization has \(live) integrations, the most allowed (PORTAL_MAX_INTEGRATIONS) is \(maxIntegrations): delete one first"
                )])
            }
            let sealed = try await seal(
                Secrets(credentials: input.credentials, webhookSecret: input.webhookSecret),
                organizationID: principal.organizationID, integrationID: id, in: db
            )
            var record = IntegrationRecord(
                id: id, organizationID: principal.organizationID, name: input.name, type: input.type,
                baseURL: input.baseURL, authMethod: input.authMethod, credentials: sealed,
                config: input.config, rateLimits: input.rateLimits, webhookConfig: input.webhookConfig,
                syncConfig: input.syncConfig, status: .active,
                createdBy: principal.tokenID, createdAt: now, updatedAt: now, processing: input.processing
            )
            let secrets = Secrets(credentials: input.credentials, webhookSecret: input.webhookSecret)
            let policy = try await policy(organizationID: principal.organizationID, in: db)
            let digest = Self.materialDigest(record, secrets)
            // An imported definition waits for its credentials (and, if the policy says so, an approval).
            if policy.approvals == .required || imported { record.status = .pending } else { record.approvedDigest = digest }
            if imported { record.errorMessage = "imported without credentials: give them (PATCH credentials) to use it" }
            do {
                try await IntegrationStore(db).insert(record)
            } catch where Database.isUniqueViolation(error) {
                throw PortalError(.conflict, "an integration named '\(input.name)' already exists")
            }
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .integrationCreated, actor: Self.actor(principal),
                integrationID: id, data: [
                    "name": .string(input.name), "integrationType": .string(input.type.rawValue),
                    "authMethod": .string(input.authMethod.rawValue), "after": .string(Self.configurationDigest(record, secrets)),
                    "material": 1, "materialDigest": .string(digest), "approval": .string(policy.approvals.rawValue), "imported": imported ? 1 : 0,
                ], time: now
            ), in: db)
            if policy.approvals == .required {
                _ = try await request(record, digest: digest, changed: ["created"], by: principal, at: now, in: db)
            }
            return record
        }
        audit.wake()
        return try await view(of: record)
    }

    /// The organization's integrations, newest first.
    package func list(
        organizationID: UUID, limit: Int, cursor: String?, includeDeleted: Bool, type: IntegrationType? = nil, status: IntegrationStatus? = nil
    ) async throws -> Page<IntegrationView> {
        let after = try Page<IntegrationView>.cursorID(cursor)
        let (records, stats, secrets) = try await database.read { db in
            let records = try await IntegrationStore(db).list(
                organizationID: organizationID, limit: limit + 1, before: after, includeDeleted: includeDeleted, type: type, status: status
            )
            let page = Array(records.prefix(limit))
            let stats = try await IntegrationStore(db).requestStats(organizationID: organizationID, ids: page.map(\.id))
            var secrets: [UUID: Secrets] = [:]
            for record in page { secrets[record.id] = try await open(record, in: db) }
            return (records, stats, secrets)
        }
        let page = records.prefix(limit)
        let items = page.map { record in
            Self.view(of: record, secrets: secrets[record.id] ?? Secrets(credentials: [:]), stats: stats[record.id])
        }
        let next = records.count > limit ? page.last?.id.uuidString.lowercased() : nil
        return Page(items: items, nextCursor: next)
    }

    /// One integration of the organization (deleted ones too); `not_found` for any other organization's.
    package func get(id: UUID, organizationID: UUID) async throws -> IntegrationView {
        let record = try await database.read { db in
            try await IntegrationStore(db).find(id: id, organizationID: organizationID)
        }
        guard let record else { throw try await notFound(id, organizationID) }
        return try await view(of: record)
    }

    /// Applies a validated PATCH: only the given fields change; a masked credential stays as it was.
    package func update(id: UUID, patch: IntegrationPatch, by principal: Principal) async throws -> IntegrationView {
        try principal.require(.manageIntegrations)
        let now = clock.now()
        let record = try await database.write { db in
            let store = IntegrationStore(db)
            guard var record = try await store.find(id: id, organizationID: principal.organizationID) else {
                throw PortalError.notFound("integration", acrossOrganizations: try await store.existsElsewhere(id: id, organizationID: principal.organizationID))
            }
            guard record.deletedAt == nil else {
                throw PortalError(.conflict, "the integration was deleted and cannot be changed")
            }
            var secrets = try await open(record, in: db)
            let before = Self.configurationDigest(record, secrets)
            let original = record, originalSecrets = secrets
            if let name = patch.name { record.name = name }
            if let type = patch.type { record.type = type }
            if let baseURL = patch.baseURL { record.baseURL = baseURL }
            if let authMethod = patch.authMethod { record.authMethod = authMethod }
            if let changes = patch.credentials {
                for (key, value) in changes {
                    switch value {
                    case .none: secrets.credentials.removeValue(forKey: key)
                    case .some(let v) where Masking.isMasked(v):
                        guard secrets.credentials[key] != nil else {
                            throw PortalError.validation([.init(
                                pointer: "/credentials/\(jsonPointerEscape(key))",
                                message: "is masked but has no stored value; send the secret itself"
                            )])
                        }
                    case .some(let v): secrets.credentials[key] = v
                    }
                }
            }
            // (An imported integration has none until they are given: other changes, its status, need none.)
            if patch.credentials != nil || patch.authMethod != nil {
                let errors = ValidationErrors()
                IntegrationFields.checkRequired(secrets.credentials, for: record.authMethod, pointer: "/credentials", errors: errors)
                try errors.throwIfAny()
            }
            if let config = patch.config {
                record.config = record.config.merging(patch: config)
                // The patch's own transforms were checked; the merged whole must keep within the limits too,
                // and be a configuration member by member.
                let errors = ValidationErrors()
                if let transforms = record.config.objectValue?["transforms"] {
                    TransformFields.check(transforms, pointer: "/config/transforms", errors: errors)
                }
                IntegrationConfiguration.check(record.config, pointer: "/config", errors: errors)
                try errors.throwIfAny()
            }
            switch patch.rateLimits {
            case .unchanged: break
            case .set(let limits): record.rateLimits = limits
            case .remove: record.rateLimits = nil
            }
            switch patch.webhookConfig {
            case .unchanged: break
            case .set(let webhook):
                let merged = (record.webhookConfig ?? [:]).merging(patch: webhook)
                if let secret = patch.webhookSecret { secrets.webhookSecret = secret }
                guard merged.objectValue?["endpoint"] != nil, secrets.webhookSecret != nil else {
                    throw PortalError.validation([.init(
                        pointer: "/webhookConfig", message: "needs an endpoint and a secret"
                    )])
                }
                record.webhookConfig = merged
            case .remove:
                record.webhookConfig = nil
                secrets.webhookSecret = nil
            }
            switch patch.syncConfig {
            case .unchanged: break
            case .set(let sync): record.syncConfig = sync
            case .remove: record.syncConfig = nil
            }
            switch patch.processing {
            case .unchanged: break
            case .set(let processing): record.processing = processing
            case .remove: record.processing = nil
            }
            if let status = patch.status {
                guard status != .active || original.status != .pending else {
                    throw PortalError(.conflict, "the integration waits for approval: it becomes active when a second person approves it")
                }
                record.status = status
            }
            // Changing where or how the stored credentials are sent needs them again in the same request:
            // otherwise a token allowed to edit integrations could point them at a host of its own.
            let routingBefore = Self.credentialRouting(original), routingAfter = Self.credentialRouting(record)
            let rerouted = Set(routingBefore.keys).union(routingAfter.keys).filter { routingBefore[$0] != routingAfter[$0] }.sorted()
            var routingNote: [JSONValue] = []
            if !rerouted.isEmpty {
                let resent = Set((patch.credentials ?? [:]).compactMap { key, value in value.flatMap { Masking.isMasked($0) ? nil : key } })
                let missing = secrets.credentials.keys.filter { !resent.contains($0) }.sorted()
                guard missing.isEmpty else {
                    throw PortalError.validation(missing.map { key in .init(
                        pointer: "/credentials/\(jsonPointerEscape(key))",
                        message: "must be sent again: this change (\(rerouted.joined(separator: ", "))) moves where or how the stored credentials are sent"
                    ) })
                }
                routingNote = rerouted.map(JSONValue.string)
            }
            record.credentials = try await seal(secrets, organizationID: principal.organizationID, integrationID: id, in: db)
            let governed = try await govern(
                original: original, originalSecrets: originalSecrets, record: &record, secrets: secrets, changed: patch.fieldNames,
                by: principal, at: now, in: db
            )
            // Tokens obtained for the old destination are not sent to the new one: authorize again (when the
            // approved configuration serves meanwhile, its tokens go once the change is approved).
            if !rerouted.isEmpty, record.serving == nil {
                try await IntegrationTokenStore(db).delete(integrationID: id)
            }
            record.updatedAt = now
            do {
                _ = try await store.update(record)
                opened.forget(record.id)
            } catch where Database.isUniqueViolation(error) {
                throw PortalError(.conflict, "an integration named '\(record.name)' already exists")
            }
            var members: [String: JSONValue] = [
                "changed": .array(patch.fieldNames.map(JSONValue.string)), "before": .string(before),
                "after": .string(Self.configurationDigest(record, secrets)), "credentialRouting": .array(routingNote),
            ]
            members.merge(governed.members) { $1 }
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .integrationUpdated, actor: Self.actor(principal),
                integrationID: id, data: .object(members), time: now
            ), in: db)
            if let pending = governed.request {
                _ = try await request(pending, digest: Self.materialDigest(pending, secrets), changed: patch.fieldNames, by: principal, at: now, in: db)
            }
            return record
        }
        audit.wake()
        // Again after the commit: a call may have cached the old row while the change was in flight.
        opened.forget(id)
        return try await view(of: record)
    }

    /// What decides where and how an integration's credentials are sent: its base URL and auth method,
    /// the API key's location, header templates, and the OAuth and JWT endpoints. Keyed by the setting's
    /// name as a client would write it.
    static func credentialRouting(_ record: IntegrationRecord) -> [String: JSONValue] {
        var routing: [String: JSONValue] = ["baseUrl": record.baseURL.map(JSONValue.string) ?? .null, "authMethod": .string(record.authMethod.rawValue)]
        let config = record.config.objectValue ?? [:]
        for key in ["keyLocation", "keyParam", "keyField", "keyHeader", "keyPrefix", "headers"] {
            if let value = config[key] { routing["config.\(key)"] = value }
        }
        for section in ["oauth", "jwt"] {
            for (key, value) in config[section]?.objectValue ?? [:] where key.hasSuffix("Url") || key == "audience" {
                routing["config.\(section).\(key)"] = value
            }
        }
        return routing
    }

    /// Soft-deletes an integration: status `inactive` and `deletedAt` set, so evidence can keep referring
    /// to it. Deleting a deleted integration changes nothing.
    package func delete(id: UUID, by principal: Principal) async throws {
        try principal.require(.manageIntegrations)
        let now = clock.now()
        try await database.write { db in
            let store = IntegrationStore(db)
            guard var record = try await store.find(id: id, organizationID: principal.organizationID) else {
                throw PortalError.notFound("integration", acrossOrganizations: try await store.existsElsewhere(id: id, organizationID: principal.organizationID))
            }
            guard record.deletedAt == nil else { return }
            let secrets = try await open(record, in: db)
            let before = Self.configurationDigest(record, secrets)
            record.status = .inactive
            record.deletedAt = now
            record.updatedAt = now
            record.serving = nil
            _ = try await store.update(record)
            try await supersedePending(id, by: principal, at: now, in: db)
            opened.forget(record.id)
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .integrationDeleted, actor: Self.actor(principal),
                integrationID: id, data: ["before": .string(before), "after": .string(Self.configurationDigest(record, secrets))], time: now
            ), in: db)
        }
        audit.wake()
        // Again after the commit: a call may have cached the old row while the change was in flight.
        opened.forget(id)
    }

    /// The seed's `getIntegrationStatus`: lifecycle status and request health.
    package func status(id: UUID, organizationID: UUID) async throws -> IntegrationStatusView {
        let (record, stats) = try await database.read { db in
            let record = try await IntegrationStore(db).find(id: id, organizationID: organizationID)
            let stats = try await IntegrationStore(db).requestStats(organizationID: organizationID, ids: record.map { [$0.id] } ?? [])
            return (record, stats)
        }
        guard let record else { throw try await notFound(id, organizationID) }
        return IntegrationStatusView(
            id: record.id.uuidString.lowercased(), name: record.name, status: record.status,
            usable: record.deletedAt == nil && (record.status == .active || record.serving.flatMap(ServingConfiguration.init(json:))?.serves == true),
            errorMessage: record.errorMessage, lastSync: record.lastSync.map(Timestamp.rfc3339),
            deletedAt: record.deletedAt.map(Timestamp.rfc3339),
            metrics: Self.metrics(stats[record.id]), checkedAt: Timestamp.rfc3339(clock.now())
        )
    }

    // MARK: - Evidence

    /// The ledger's actor string for a caller.
    static func actor(_ principal: Principal) -> String { principal.tokenID.uuidString.lowercased() }

    /// SHA-256 (hex) of the canonical configuration: every field but secrets, whose names only are in it.
    static func configurationDigest(_ r: IntegrationRecord, _ secrets: Secrets) -> String {
        var members: [String: JSONValue] = [
            "name": .string(r.name), "type": .string(r.type.rawValue), "baseUrl": r.baseURL.map(JSONValue.string) ?? .null,
            "authMethod": .string(r.authMethod.rawValue), "config": r.config, "rateLimits": r.rateLimits ?? .null,
            "webhookConfig": r.webhookConfig ?? .null, "syncConfig": r.syncConfig ?? .null, "status": .string(r.status.rawValue),
            "credentialFields": .array(secrets.credentials.keys.sorted().map(JSONValue.string)),
            "webhookSecretSet": .bool(secrets.webhookSecret != nil), "deleted": .bool(r.deletedAt != nil),
        ]
        // Only when set, so the digests of integrations without it are what they were before it existed.
        if let processing = r.processing { members["processing"] = processing }
        return CanonicalJSON.digest(.object(members))
    }

    /// A 404 for `id`, flagged when the integration exists in another organization.
    func notFound(_ id: UUID, _ organizationID: UUID) async throws -> PortalError {
        let elsewhere = try await database.read { db in try await IntegrationStore(db).existsElsewhere(id: id, organizationID: organizationID) }
        return PortalError.notFound("integration", acrossOrganizations: elsewhere)
    }

    // MARK: - Views and secrets

    /// The view of `record` as stored: re-read, so a write's response is exactly what a later GET returns
    /// (each driver rounds times to its own precision).
    func view(of record: IntegrationRecord) async throws -> IntegrationView {
        let (stored, secrets, stats) = try await database.read { db in
            let stored = try await IntegrationStore(db).find(id: record.id, organizationID: record.organizationID) ?? record
            return (
                stored,
                try await open(stored, in: db),
                try await IntegrationStore(db).requestStats(organizationID: record.organizationID, ids: [record.id])
            )
        }
        return Self.view(of: stored, secrets: secrets, stats: stats[record.id])
    }

    static func view(of record: IntegrationRecord, secrets: Secrets, stats: IntegrationRequestStats?) -> IntegrationView {
        var webhook = record.webhookConfig
        if case .object(var fields) = webhook {
            if let secret = secrets.webhookSecret { fields["secret"] = .string(Masking.mask(secret)) }
            webhook = .object(fields)
        }
        return IntegrationView(
            id: record.id.uuidString.lowercased(), name: record.name, type: record.type, baseUrl: record.baseURL,
            authMethod: record.authMethod, credentials: secrets.credentials.mapValues(Masking.mask),
            config: record.config, rateLimits: record.rateLimits ?? defaultRateLimits, webhookConfig: webhook,
            syncConfig: record.syncConfig, processing: record.processing, status: record.status, errorMessage: record.errorMessage,
            lastSync: record.lastSync.map(Timestamp.rfc3339), createdAt: Timestamp.rfc3339(record.createdAt),
            updatedAt: Timestamp.rfc3339(record.updatedAt), deletedAt: record.deletedAt.map(Timestamp.rfc3339),
            metrics: metrics(stats),
            approval: ApprovalSummary(
                approvedDigest: record.approvedDigest, currentDigest: materialDigest(record, secrets), pending: record.status == .pending,
                servingApproved: record.status == .pending && record.serving.flatMap(ServingConfiguration.init(json:))?.serves == true
            )
        )
    }

    static func metrics(_ stats: IntegrationRequestStats?) -> IntegrationMetricsView {
        guard let stats, stats.totalRequests > 0 else {
            return IntegrationMetricsView(
                totalRequests: 0, successfulRequests: 0, failedRequests: 0, successRate: nil, errorRate: nil,
                averageResponseTime: 0, lastError: nil
            )
        }
        let success = Double(stats.successfulRequests) / Double(stats.totalRequests)
        return IntegrationMetricsView(
            totalRequests: stats.totalRequests, successfulRequests: stats.successfulRequests,
            failedRequests: stats.totalRequests - stats.successfulRequests, successRate: success, errorRate: 1 - success,
            averageResponseTime: stats.averageDurationMs,
            lastError: stats.lastErrorAt.map {
                .init(timestamp: Timestamp.rfc3339($0), message: stats.lastErrorMessage, endpoint: stats.lastErrorEndpoint ?? "")
            }
        )
    }

    /// Replaces credential fields (those given; others stay), keeping the old ones usable as a fallback for
    /// `overlap` seconds where the provider accepts both for a while, and appends `credential.rotated`
    /// (field names, the overlap's end and a key id derived from the new values; never a value).
    package func rotateCredentials(id: UUID, credentials: [String: String], overlap: TimeInterval, by principal: Principal) async throws -> IntegrationView {
        try principal.require(.manageIntegrations)
        guard !credentials.isEmpty, !credentials.values.contains(where: { $0.isEmpty || Masking.isMasked($0) }) else {
            throw PortalError.validation([.init(pointer: "/credentials", message: "give the new values (not masked, not empty)")])
        }
        // As at creation: a value sent in a header must be one line (a pasted key's trailing newline).
        let refused = credentials.sorted { $0.key < $1.key }.compactMap { key, value in
            IntegrationFields.controlCharacterProblem(value, name: key).map { PortalError.FieldError(pointer: "/credentials/\(key)", message: $0) }
        }
        guard refused.isEmpty else { throw PortalError.validation(refused) }
        let now = clock.now()
        let record = try await database.write { db in
            let store = IntegrationStore(db)
            guard var record = try await store.find(id: id, organizationID: principal.organizationID) else {
                throw PortalError.notFound("integration", acrossOrganizations: try await store.existsElsewhere(id: id, organizationID: principal.organizationID))
            }
            guard record.deletedAt == nil else { throw PortalError(.conflict, "the integration was deleted and cannot be changed") }
            var secrets = try await open(record, in: db)
            secrets.previous = overlap > 0 ? secrets.credentials : nil
            secrets.previousUntil = overlap > 0 ? now.addingTimeInterval(overlap) : nil
            secrets.credentials.merge(credentials) { $1 }
            record.credentials = try await seal(secrets, organizationID: principal.organizationID, integrationID: id, in: db)
            record.updatedAt = now
            _ = try await store.update(record)
                opened.forget(record.id)
            let identity = credentials.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n")
            var data: [String: JSONValue] = [
                "fields": .array(credentials.keys.sorted().map(JSONValue.string)),
                "keyId": .string(String(CanonicalJSON.digest(.string(identity)).prefix(16))),
            ]
            if let until = secrets.previousUntil { data["overlapUntil"] = .string(Timestamp.rfc3339(until)) }
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .credentialRotated, actor: Self.actor(principal), integrationID: id, data: .object(data), time: now
            ), in: db)
            return record
        }
        audit.wake()
        // Again after the commit: a call may have cached the old row while the change was in flight.
        opened.forget(id)
        return try await view(of: record)
    }

    /// What the gateway needs to call out through an integration: its configuration and its credentials
    /// in the clear. For the outbound path only; never returned by the API or logged.
    package func outbound(id: UUID, organizationID: UUID) async throws -> OutboundIntegration {
        let now = clock.now()
        if let cached = opened.lookup(id, organizationID: organizationID, now: now) { return cached }
        let outbound = try await database.read { db in
            guard var record = try await IntegrationStore(db).find(id: id, organizationID: organizationID), record.deletedAt == nil else {
                throw PortalError.notFound("integration")
            }
            // While a change waits for approval, the approved configuration serves (if the policy says so).
            if record.status == .pending, let serving = record.serving.flatMap(ServingConfiguration.init(json:)), serving.serves {
                record = serving.apply(to: record)
                record.status = .active
            }
            let authMethod = record.authMethod
            let secrets = try await open(record, in: db)
            var outbound = OutboundIntegration(
                id: record.id, organizationID: record.organizationID, name: record.name, baseURL: record.baseURL ?? "",
                authMethod: authMethod, credentials: secrets.credentials, config: record.config,
                rateLimits: record.rateLimits ?? Self.defaultRateLimits, status: record.status
            )
            if let previous = secrets.previous, let until = secrets.previousUntil, until > clock.now() {
                outbound.previousCredentials = previous
                outbound.previousUntil = until
            }
            return outbound
        }
        opened.remember(outbound, now: now)
        return outbound
    }

    func seal(_ secrets: Secrets, organizationID: UUID, integrationID: UUID, in db: Transaction) async throws -> JSONValue {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return try await vault.seal(
            try encoder.encode(secrets), organizationID: organizationID,
            context: VaultContext.integration(integrationID), in: db
        )
    }

    func open(_ record: IntegrationRecord, in db: Transaction) async throws -> Secrets {
        let plaintext = try await vault.open(
            record.credentials, organizationID: record.organizationID,
            context: VaultContext.integration(record.id), in: db
        )
        do {
            return try JSONDecoder().decode(Secrets.self, from: plaintext)
        } catch {
            throw PortalError(.crypto, "the stored credentials do not decode")
        }
    }
}

/// Outbound configurations recently opened, by integration, for a short time (the gateway's hot path:
/// one read and one unseal per integration per second instead of per call). Bounded; kept in memory only.
final class OutboundCache: Sendable {
    private let entries = Mutex<[UUID: (integration: OutboundIntegration, cachedAt: Date)]>([:])
    private let ttl: TimeInterval

    init(ttl: TimeInterval) { self.ttl = ttl }

    func lookup(_ id: UUID, organizationID: UUID, now: Date) -> OutboundIntegration? {
        guard ttl > 0 else { return nil }
        return entries.withLock { entries in
            guard let entry = entries[id], entry.integration.organizationID == organizationID else { return nil }
            guard now.timeIntervalSince(entry.cachedAt) < ttl, now >= entry.cachedAt else {
                entries[id] = nil
                return nil
            }
            var integration = entry.integration
            // The rotation overlap ends on time even while cached.
            if let until = integration.previousUntil, until <= now { integration.previousCredentials = nil }
            return integration
        }
    }

    func remember(_ integration: OutboundIntegration, now: Date) {
        guard ttl > 0 else { return }
        entries.withLock { entries in
            if entries.count >= 10_000 { entries.removeAll(keepingCapacity: true) }
            entries[integration.id] = (integration, now)
        }
    }

    func forget(_ id: UUID) { _ = entries.withLock { $0.removeValue(forKey: id) } }
}
