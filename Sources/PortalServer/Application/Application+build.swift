import Foundation
public import Hummingbird
public import Logging
public import PortalCore
import Storage

/// What ``buildApplication(_:)`` needs besides the settings.
public struct ServerConfiguration: Sendable {
    public var settings: PortalSettings
    public var clock: any WallClock
    public var logger: Logger
    /// Create the `default` organization and an admin token on a database without tokens.
    public var bootstrap: Bool
    /// Receives the first admin token when one was created (the CLI prints it once).
    public var onBootstrapToken: (@Sendable (String) -> Void)?

    public init(
        settings: PortalSettings, clock: any WallClock = SystemWallClock(), logger: Logger,
        bootstrap: Bool = true, onBootstrapToken: (@Sendable (String) -> Void)? = nil
    ) {
        self.settings = settings
        self.clock = clock
        self.logger = logger
        self.bootstrap = bootstrap
        self.onBootstrapToken = onBootstrapToken
    }
}

/// Builds the whole service: database, migrations (run before the listener starts), routes and
/// middleware. The one place the application is assembled, used by `portal serve` and by the tests.
public func buildApplication(_ configuration: ServerConfiguration) throws -> some ApplicationProtocol {
    let logger = configuration.logger
    let database = try Database(url: configuration.settings.databaseURL, logger: logger)
    let services = try PortalServices(
        settings: configuration.settings, database: database, clock: configuration.clock, logger: logger
    )
    let (router, _) = buildRouter(services: services)
    var app = Application(
        router: router,
        configuration: .init(
            address: .hostname(configuration.settings.host, port: configuration.settings.port),
            serverName: "portal"
        ),
        // Shut down in reverse order: the HTTP server first, the ledger sequencer after every producer,
        // the database last.
        services: [database] + services.backgroundServices,
        logger: logger
    )
    app.beforeServerStarts {
        try await Migrator(database: database, logger: logger).migrate()
        if configuration.bootstrap, let token = try await Bootstrap.firstAdminToken(services: services) {
            configuration.onBootstrapToken?(token)
        }
    }
    return app
}

/// The router with every route and middleware, and the table of routes it serves.
public func buildRouter(services: PortalServices) -> (Router<PortalRequestContext>, [APIRoute]) {
    let router = Router(context: PortalRequestContext.self)
    router.add(middleware: RequestLogMiddleware())
    router.add(middleware: BodyLimitMiddleware(limit: services.maxBodyBytes))
    let table = RouteTable(audit: services.ledger)
    let authentication = AuthenticationMiddleware(authority: services.tokens, failures: services.authFailures)
    let portal = router.group("/portal").add(middleware: authentication)
    let ledger = router.group("/ledger").add(middleware: authentication)
    SystemRoutes(services: services).register(on: router, portal: portal, table: table)
    TokenRoutes(services: services).register(on: portal, table: table)
    IntegrationRoutes(services: services).register(on: portal, table: table)
    IntegrationRoutes(services: services).registerCallback(on: router, table: table)
    LedgerRoutes(services: services).register(on: ledger, table: table)
    return (router, table.routes)
}
