import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals
import PortalCore
import PortalServer
import Storage

/// `portal serve`: runs the HTTP service until SIGTERM or SIGINT, then shuts down gracefully.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the service (migrates the database first).")

    @Option(help: "Address to listen on (PORTAL_HOST; default 127.0.0.1).")
    var host: String?

    @Option(help: "Port to listen on, 0 for any free port (PORTAL_PORT; default 8080).")
    var port: Int?

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var keys: MasterKeyOptions

    @OptionGroup var publicURL: PublicURLOptions

    @Option(name: .customLong("checkpoint-dir"), help: "Publish every signed checkpoint to this directory, outside the database (PORTAL_CHECKPOINT_DIR).")
    var checkpointDir: String?

    @Option(name: .customLong("max-body-bytes"), help: "Largest API request body in bytes (PORTAL_MAX_BODY_BYTES; default 1048576).")
    var maxBodyBytes: Int?

    @Option(name: .customLong("outbound-allow"), help: "Comma-separated hosts, addresses or CIDRs the gateway may call although internal, also over plain HTTP (PORTAL_OUTBOUND_ALLOW).")
    var outboundAllow: String?

    @Option(name: .customLong("catalog"), help: "A provider catalog YAML file used instead of the built-in one (PORTAL_CATALOG).")
    var catalog: String?

    @Option(name: .customLong("alert-rules"), help: "An alert rule YAML file used instead of the built-in rules (PORTAL_ALERT_RULES).")
    var alertRules: String?

    @Option(name: .customLong("ledger-verify-interval"), help: "How often every ledger is verified, e.g. 1h (PORTAL_LEDGER_VERIFY_INTERVAL; default 1h).")
    var ledgerVerifyInterval: String?

    @Option(name: .customLong("retention-interval"), help: "How often retention periods are applied, e.g. 1h (PORTAL_RETENTION_INTERVAL; default 1h).")
    var retentionInterval: String?

    @Option(name: .customLong("monitoring"), help: "on or off: feed the metrics collector (PORTAL_MONITORING; default on; off only to measure its cost).")
    var monitoring: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (PORTAL_LOG_LEVEL; default info).")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "json or text (PORTAL_LOG_FORMAT; default json).")
    var logFormat: String?

    func run() async throws {
        var settings = try CLI.settings()
        if let host { settings.host = host }
        if let port { settings.port = port }
        database.apply(to: &settings)
        try keys.apply(to: &settings)
        publicURL.apply(to: &settings)
        if let checkpointDir { settings.checkpointDir = checkpointDir }
        if let maxBodyBytes { settings.maxBodyBytes = maxBodyBytes }
        if let outboundAllow { settings.outboundAllow = outboundAllow }
        if let catalog { settings.catalogPath = catalog }
        if let alertRules { settings.alertRulesPath = alertRules }
        if let ledgerVerifyInterval {
            guard let seconds = try? DurationText.seconds(ledgerVerifyInterval, field: "--ledger-verify-interval"), seconds >= 60 else {
                throw ValidationError("--ledger-verify-interval must be a duration of at least 1m, such as 1h")
            }
            settings.ledgerVerifyInterval = seconds
        }
        if let retentionInterval {
            guard let seconds = try? DurationText.seconds(retentionInterval, field: "--retention-interval"), seconds >= 60 else {
                throw ValidationError("--retention-interval must be a duration of at least 1m, such as 1h")
            }
            settings.retentionInterval = seconds
        }
        if let monitoring {
            guard ["on", "off"].contains(monitoring) else { throw ValidationError("--monitoring must be on or off") }
            settings.monitoring = monitoring == "on"
        }
        if let logLevel { settings.logLevel = logLevel }
        if let logFormat { settings.logFormat = logFormat }
        guard let level = Logger.Level(rawValue: settings.logLevel) else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard ["json", "text"].contains(settings.logFormat) else { throw ValidationError("--log-format must be json or text") }
        let format = settings.logFormat
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = format == "json"
                ? JSONLogHandler(label: label)
                : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "portal")
        logger.logLevel = level
        let consoleURL = settings.effectivePublicURL
        let configuration = ServerConfiguration(settings: settings, logger: logger, onBootstrapToken: { token in
            FileHandle.standardOutput.write(Data("""
                Created organization '\(Bootstrap.defaultSlug)' and its first admin token (shown once, keep it safe):

                  \(token)

                Try: curl -H "Authorization: Bearer \(token)" \(consoleURL)/portal/whoami

                """.utf8))
        }, onMetricsToken: { token in
            FileHandle.standardOutput.write(Data("""
                Generated the /metrics token for Prometheus (shown once; set PORTAL_METRICS_TOKEN to choose your own):

                  \(token)

                Try: curl -H "Authorization: Bearer \(token)" \(consoleURL)/metrics

                """.utf8))
        })
        MemoryReturn.configure()
        try await CLI.run {
            let app = try buildApplication(configuration)
            // SIGTERM or SIGINT start a graceful shutdown: requests in flight finish, the loops drain. If that
            // takes longer than the grace period (a database that is down makes every drain wait), the
            // services are cancelled, which ends their waits; the process always exits.
            var group = ServiceGroupConfiguration(
                services: [.init(service: app), .init(service: MemoryReturn())], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
            )
            group.maximumGracefulShutdownDuration = .seconds(30)
            group.maximumCancellationDuration = .seconds(15)
            try await ServiceGroup(configuration: group).run()
        }
    }
}

/// `portal migrate`: brings the schema up to date and exits.
struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Apply pending database migrations.")

    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        var settings = try CLI.settings()
        database.apply(to: &settings)
        let logger = CLI.quietLogger()
        let url = settings.databaseURL
        try await CLI.run {
            try await Database.withDatabase(url: url, logger: logger) { db in
                let applied = try await Migrator(database: db, logger: logger).migrate()
                let version = try await Migrator(database: db, logger: logger).currentVersion()
                print(applied.isEmpty
                    ? "schema is up to date (version \(version))"
                    : "applied migrations \(applied.map(String.init).joined(separator: ", ")); schema version \(version)")
            }
        }
    }
}
