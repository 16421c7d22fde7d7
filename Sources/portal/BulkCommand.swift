import ArgumentParser
import Foundation
import Integrations
import PortalCore
import PortalServer

/// `portal integrations export|import|enable|disable|delete`: the bulk operations of the API
/// (`POST /portal/bulk-jobs`) from the command line, as the organization's administrator `cli`; each is one
/// job with its per-item results printed as JSON, ledgered as `bulk.completed`.
struct BulkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "integrations",
        abstract: "Bulk operations on integrations: export and import definitions (no secrets), enable, disable or delete by filter.",
        subcommands: [Export.self, Import.self, Enable.self, Disable.self, Delete.self]
    )

    struct Filter: ParsableArguments {
        @Option(help: "Organization slug.")
        var org: String

        @Option(help: "Only integrations of this type.")
        var type: String?

        @Option(help: "Only integrations in this status (active, inactive, error, pending).")
        var status: String?

        @Option(help: "Only these integrations (repeat the option).")
        var id: [String] = []

        var json: JSONValue {
            var m: [String: JSONValue] = [:]
            if let type { m["type"] = .string(type) }
            if let status { m["status"] = .string(status) }
            if !id.isEmpty { m["ids"] = .array(id.map(JSONValue.string)) }
            return .object(m)
        }
    }

    /// Runs one job and prints it (an export's document alone, unless `--job` asks for the whole job).
    static func run(org: String, body: JSONValue, options: LedgerOptions, documentOnly: Bool, out: String?) async throws {
        let settings = try options.settings()
        try await CLI.run {
            try await withPortalServices(settings, logger: CLI.quietLogger()) { services in
                let principal = try await DsarCommand.principal(org, services: services)
                let job = try await services.bulk.run(body, by: principal)
                let document = job.objectValue?["document"]
                let text: String = if documentOnly, let document { document.stringValue ?? document.sortedText + "\n" } else { job.sortedText + "\n" }
                if let out {
                    guard FileManager.default.createFile(atPath: out, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                        throw PortalError(.configuration, "cannot write \(out)")
                    }
                    FileHandle.standardError.write(Data("wrote \(out): \(job.objectValue?["counts"]?.sortedText ?? "")\n".utf8))
                } else {
                    FileHandle.standardOutput.write(Data(text.utf8))
                }
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Definitions of the organization's integrations, without secrets (credential field names only).")
        @OptionGroup var filter: Filter
        @Option(help: "json or yaml.") var format = "yaml"
        @Option(help: "Write the document to this file instead of standard output.") var out: String?
        @Flag(help: "Print the whole job (per-item results) instead of the document.") var job = false
        @OptionGroup var options: LedgerOptions
        func run() async throws {
            try await BulkCommand.run(
                org: filter.org, body: ["action": "export", "filter": filter.json, "format": .string(format)], options: options, documentOnly: !job, out: out
            )
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Creates the integrations of an export (YAML or JSON), pending until their credentials are given (and approved, if the policy says so)."
        )
        @Option(help: "Organization slug.") var org: String
        @Argument(help: "The exported document.") var file: String
        @OptionGroup var options: LedgerOptions
        func run() async throws {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw ValidationError("cannot read \(file)") }
            try await BulkCommand.run(org: org, body: ["action": "import", "document": .string(text)], options: options, documentOnly: false, out: nil)
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Makes the integrations the filter selects active.")
        @OptionGroup var filter: Filter
        @OptionGroup var options: LedgerOptions
        func run() async throws { try await BulkCommand.run(org: filter.org, body: ["action": "enable", "filter": filter.json], options: options, documentOnly: false, out: nil) }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Makes the integrations the filter selects inactive (no call goes out).")
        @OptionGroup var filter: Filter
        @OptionGroup var options: LedgerOptions
        func run() async throws { try await BulkCommand.run(org: filter.org, body: ["action": "disable", "filter": filter.json], options: options, documentOnly: false, out: nil) }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Deletes the integrations the filter selects (their OAuth tokens revoked first); the ledger keeps their history.")
        @OptionGroup var filter: Filter
        @OptionGroup var options: LedgerOptions
        func run() async throws { try await BulkCommand.run(org: filter.org, body: ["action": "delete", "filter": filter.json], options: options, documentOnly: false, out: nil) }
    }
}
