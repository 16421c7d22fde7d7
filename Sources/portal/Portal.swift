import ArgumentParser
import Foundation
import Integrations
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
        subcommands: [Serve.self, Migrate.self, TokenCommand.self, KeysCommand.self, LedgerCommand.self, DsarCommand.self, ReportCommand.self, BulkCommand.self]
    )
}

/// `--database`, shared by every command that opens the database.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("database"), help: ArgumentHelp(Setting.help("--database")))
    var url: String?

    func apply(to settings: inout PortalSettings) throws {
        do { try settings.apply(flag: "--database", url) } catch { throw ValidationError(error.message) }
    }
}

/// `--master-key-file` and `--master-key-stdin`, for commands that read or write secrets.
///
/// Key material never comes from a flag's value: the arguments of a process are readable by every user of
/// the machine (`ps`, `/proc/PID/cmdline`) and stay in shell history. `--master-key VALUE` is refused with
/// the forms to use instead (a file, standard input, or `PORTAL_MASTER_KEY`).
struct MasterKeyOptions: ParsableArguments {
    @Option(name: .customLong("master-key-file"), help: "File of base64 master keys, newest first (PORTAL_MASTER_KEY_FILE); - reads one key from standard input.")
    var masterKeyFile: String?

    @Flag(name: .customLong("master-key-stdin"), help: "Read the base64 master key from standard input (one key, as in PORTAL_MASTER_KEY).")
    var masterKeyStdin = false

    /// Refused: only here to answer with the forms to use instead.
    @Option(name: .customLong("master-key"), help: .hidden)
    var masterKeyInArguments: String?

    func validate() throws {
        if masterKeyInArguments != nil {
            throw ValidationError(KeyInput.refusal(flag: "--master-key", instead: "--master-key-file PATH, --master-key-stdin (portal serve --master-key-stdin < key.b64) or the PORTAL_MASTER_KEY variable"))
        }
        if masterKeyStdin, masterKeyFile != nil {
            throw ValidationError("give the master key with one of --master-key-file and --master-key-stdin")
        }
    }

    /// Whether the master key comes from standard input.
    var readsStandardInput: Bool { masterKeyStdin || masterKeyFile == "-" }

    /// Applies the options: a key from standard input takes the place of `PORTAL_MASTER_KEY`; a key file is
    /// used when neither is given (as before, `make run` passes a key file that `PORTAL_MASTER_KEY` overrides).
    func apply(to settings: inout PortalSettings) throws {
        if readsStandardInput {
            settings.masterKey = try KeyInput.standardInputKey(source: "standard input (--master-key-stdin)")
            settings.masterKeyFile = nil
        } else if let masterKeyFile {
            settings.masterKeyFile = masterKeyFile
        }
    }
}

/// Key material read from files and standard input, never from arguments.
enum KeyInput {
    /// The message for a flag that was given key material in the arguments.
    static func refusal(flag: String, instead: String) -> String {
        "\(flag) is not accepted: a key in the command line is visible to every user of this machine (ps, /proc) and stays in shell history. "
            + "Use \(instead). Treat the key you passed as exposed."
    }

    /// The one base64 master key on standard input, checked; `source` names it in errors.
    static func standardInputKey(source: String) throws -> String {
        if isatty(0) == 1 { CLI.note("reading a base64 master key from standard input (end with Ctrl-D)") }
        let data = FileHandle.standardInput.readDataToEndOfFile()
        guard let text = String(data: data, encoding: .utf8) else { throw ValidationError("\(source) is not UTF-8 text") }
        do {
            return try MasterKeyRing.singleKey(in: text, source: source)
        } catch {
            throw ValidationError(error.message)
        }
    }

    /// The one base64 master key in the file at `path` (`-`: standard input), checked.
    static func fileKey(_ path: String, option: String) throws -> String {
        if path == "-" { return try standardInputKey(source: "standard input (\(option) -)") }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("cannot read \(option) \(path)") }
        do {
            return try MasterKeyRing.singleKey(in: text, source: "\(option) \(path)")
        } catch {
            throw ValidationError(error.message)
        }
    }
}

/// `--public-url`, which names ledger origins (and so the verifier keys' names).
struct PublicURLOptions: ParsableArguments {
    @Option(name: .customLong("public-url"), help: ArgumentHelp(Setting.help("--public-url")))
    var publicURL: String?

    func apply(to settings: inout PortalSettings) throws {
        do { try settings.apply(flag: "--public-url", publicURL) } catch { throw ValidationError(error.message) }
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
