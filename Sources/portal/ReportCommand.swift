import ArgumentParser
import Compliance
import Foundation
import Ledger
import Monitoring
import PortalCore
import PortalServer
import Storage

/// `portal report soc2|gdpr|iso27001|verify`: signed, reproducible evidence bundles cut from the ledger (DESIGN 4.5).
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Evidence bundles: SOC 2, GDPR and ISO/IEC 27001 populations cut from the ledger, signed; and their offline verification.",
        subcommands: [Soc2.self, Gdpr.self, Iso27001.self, Verify.self, Keygen.self, Open.self]
    )

    struct BundleOptions: ParsableArguments {
        @Option(help: "Organization slug.")
        var org: String

        @Option(help: "First day of the period, YYYY-MM-DD (UTC, inclusive).")
        var from: String

        @Option(help: "Last day of the period, YYYY-MM-DD (UTC, inclusive).")
        var to: String

        @Option(help: "Cut from the checkpoint of this tree size (default: a checkpoint of the ledger as it is now).")
        var at: Int64?

        @Option(help: "The bundle to write (.tar.zst).")
        var out: String

        @Option(help: "Directory of the control mappings (default: reports/mappings).")
        var mappings: String = "reports/mappings"

        @Option(help: "Directory of the report templates (default: reports/templates).")
        var templates: String = "reports/templates"

        @Option(name: .customLong("seal-to"), help: "Seal the bundle to the auditor's X-Wing public key in this file (HPKE); they open it with 'portal report open'.")
        var sealTo: String?

        @OptionGroup var options: LedgerOptions
    }

    static func build(kind: String, _ o: BundleOptions) async throws {
        let settings = try o.options.settings()
        let period = try ProcessingRegister.period(from: o.from, to: o.to)
        let (slug, at, mappings, templates) = (o.org, o.at, o.mappings, o.templates)
        var sealKey: String?
        if let sealTo = o.sealTo {
            guard let text = try? String(contentsOfFile: sealTo, encoding: .utf8) else { throw ValidationError("cannot read --seal-to \(sealTo)") }
            sealKey = text
        }
        let path = sealKey == nil ? o.out : o.out + ".unsealed"
        let finalPath = o.out
        try await CLI.run {
            try await withPortalServices(settings, logger: CLI.quietLogger()) { services in
                let checkpoint: LedgerCheckpointRow
                let ledger: (id: UUID, slug: String)
                if let at {
                    guard let found = try await LedgerCommand.ledgers(slug, in: services.database).first else { throw PortalError.notFound("organization '\(slug)'") }
                    ledger = found
                    guard let row = try await services.database.read({ db in try await LedgerStore(db).checkpoints(found.id) }).first(where: { $0.size == at }) else {
                        throw PortalError(.validationFailed, "the ledger of '\(slug)' has no stored checkpoint of size \(at)")
                    }
                    checkpoint = row
                } else {
                    let fresh = try await LedgerCommand.freshCheckpoint(slug, services: services)
                    ledger = (fresh.id, fresh.slug)
                    checkpoint = fresh.checkpoint
                }
                let temporary = path + ".partial"
                guard FileManager.default.createFile(atPath: temporary, contents: nil), let handle = FileHandle(forWritingAtPath: temporary) else {
                    throw PortalError(.configuration, "cannot write \(path)")
                }
                let terminal = isatty(STDERR_FILENO) == 1
                let monitor = services.monitor
                let result = try await EvidenceBundler(
                    database: services.database, checkpointer: services.checkpointer,
                    serviceLevels: { organization, start, end in try await monitor.attainment(organizationID: organization, start: start, end: end) }
                ).build(
                    kind: kind, organizationID: ledger.id, slug: ledger.slug, start: period.start, end: period.end, checkpoint: checkpoint,
                    mappings: mappings, templates: templates, progress: { done in if terminal { CLI.progress("\(kind): \(done) of \(checkpoint.size) entries") } }
                ) { chunk in try handle.write(contentsOf: chunk) }
                if terminal { CLI.progress("") }
                try handle.synchronize()
                try handle.close()
                guard rename(temporary, path) == 0 else { throw PortalError(.configuration, "cannot move the bundle to \(path)") }
                if let sealKey {
                    defer { try? FileManager.default.removeItem(atPath: path) }
                    try SealedBundle.seal(input: path, publicKey: sealKey, output: finalPath)
                }
                try await services.ledger.append([AuditEvent(
                    organizationID: ledger.id, type: .reportExported, actor: CLI.actor,
                    data: [
                        "kind": .string(kind), "from": .string(Timestamp.rfc3339(period.start)), "to": .string(Timestamp.rfc3339(period.end)),
                        "manifestDigest": .string(result.manifestDigest), "checkpointSize": .int(result.checkpointSize),
                    ],
                    time: services.clock.now()
                )])
                let counts = result.rows.keys.sorted().map { "\($0) \(result.rows[$0]!)" }.joined(separator: ", ")
                print("wrote \(finalPath)\(sealKey == nil ? "" : " (sealed)"): \(kind) evidence of \(ledger.slug), cut at tree size \(result.checkpointSize); rows: \(counts); manifest sha256 \(result.manifestDigest)")
            }
        }
    }

    struct Soc2: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "SOC 2 evidence: one population per criterion, cut from the ledger, signed.")
        @OptionGroup var bundle: BundleOptions
        func run() async throws { try await ReportCommand.build(kind: "soc2", bundle) }
    }

    struct Gdpr: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "GDPR evidence: the Art. 30 record, recipients, transfers, data-subject requests and retention, signed.")
        @OptionGroup var bundle: BundleOptions
        func run() async throws { try await ReportCommand.build(kind: "gdpr", bundle) }
    }

    struct Iso27001: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "iso27001",
            abstract: "ISO/IEC 27001:2022 Annex A evidence: one population per control (A.5.15 to A.8.24), with OSCAL, cut from the ledger, signed."
        )
        @OptionGroup var bundle: BundleOptions
        func run() async throws { try await ReportCommand.build(kind: "iso27001", bundle) }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a bundle offline: the signature of SHA256SUMS, every file's hash, the cited checkpoint.")

        @Argument(help: "The bundle (.tar.zst).")
        var file: String

        @Option(name: .customLong("vkey"), help: "A verifier key line (repeat for the Ed25519 and the ML-DSA-65 key); each must sign.")
        var vkeys: [String] = []

        @Option(help: "A checkpoint note you hold (from an earlier bundle or the ledger): the bundle's must extend it.")
        var since: String?

        @Option(help: "Also check that the live ledger in this database extends the bundle's checkpoint.")
        var database: String?

        func run() async throws {
            let keys = try vkeys.map { text in
                do { return try SignedNote.VerifierKey(text: text) } catch let error as PortalError { throw ValidationError(error.message) }
            }
            var held: String?
            if let since {
                guard let text = try? String(contentsOfFile: since, encoding: .utf8) else { throw ValidationError("cannot read --since \(since)") }
                // A note ends with exactly one newline; copies often gain another.
                var note = text
                while note.hasSuffix("\n\n") { note.removeLast() }
                held = note
            }
            var report = try EvidenceVerifier().verify(bundle: file, keys: keys, since: held)
            if let database, report.passed {
                let manifest = report.manifest
                var problems: [String] = []
                try await CLI.run {
                    problems = try await Database.withDatabase(url: database, logger: CLI.quietLogger()) { db in
                        try await EvidenceVerifier.consistency(manifest: manifest, database: db)
                    }
                }
                report.problems += problems
            }
            guard report.passed else {
                for problem in report.problems { print("FAILED \(problem)") }
                throw ExitCode.failure
            }
            let manifest = report.manifest?.objectValue ?? [:]
            let extra = (since != nil ? "; extends the held checkpoint" : "") + (database != nil ? "; the live ledger extends it" : "")
            print("verified \(file)\(extra): \(report.files) files, signed by \(keys.count) key(s); \(manifest["framework"]?.stringValue ?? "") evidence of \(manifest["organization"]?.stringValue ?? ""), cut at tree size \(manifest["checkpoint"]?.objectValue?["size"]?.sortedText ?? "?")")
        }
    }

    struct Keygen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make an auditor's X-Wing key pair: FILE (private, mode 0600) and FILE.pub (to give to the portal's operators).")

        @Option(help: "The private key file to write; the public key goes to FILE.pub.")
        var out: String

        func run() async throws {
            guard !FileManager.default.fileExists(atPath: out) else { throw ValidationError("\(out) exists; not overwriting a key") }
            let pair = try SealedBundle.makeKeyPair()
            guard FileManager.default.createFile(atPath: out, contents: Data((pair.privateKey + "\n").utf8), attributes: [.posixPermissions: 0o600]),
                  FileManager.default.createFile(atPath: out + ".pub", contents: Data((pair.publicKey + "\n").utf8))
            else { throw ValidationError("cannot write \(out)") }
            print("wrote \(out) (private, keep it) and \(out).pub (give it to whoever seals bundles for you)")
        }
    }

    struct Open: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open a bundle sealed to your X-Wing key (report soc2|gdpr|iso27001 --seal-to).")

        @Argument(help: "The sealed bundle.")
        var file: String

        @Option(help: "Your private key file (from 'portal report keygen').")
        var key: String

        @Option(help: "The bundle to write (.tar.zst).")
        var out: String

        func run() async throws {
            guard let text = try? String(contentsOfFile: key, encoding: .utf8) else { throw ValidationError("cannot read --key \(key)") }
            let (file, out) = (file, out)
            try await CLI.run { try SealedBundle.open(input: file, privateKey: text, output: out) }
            print("wrote \(out)")
        }
    }
}
