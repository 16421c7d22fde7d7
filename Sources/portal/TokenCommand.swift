import ArgumentParser
import Foundation
import Ledger
import Logging
import PortalCore
import PortalServer
import Storage

/// `portal token create|list|revoke`: API tokens, managed from the machine the service runs on.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create, list and revoke API tokens.",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a token; prints only the token on standard output.",
            discussion: "The organization is created on first use. The token is shown once and cannot be retrieved later."
        )

        @Option(help: "Organization slug (lowercase letters, digits and '-').")
        var org: String

        @Option(help: "admin, operator, compliance or auditor.")
        var role: String

        @Option(help: "The person the token is issued to.")
        var owner: String = "cli"

        @Option(name: .customLong("expires-in"), help: "Lifetime such as 90m, 12h, 30d or 2w, or never; PORTAL_TOKEN_LIFETIME (default 90d) when omitted.")
        var expiresIn: String?

        @Option(help: "What the token is for.")
        var description: String?

        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            guard let role = Role(rawValue: role) else {
                throw ValidationError("--role must be one of \(Role.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var settings = try CLI.settings()
            try database.apply(to: &settings)
            let logger = CLI.quietLogger()
            let clock = SystemWallClock()
            try await CLI.run {
                try Organization.validateSlug(org)
                let lifetime = try expiresIn.map { text throws -> TimeInterval? in
                    guard text != "never" else { return nil }
                    let seconds = try DurationText.seconds(text, field: "--expires-in")
                    guard seconds <= Timestamp.maxLifetime else { throw ValidationError("--expires-in must be at most 10 years (3660d), or never") }
                    return seconds
                } ?? settings.quotas.tokenLifetime
                let expiresAt = lifetime.map { clock.now() + $0 }
                try await withAuditedDatabase(settings, logger: logger, clock: clock) { db, ledger in
                    let authority = APITokenAuthority(database: db, audit: ledger, clock: clock)
                    let (token, created) = try await db.write { tx in
                        let (organization, created) = try await OrganizationStore(tx).findOrCreate(
                            slug: org, name: org, id: IdentifierGenerator.shared.next(), at: clock.now()
                        )
                        let issued = try await authority.issue(
                            organizationID: organization.id, role: role, owner: owner,
                            description: description, expiresAt: expiresAt, actor: CLI.actor, in: tx
                        )
                        return (issued.token, created)
                    }
                    if created { CLI.note("created organization '\(org)'") }
                    print(token)
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their values).")

        @Option(help: "Only this organization's tokens.")
        var org: String?

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            var settings = try CLI.settings()
            try database.apply(to: &settings)
            let logger = CLI.quietLogger()
            let asJSON = json
            let orgFilter = org
            try await CLI.run {
                try await Database.withDatabase(url: settings.databaseURL, logger: logger) { db in
                    try await Migrator(database: db, logger: logger).migrate()
                    let views = try await db.read { tx -> [APITokenView] in
                        let organizations = try await OrganizationStore(tx).list()
                        let slugs = Dictionary(uniqueKeysWithValues: organizations.map { ($0.id, $0.slug) })
                        var organizationID: UUID?
                        if let orgFilter {
                            guard let match = organizations.first(where: { $0.slug == orgFilter }) else {
                                throw PortalError.notFound("organization '\(orgFilter)'")
                            }
                            organizationID = match.id
                        }
                        let records = try await APITokenStore(tx).list(organizationID: organizationID, limit: 100_000, before: nil)
                        let now = SystemWallClock().now()
                        return records.map { APITokenView($0, organizationSlug: slugs[$0.organizationID] ?? "?", now: now) }
                    }
                    if asJSON {
                        print(String(decoding: JSONOutput.encode(views), as: UTF8.self))
                        return
                    }
                    print(["ID", "ORG", "ROLE", "OWNER", "STATE", "CREATED", "EXPIRES"].joined(separator: "\t"))
                    for v in views {
                        print([v.id, v.organization, v.role, v.owner, v.state, v.createdAt, v.expiresAt ?? "-"].joined(separator: "\t"))
                    }
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by its id; it stops working at once.")

        @Argument(help: "The token id (from 'portal token list').")
        var id: String

        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            guard let tokenID = UUID(uuidString: id) else { throw ValidationError("'\(id)' is not a token id") }
            var settings = try CLI.settings()
            try database.apply(to: &settings)
            let logger = CLI.quietLogger()
            try await CLI.run {
                try await withAuditedDatabase(settings, logger: logger) { db, ledger in
                    let authority = APITokenAuthority(database: db, audit: ledger)
                    let outcome = try await db.write { tx -> String in
                        guard let record = try await APITokenStore(tx).find(id: tokenID) else { throw PortalError.notFound("token") }
                        if record.revokedAt != nil { return "already revoked" }
                        _ = try await authority.revoke(id: tokenID, organizationID: nil, actor: CLI.actor, in: tx)
                        return "revoked"
                    }
                    print("\(tokenID.uuidString.lowercased()) \(outcome)")
                }
            }
        }
    }
}
