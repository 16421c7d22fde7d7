import Foundation
import HummingbirdTLS
package import Hummingbird
package import Logging
package import PortalCore
import ServiceLifecycle
import Storage
import Synchronization

/// What ``buildApplication(_:)`` needs besides the settings.
package struct ServerConfiguration: Sendable {
    package var settings: PortalSettings
    package var clock: any WallClock
    package var logger: Logger
    /// Create the `default` organization and an admin token on a database without tokens.
    package var bootstrap: Bool
    /// Receives the first admin token when one was created (the CLI prints it once).
    package var onBootstrapToken: (@Sendable (String) -> Void)?
    /// Receives the `/metrics` token when one was generated (first start without `PORTAL_METRICS_TOKEN`).
    package var onMetricsToken: (@Sendable (String) -> Void)?
    /// Receives the services once built (tests drive the alert evaluator and the flusher by hand).
    package var onServices: (@Sendable (PortalServices) -> Void)?

    package init(
        settings: PortalSettings, clock: any WallClock = SystemWallClock(), logger: Logger,
        bootstrap: Bool = true, onBootstrapToken: (@Sendable (String) -> Void)? = nil, onMetricsToken: (@Sendable (String) -> Void)? = nil
    ) {
        self.onMetricsToken = onMetricsToken
        self.settings = settings
        self.clock = clock
        self.logger = logger
        self.bootstrap = bootstrap
        self.onBootstrapToken = onBootstrapToken
    }
}

/// Builds the whole service: database, migrations (run before the listener starts), routes and
/// middleware. The one place the application is assembled, used by `portal serve` and by the tests.
package func buildApplication(_ configuration: ServerConfiguration) throws -> some ApplicationProtocol {
    let logger = configuration.logger
    let database = try Database(url: configuration.settings.databaseURL, logger: logger)
    let services = try PortalServices(
        settings: configuration.settings, database: database, clock: configuration.clock, logger: logger
    )
    configuration.onServices?(services)
    let (router, _) = try buildRouter(services: services)
    let schemaReady = Gate()
    // HTTPS when a certificate and key are given (both or neither).
    let settings = configuration.settings
    guard (settings.tlsCertificate == nil) == (settings.tlsKey == nil) else {
        throw PortalError(.configuration, "give both --tls-cert and --tls-key (PORTAL_TLS_CERT, PORTAL_TLS_KEY), or neither")
    }
    let tls = try settings.tlsCertificate.flatMap { certificate in try settings.tlsKey.map { try InboundTLS(certificate: certificate, key: $0, logger: logger) } }
    var app = Application(
        router: router,
        server: try tls.map { try .tls(.http1(), tlsConfiguration: $0.configuration) } ?? .http1(),
        configuration: .init(
            address: .hostname(configuration.settings.host, port: configuration.settings.port),
            serverName: "portal"
        ),
        // Shut down in reverse order: the HTTP server first, the ledger sequencer after every producer,
        // the database last.
        // The loops wait for the migrations: on a new database they would otherwise query tables that do
        // not exist yet (and log errors for it) before the schema is there.
        services: [database] + services.backgroundServices.map { AfterMigrations($0, gate: schemaReady) } + (tls.map { [TLSReloadService(tls: $0)] } ?? []),
        logger: logger
    )
    app.beforeServerStarts {
        try await Migrator(database: database, logger: logger).migrate()
        schemaReady.open()
        if configuration.bootstrap, let token = try await Bootstrap.firstAdminToken(services: services) {
            configuration.onBootstrapToken?(token)
        }
        if configuration.bootstrap, let token = try await services.metricsToken.ensure(at: services.clock.now()) {
            configuration.onMetricsToken?(token)
        }
    }
    return app
}

