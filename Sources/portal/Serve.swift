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

    @Option(name: .customLong("host"), help: ArgumentHelp(Setting.help("--host")))
    var host: String?

    @Option(name: .customLong("port"), help: ArgumentHelp(Setting.help("--port")))
    var port: String?

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var keys: MasterKeyOptions

    @OptionGroup var publicURL: PublicURLOptions

    @Option(name: .customLong("checkpoint-dir"), help: ArgumentHelp(Setting.help("--checkpoint-dir")))
    var checkpointDir: String?

    @Option(name: .customLong("max-body-bytes"), help: ArgumentHelp(Setting.help("--max-body-bytes")))
    var maxBodyBytes: String?

    @Option(name: .customLong("outbound-allow"), help: ArgumentHelp(Setting.help("--outbound-allow")))
    var outboundAllow: String?

    @Option(name: .customLong("catalog"), help: ArgumentHelp(Setting.help("--catalog")))
    var catalog: String?

    @Option(name: .customLong("alert-rules"), help: ArgumentHelp(Setting.help("--alert-rules")))
    var alertRules: String?

    @Option(name: .customLong("ledger-verify-interval"), help: ArgumentHelp(Setting.help("--ledger-verify-interval")))
    var ledgerVerifyInterval: String?

    @Option(name: .customLong("retention-interval"), help: ArgumentHelp(Setting.help("--retention-interval")))
    var retentionInterval: String?

    @Option(name: .customLong("monitoring"), help: ArgumentHelp(Setting.help("--monitoring")))
    var monitoring: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp(Setting.help("--log-level")))
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: ArgumentHelp(Setting.help("--log-format")))
    var logFormat: String?

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp(Setting.help("--tls-cert")))
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp(Setting.help("--tls-key")))
    var tlsKey: String?

    /// The flags of this command and their values, applied through ``Setting/all`` (the same checks as
    /// the variables).
    var flags: [(String, String?)] {
        [
            ("--host", host), ("--port", port), ("--checkpoint-dir", checkpointDir), ("--max-body-bytes", maxBodyBytes),
            ("--outbound-allow", outboundAllow), ("--catalog", catalog), ("--alert-rules", alertRules),
            ("--ledger-verify-interval", ledgerVerifyInterval), ("--retention-interval", retentionInterval), ("--monitoring", monitoring),
            ("--log-level", logLevel), ("--log-format", logFormat), ("--tls-cert", tlsCert), ("--tls-key", tlsKey),
        ]
    }

    func run() async throws {
        var settings = try CLI.settings()
        try database.apply(to: &settings)
        try keys.apply(to: &settings)
        try publicURL.apply(to: &settings)
        for (flag, value) in flags {
            do { try settings.apply(flag: flag, value) } catch { throw ValidationError(error.message) }
        }
        // Checked by the setting (flag or variable): one of Logger.Level's names.
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
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

                Sign in to the web console at \(consoleURL)/console/ with it, or
                try: curl -H "Authorization: Bearer \(token)" \(consoleURL)/portal/whoami

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
        try database.apply(to: &settings)
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
