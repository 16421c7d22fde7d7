import ArgumentParser
import Foundation
import Logging
import PortalCore

/// The `portal` command-line tool.
@main
struct Portal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portal",
        abstract: "The integration and evidence service of the privacy portal.",
        discussion: """
            Every option can also be set with its PORTAL_* environment variable (for example --database and
            PORTAL_DATABASE_URL); a flag wins over the variable.
            """,
        subcommands: [Serve.self, Migrate.self, TokenCommand.self, KeysCommand.self, LedgerCommand.self, DsarCommand.self, ReportCommand.self]
    )
}

/// `--database`, shared by every command that opens the database.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("database"), help: "Database URL: sqlite:///path, sqlite://relative/path or postgres://user:pass@host:port/db (PORTAL_DATABASE_URL; default sqlite://var/portal.sqlite).")
    var url: String?

    func apply(to settings: inout PortalSettings) {
        if let url { settings.databaseURL = url }
    }
}

/// `--master-key` and `--master-key-file`, for commands that read or write secrets.
struct MasterKeyOptions: ParsableArguments {
    @Option(name: .customLong("master-key"), help: "Base64 of the 32-byte master key (PORTAL_MASTER_KEY).")
    var masterKey: String?

    @Option(name: .customLong("master-key-file"), help: "File of base64 master keys, newest first (PORTAL_MASTER_KEY_FILE).")
    var masterKeyFile: String?

    func apply(to settings: inout PortalSettings) {
        if let masterKey { settings.masterKey = masterKey }
        if let masterKeyFile { settings.masterKeyFile = masterKeyFile }
    }
}

/// `--public-url`, which names ledger origins (and so the verifier keys' names).
struct PublicURLOptions: ParsableArguments {
    @Option(name: .customLong("public-url"), help: "URL the portal is reached at; names ledger origins and webhook URLs (PORTAL_PUBLIC_URL; default http://localhost:PORT).")
    var publicURL: String?

    func apply(to settings: inout PortalSettings) {
        if let publicURL { settings.publicURL = publicURL }
    }
}

/// Helpers every command uses.
enum CLI {
    /// The ledger actor of changes made from the command line.
    static let actor = "system:cli"

    /// Settings from the environment; a configuration error exits with its message.
    static func settings() throws -> PortalSettings {
        do {
            return try PortalSettings.fromEnvironment()
        } catch {
            throw ValidationError(error.message)
        }
    }

    /// A logger for commands other than `serve`: warnings and errors only, to standard error.
    static func quietLogger() -> Logger {
        var logger = Logger(label: "portal")
        logger.logLevel = .warning
        return logger
    }

    /// Rewrites the current line of standard error (progress on a terminal).
    static func progress(_ text: String) {
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + text).utf8))
    }

    /// Writes a line to standard error (human messages; standard output carries only results).
    static func note(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Runs `body`, turning a ``PortalError`` into a clean message and exit code 1.
    static func run(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as PortalError where error.code == .unavailable {
            // Which database, and why: the message names the reason, the context the location.
            note("error: \(error.operatorContext.map { "\($0): " } ?? "")\(error.message)")
            throw ExitCode.failure
        } catch let error as PortalError {
            note("error: \(error.message)")
            for field in error.fieldErrors { note("  \(field.pointer): \(field.message)") }
            throw ExitCode.failure
        }
    }
}
