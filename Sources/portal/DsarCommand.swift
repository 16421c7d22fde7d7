import ArgumentParser
import Compliance
import Foundation
import PortalCore
import PortalServer
import Storage

/// `portal dsar export|erase`: data-subject requests from the machine that holds the database (GDPR Art. 15,
/// 17, 20), the same as `POST /portal/subjects/{id}/export|erase`, ledgered with the CLI as actor.
struct DsarCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dsar",
        abstract: "Data-subject requests: export what the portal holds about a person, or erase it.",
        subcommands: [Export.self, Erase.self]
    )

    /// The organization's principal for the CLI (an admin of that organization).
    static func principal(_ slug: String, services: PortalServices) async throws -> Principal {
        guard let organization = try await services.database.read({ db in try await OrganizationStore(db).find(slug: slug) }) else {
            throw PortalError.notFound("organization '\(slug)'")
        }
        return Principal(tokenID: UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)), organizationID: organization.id, organizationSlug: organization.slug, role: .admin, owner: "cli")
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Everything held about a data subject, and its disclosures to third parties, as JSON.")

        @Option(help: "Organization slug.")
        var org: String

        @Option(help: "The subject's id as the integrations know it (an email, a user id).")
        var subject: String

        @Option(help: "Write the JSON to this file instead of standard output.")
        var out: String?

        @OptionGroup var options: LedgerOptions

        func run() async throws {
            let settings = try options.settings()
            let (slug, subjectID, path) = (org, subject, out)
            try await CLI.run {
                try await withPortalServices(settings, logger: CLI.quietLogger()) { services in
                    let principal = try await DsarCommand.principal(slug, services: services)
                    let export = try await services.subjects.export(subjectID: subjectID, by: principal, actor: CLI.actor)
                    let text = export.sortedText + "\n"
                    if let path {
                        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                            throw PortalError(.configuration, "cannot write \(path)")
                        }
                        FileHandle.standardError.write(Data("wrote \(path)\n".utf8))
                    } else {
                        FileHandle.standardOutput.write(Data(text.utf8))
                    }
                }
            }
        }
    }

    struct Erase: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Erase a data subject: records deleted, its key destroyed, recipients asked to delete.")

        @Option(help: "Organization slug.")
        var org: String

        @Option(help: "The subject's id as the integrations know it (an email, a user id).")
        var subject: String

        @OptionGroup var options: LedgerOptions

        func run() async throws {
            let settings = try options.settings()
            let (slug, subjectID) = (org, subject)
            try await CLI.run {
                try await withPortalServices(settings, logger: CLI.quietLogger()) { services in
                    let principal = try await DsarCommand.principal(slug, services: services)
                    let erasure = try await services.subjects.erase(subjectID: subjectID, by: principal, actor: CLI.actor)
                    FileHandle.standardOutput.write(JSONOutput.encode(erasure) + Data("\n".utf8))
                }
            }
        }
    }
}