/// The router with every route and middleware, and the table of routes it serves.
package func buildRouter(services: PortalServices) throws -> (Router<PortalRequestContext>, [APIRoute]) {
    let router = Router(context: PortalRequestContext.self)
    router.add(middleware: ClientAddressMiddleware(trusted: services.trustedProxies))
    if services.servesTLS { router.add(middleware: HSTSMiddleware()) }
    router.add(middleware: RequestLogMiddleware())
    router.add(middleware: BodyLimitMiddleware(limit: services.maxBodyBytes))
    let table = RouteTable(audit: services.ledger, failures: services.authFailures)
    let authentication = AuthenticationMiddleware(authority: services.tokens, failures: services.authFailures, access: services.apiGuard)
    let portal = router.group("/portal").add(middleware: authentication)
    let ledger = router.group("/ledger").add(middleware: authentication)
    SystemRoutes(database: services.database).register(on: router, portal: portal, table: table)
    TokenRoutes(
        clock: services.clock, database: services.database, ledger: services.ledger, maxBodyBytes: services.maxBodyBytes,
        quotas: services.quotas, tokens: services.tokens
    ).register(on: portal, table: table)
    let integrationRoutes = IntegrationRoutes(
        catalog: services.catalog, database: services.database, gateway: services.gateway, integrations: services.integrations,
        logger: services.logger, maxBodyBytes: services.maxBodyBytes, monitor: services.monitor, publicURL: services.publicURL,
        webhooks: services.webhooks
    )
    integrationRoutes.register(on: portal, table: table)
    integrationRoutes.registerCallback(on: router, table: table)
    GovernanceRoutes(
        access: services.apiGuard, integrations: services.integrations, maxBodyBytes: services.maxBodyBytes, reviews: services.reviews, bulk: services.bulk
    ).register(on: portal, table: table)
    let webhookRoutes = WebhookRoutes(maxBodyBytes: services.maxBodyBytes, publicURL: services.publicURL, webhooks: services.webhooks)
    webhookRoutes.register(on: portal, table: table)
    SyncRoutes(maxBodyBytes: services.maxBodyBytes, sync: services.sync).register(on: portal, table: table)
    MonitoringRoutes(
        alertReceivers: services.alertReceivers, alertRules: services.alertRules, clock: services.clock, database: services.database,
        integrations: services.integrations, maxBodyBytes: services.maxBodyBytes, metricsToken: services.metricsToken,
        monitor: services.monitor
    ).register(on: router, portal: portal, table: table)
    SubjectRoutes(
        maxBodyBytes: services.maxBodyBytes, processingRegister: services.processingRegister, reports: services.reports,
        retention: services.retention, subjects: services.subjects
    ).register(on: portal, table: table)
    webhookRoutes.registerReceiver(on: router, table: table)
    LedgerRoutes(
        checkpointer: services.checkpointer, database: services.database, ledgerReader: services.ledgerReader,
        verification: services.ledgerVerification, publishedDirectory: services.checkpointDirectory
    ).register(on: ledger, table: table)
    // The web console: its pages call the routes above in process, as the signed-in token.
    let console = ConsoleAPI()
    ConsoleRoutes(
        api: console, sessions: services.consoleSessions, view: try ConsoleView(), clock: services.clock, failures: services.authFailures,
        access: services.apiGuard, secureCookies: services.publicURL.hasPrefix("https://"), maxBodyBytes: services.maxBodyBytes
    ).register(on: router)
    // Added last, so it wraps only the not-found responder: a known path with another method is a 405.
    router.add(middleware: MethodNotAllowedMiddleware(routes: table.routes))
    console.attach(router.buildResponder())
    return (router, table.routes)
}

/// A one-shot gate: open once the schema is migrated.
final class Gate: Sendable {
    private let isOpen = Atomic<Bool>(false)

    func open() { isOpen.store(true, ordering: .releasing) }

    /// Returns once the gate is open; throws when the task is cancelled (shutdown) first.
    func wait() async throws {
        while !isOpen.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(10)) }
    }
}

/// A background service that starts once the schema is migrated (or ends at shutdown if it never is).
struct AfterMigrations: Service {
    let inner: any Service
    let gate: Gate

    init(_ inner: any Service, gate: Gate) {
        self.inner = inner
        self.gate = gate
    }

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown { try await gate.wait() }
        } catch {
            return
        }
        try await inner.run()
    }
}
