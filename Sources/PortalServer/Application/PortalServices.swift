import Foundation
package import Compliance
package import Integrations
package import Gateway
package import Ledger
package import Logging
package import Monitoring
package import PortalCore
package import Storage
package import ServiceLifecycle
package import Sync
package import Webhooks

/// The parts every route and command works with, built once from the settings.
package struct PortalServices: Sendable {
    package let database: Database
    package let vault: CredentialVault
    package let tokens: APITokenAuthority
    /// Web console sessions, each acting as the API token that signed in.
    package let consoleSessions: ConsoleSessions
    package let integrations: IntegrationRegistry
    /// Outbound calls through integrations.
    package let gateway: Gateway
    /// Provider presets (`GET /portal/catalog`, `"preset"` in a create body).
    package let catalog: ProviderCatalog
    /// Inbound webhooks: endpoints, the receiver and the queue's workers.
    package let webhooks: WebhookService
    package let webhookWorkers: WebhookWorkers
    /// Data syncs: jobs, records, conflicts.
    package let sync: SyncEngine
    /// The ledger's sequencer: the `AuditTrail` every capability records through.
    package let ledger: LedgerSequencer
    package let checkpointer: LedgerCheckpointer
    package let ledgerReader: LedgerReader
    /// Counts 401s, webhook rejections, expired-token uses and 403s per key and minute (flushes at shutdown).
    package let authFailures: AuthFailureRecorder
    /// Bulk export, import, enable, disable and delete of integrations.
    package let bulk: IntegrationBulk
    /// Security reviews of integrations.
    package let reviews: SecurityReviews
    /// The organization's API allow-list and the API's rate limits.
    let apiGuard: APIAccessGuard
    /// Proxies whose `X-Forwarded-For` is believed.
    let trustedProxies: [IPNetwork]
    /// Whether the listener serves HTTPS (every answer then carries HSTS).
    let servesTLS: Bool
    /// Monitoring: the collector every capability reports to, its rollups and windows, alerting.
    package let monitor: IntegrationMonitor
    package let alertRules: AlertRuleSet
    package let alertReceivers: AlertReceivers
    package let alertEvaluator: AlertEvaluator
    package let ledgerVerification: LedgerVerificationRun
    /// Published checkpoints the ledgers are held to (`PORTAL_CHECKPOINT_DIR`), if any.
    package let checkpointDirectory: String?
    package let ledgerWatch: LedgerWatch
    package let metricsToken: MetricsTokenAuthority
    /// Data-subject requests: export and erasure.
    package let subjects: SubjectRequests
    /// Retention periods and the service that applies them.
    package let retention: Retention
    /// The GDPR Art. 30 record of processing, declared and observed.
    package let processingRegister: ProcessingRegister
    /// Evidence bundles requested over the API, and the service that builds them.
    package let reports: ReportJobs
    package let clock: any WallClock
    package let ids: IdentifierGenerator
    package let maxBodyBytes: Int
    /// Per-organization bounds (tokens are checked where they are issued).
    package let quotas: Quotas
    /// The URL the portal is reached at, without a trailing slash (OAuth redirect URIs).
    package let publicURL: String
    package let logger: Logger

    /// Builds the services over `database` with the master keys of `settings`.
    package init(
        settings: PortalSettings, database: Database, clock: any WallClock = SystemWallClock(),
        ids: IdentifierGenerator = .shared, logger: Logger
    ) throws(PortalError) {
        let ring = try MasterKeyRing.load(masterKey: settings.masterKey, keyFile: settings.masterKeyFile)
        self.database = database
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.maxBodyBytes = settings.maxBodyBytes
        quotas = settings.quotas
        publicURL = settings.effectivePublicURL
        vault = CredentialVault(ring: ring, clock: clock, ids: ids)
        ledger = LedgerSequencer(database: database, clock: clock, ids: ids, logger: logger)
        checkpointer = LedgerCheckpointer(
            database: database, sealer: vault, clock: clock, ids: ids, logger: logger,
            configuration: .init(
                // DESIGN 4.3: the origin's host comes from --public-url, `localhost` when none is set (not the
                // default URL, whose port would make the key names depend on the listener's port).
                originPrefix: settings.publicURL.map(LedgerCheckpointer.Configuration.originPrefix(publicURL:)) ?? "localhost",
                publishDirectory: settings.checkpointDir
            )
        )
        ledgerReader = LedgerReader(database: database)
        // Refused and unauthenticated traffic (401s, webhook rejections, expired tokens, 403s) is counted
        // per key and minute by one recorder, not appended one entry per request.
        authFailures = AuthFailureRecorder(audit: ledger, key: vault.derivedKey("auth-failure-sources"), clock: clock, logger: logger)
        tokens = APITokenAuthority(database: database, audit: ledger, clock: clock, ids: ids, failures: authFailures)
        consoleSessions = ConsoleSessions(database: database, audit: ledger, clock: clock, tokens: tokens, ids: ids)
        integrations = IntegrationRegistry(
            database: database, vault: vault, audit: ledger, clock: clock, ids: ids, maxIntegrations: settings.quotas.integrations,
            defaultPolicy: settings.defaultPolicy
        )
        apiGuard = APIAccessGuard(
            integrations: integrations, failures: authFailures, clock: clock, tokenRate: settings.apiTokenRate, organizationRate: settings.apiOrganizationRate
        )
        trustedProxies = settings.trustedProxies
        servesTLS = settings.tlsCertificate != nil
        reviews = SecurityReviews(database: database, audit: ledger, clock: clock, ids: ids, reportsDirectory: settings.reportsDirectory)
        catalog = try ProviderCatalog.load(path: settings.catalogPath)
        let instance = ids.next().uuidString.lowercased()
        let collector = MetricsCollector(clock: clock, instanceID: instance)
        let observer: any ActivityObserver = settings.monitoring ? collector : NoActivityObserver()
        monitor = IntegrationMonitor(collector: collector, database: database, clock: clock, logger: logger)
        alertRules = try AlertRuleSet.load(path: settings.alertRulesPath)
        metricsToken = MetricsTokenAuthority(database: database, configured: settings.metricsToken)
        webhooks = WebhookService(
            database: database, vault: vault, audit: ledger, registry: integrations, clock: clock, ids: ids, logger: logger, publicURL: publicURL,
            configuration: .init(maxBodyBytes: settings.maxBodyBytes), observer: observer, rejections: authFailures
        )
        // user.* and data.sync feed the sync engine's upsert path.
        webhookWorkers = WebhookWorkers(service: webhooks, handlers: [SyncWebhookHandler(vault: vault, audit: ledger, ids: ids)])
        gateway = Gateway(
            database: database, vault: vault, registry: integrations, audit: ledger, clock: clock, ids: ids, logger: logger,
            configuration: .init(policy: try OutboundPolicy(allowList: settings.outboundAllow)), observer: observer
        )
        bulk = IntegrationBulk(registry: integrations) { [gateway, logger] id, principal in
            // As the API's delete: OAuth tokens revoked at the provider first; one that cannot be reached does
            // not stop the deletion.
            do {
                try await gateway.revokeTokens(integrationID: id, by: principal)
            } catch let error as PortalError where error.code == .forbidden {
                throw error
            } catch {
                logger.warning("token revocation failed; deleting anyway", metadata: ["portal.error_type": "\(type(of: error))"])
            }
        }
        sync = SyncEngine(database: database, gateway: gateway, vault: vault, audit: ledger, clock: clock, ids: ids, logger: logger, observer: observer)
        alertReceivers = AlertReceivers(database: database, vault: vault, audit: ledger, clock: clock, ids: ids)
        alertEvaluator = AlertEvaluator(
            rules: alertRules, database: database, monitor: monitor,
            notifier: AlertNotifier(gateway: gateway, database: database, clock: clock, ids: ids, logger: logger, externalURL: publicURL),
            receivers: alertReceivers, audit: ledger, clock: clock, logger: logger, owner: instance
        )
        subjects = SubjectRequests(database: database, vault: vault, gateway: gateway, audit: ledger, clock: clock, logger: logger)
        processingRegister = ProcessingRegister(database: database)
        reports = ReportJobs(
            database: database, checkpointer: checkpointer, sequencer: ledger, clock: clock, ids: ids, logger: logger, owner: instance,
            reportsDirectory: settings.reportsDirectory, maxOpen: settings.quotas.openReports,
            serviceLevels: { [monitor] organization, start, end in try await monitor.attainment(organizationID: organization, start: start, end: end) }
        )
        retention = Retention(database: database, audit: ledger, clock: clock, logger: logger, interval: .seconds(Int64(settings.retentionInterval)), owner: instance)
        ledgerVerification = LedgerVerificationRun(database: database, checkpointer: checkpointer, sequencer: ledger, clock: clock)
        checkpointDirectory = settings.checkpointDir
        ledgerWatch = LedgerWatch(
            run: ledgerVerification, database: database, clock: clock, logger: logger, interval: .seconds(Int64(settings.ledgerVerifyInterval)),
            publishedDirectory: settings.checkpointDir, owner: instance
        )
    }

    /// Long-running loops the application runs beside the HTTP server.
    package var backgroundServices: [any Service] { [ledger, checkpointer, authFailures, gateway, webhookWorkers, sync, monitor, alertEvaluator, ledgerWatch, retention, reports] }
}

/// First-start setup: the `default` organization and its first admin token.
package enum Bootstrap {
    /// The slug of the organization created on a new database.
    package static let defaultSlug = "default"

    /// On a database with no API token at all, creates organization `default` (if missing) and one admin
    /// token, and returns that token; returns nil otherwise. Runs in one write transaction, so two
    /// instances starting together issue one token.
    package static func firstAdminToken(services: PortalServices) async throws -> String? {
        let token = try await services.database.write { db -> String? in
            if try await APITokenStore(db).any() { return nil }
            let (organization, _) = try await OrganizationStore(db).findOrCreate(
                slug: defaultSlug, name: "Default organization", id: services.ids.next(), at: services.clock.now()
            )
            let issued = try await services.tokens.issue(
                organizationID: organization.id, role: .admin, owner: "bootstrap",
                description: "first admin token, created on first start", actor: AuditEvent.system("bootstrap"), in: db
            )
            return issued.token
        }
        services.ledger.wake()
        return token
    }
}
