import ArgumentParser
import Foundation
import Ledger
import Monitoring
import Logging
import PortalCore
import PortalServer
import Storage

/// `portal ledger keys|verify|checkpoint`: the audit ledger from the command line.
/// The options every ledger command that signs or verifies shares.
struct LedgerOptions: ParsableArguments {
    @OptionGroup var database: DatabaseOptions
    @OptionGroup var keys: MasterKeyOptions
    @OptionGroup var publicURL: PublicURLOptions

    @Option(name: .customLong("checkpoint-dir"), help: "Directory of published checkpoints: verify holds the ledger to them, checkpoint publishes to it (PORTAL_CHECKPOINT_DIR).")
    var checkpointDir: String?

    func settings() throws -> PortalSettings {
        var settings = try CLI.settings()
        try database.apply(to: &settings)
        try keys.apply(to: &settings)
        try publicURL.apply(to: &settings)
        if let checkpointDir { settings.checkpointDir = checkpointDir }
        return settings
    }
}

struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Print verifier keys and entries, verify ledgers (online, or offline from a bundle or proof file), cut checkpoints, export, prove.",
        subcommands: [Keys.self, Verify.self, CutCheckpoint.self, Entries.self, Export.self, Prove.self]
    )

    /// Sequences what is queued, then cuts (or reuses) a checkpoint of `slug`'s ledger: the common start of
    /// `checkpoint`, `export` and `prove`. A 409 when the ledger is empty.
    static func freshCheckpoint(_ slug: String, services: PortalServices) async throws -> (id: UUID, slug: String, checkpoint: LedgerCheckpointRow) {
        try await services.ledger.drainAll()
        guard let ledger = try await ledgers(slug, in: services.database).first else { throw PortalError.notFound("organization '\(slug)'") }
        // A running server may be cutting one this instant: wait for it rather than call the ledger empty.
        if let checkpoint = try await services.checkpointer.cutWaiting(organizationID: ledger.id, slug: ledger.slug) { return (ledger.id, ledger.slug, checkpoint) }
        throw PortalError(.conflict, "the ledger of '\(slug)' is empty")
    }

    /// The ledgers to act on: one organization's, or every ledger (the platform's included).
    static func ledgers(_ org: String?, in db: Database) async throws -> [(id: UUID, slug: String)] {
        try await db.read { tx in
            if let org {
                guard let organization = try await OrganizationStore(tx).find(slug: org) else {
                    throw PortalError.notFound("organization '\(org)'")
                }
                return [(organization.id, organization.slug)]
            }
            // Every ledger with entries, and the platform ledger even while it is empty.
            var ledgers = try await LedgerStore(tx).ledgers()
            if !ledgers.contains(where: { $0.id == Organization.platformID }) {
                ledgers.insert((Organization.platformID, Organization.platformSlug), at: 0)
            }
            return ledgers
        }
    }

    struct Keys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the verifier keys (vkey lines: Ed25519, then ML-DSA-65) of a ledger.",
            discussion: "Key names are the ledger origins, <public URL without scheme>/ledger/<slug>: run with the server's --public-url."
        )

        @Option(help: "Organization slug (default: default).")
        var org: String = Bootstrap.defaultSlug

        @OptionGroup var options: LedgerOptions

        func run() async throws {
            let settings = try options.settings()
            let slug = org
            try await CLI.run {
                try await withPortalServices(settings, logger: CLI.quietLogger()) { services in
                    for key in try await services.checkpointer.verifierKeys(slug: slug) { print(key.text) }
                }
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify ledgers: canonical entries, the hash chain, tiles, checkpoints and their signatures.",
            discussion: """
                Without --org every ledger is verified, the platform ledger included. On the first problem it exits 1 and
                names the sequence number and what is wrong. Each run appends ledger.verified (to the ledger on success, to
                the platform ledger on failure). Give --vkey to check signatures against keys you hold rather than the
                deployment's own.
                """
        )

        @Option(help: "Only this organization's ledger.")
        var org: String?

        @Option(name: .customLong("vkey"), help: "A verifier key to check checkpoint signatures with (repeatable).")
        var vkeys: [String] = []

        @Option(help: "Verify an exported bundle (.tar.zst) offline: no database, no network; needs --vkey.")
        var bundle: String?

        @Option(help: "Verify a tlog-proof file offline; needs --vkey.")
        var proof: String?

        @Option(help: "With --bundle: a checkpoint you kept earlier, which the bundle must be consistent with.")
        var since: String?

        @OptionGroup var options: LedgerOptions

        func run() async throws {
            if bundle != nil || proof != nil {
                try await verifyOffline()
                return
            }
            let settings = try options.settings()
            let given = try trustedKeys()
            let orgFilter = org
            let directory = settings.checkpointDir
            var failed = false
            try await CLI.run {
                try await withPortalServices(settings, logger: CLI.quietLogger()) { services in
                    let db = services.database
                    let terminal = isatty(STDERR_FILENO) == 1
                    for ledger in try await LedgerCommand.ledgers(orgFilter, in: db) {
                        let start = ContinuousClock.now
                        let result = try await services.ledgerVerification.verify(
                            organizationID: ledger.id, slug: ledger.slug, keys: given, publishedDirectory: directory, actor: CLI.actor
                        ) { checked in
                            if terminal { CLI.progress("verifying \(ledger.slug): \(checked) entries") }
                        }
                        if terminal { CLI.progress("") }
                        let seconds = Double((ContinuousClock.now - start).components.attoseconds) / 1e18 + Double((ContinuousClock.now - start).components.seconds)
                        if let failure = result.failure {
                            failed = true
                            print("FAILED \(ledger.slug) at seq \(failure.seq): \(failure.message)")
                        } else {
                            print("verified \(ledger.slug): size \(result.size), root \(Data(result.root).base64EncodedString()), \(result.checkpointsChecked) checkpoint(s), \(String(format: "%.3f", seconds)) s")
                        }
                    }
                }
            }
            if failed { throw ExitCode.failure }
        }

        /// The `--vkey` keys, parsed; a malformed one is a usage error.
        private func trustedKeys() throws -> [SignedNote.VerifierKey] {
            try vkeys.map { text in
                do { return try SignedNote.VerifierKey(text: text) } catch let error as PortalError { throw ValidationError(error.message) }
            }
        }

        /// `--bundle` or `--proof`: only the file and the keys the auditor trusts.
        private func verifyOffline() async throws {
            guard !vkeys.isEmpty else { throw ValidationError("offline verification needs the verifier keys you trust: --vkey (repeatable)") }
            let keys = try trustedKeys()
            if let proof {
                try await CLI.run {
                    guard let text = try? String(contentsOfFile: proof, encoding: .utf8) else { throw PortalError(.validationFailed, "cannot read \(proof)") }
                    do {
                        let entry = try LedgerProofFile.verify(text, keys: keys)
                        print("verified proof: entry \(entry.seq) of \(entry.org) (\(entry.type) at \(entry.time)) is in the signed checkpoint")
                    } catch let error as PortalError {
                        print("FAILED proof: \(error.message)")
                        throw ExitCode.failure
                    }
                }
                return
            }
            guard let bundle else { return }
            var sinceNote: String?
            if let since {
                guard let text = try? String(contentsOfFile: since, encoding: .utf8) else { throw ValidationError("cannot read \(since)") }
                sinceNote = text
            }
            let terminal = isatty(STDERR_FILENO) == 1
            var failed = false
            try await CLI.run {
                let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("portal-verify-\(UUID().uuidString.prefix(8))")
                defer { try? FileManager.default.removeItem(at: scratch) }
                let verifier = LedgerBundleVerifier()
                let start = ContinuousClock.now
                let folder = try verifier.unpack(bundle: bundle, into: scratch)
                let result = try await verifier.verify(folder: folder, keys: keys, since: sinceNote) { checked in
                    if terminal { CLI.progress("verifying bundle: \(checked) entries") }
                }
                if terminal { CLI.progress("") }
                let elapsed = ContinuousClock.now - start
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                if let failure = result.failure {
                    failed = true
                    print("FAILED \(result.slug) at seq \(failure.seq): \(failure.message)")
                } else {
                    print("verified bundle \(result.slug): size \(result.size), root \(Data(result.root).base64EncodedString()), \(result.checkpointsChecked) checkpoint(s), \(String(format: "%.3f", seconds)) s")
                }
            }
            if failed { throw ExitCode.failure }
        }
    }

    struct CutCheckpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "checkpoint", abstract: "Cut a signed checkpoint now and print it.")

        @Option(help: "Organization slug (default: default).")
        var org: String = Bootstrap.defaultSlug

        @OptionGroup var options: LedgerOptions

        func run() async throws {
            let settings = try options.settings()
            let slug = org
            try await CLI.run {
                try await withPortalServices(settings, logger: CLI.quietLogger()) { services in
                    print(try await LedgerCommand.freshCheckpoint(slug, services: services).checkpoint.note, terminator: "")
                }
            }
        }
    }

    struct Entries: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print entries as JSON lines (seq, hash, entry), for any ledger, the platform's (_platform) included."
        )

        @Option(help: "Organization slug, or _platform (default: default).")
        var org: String = Bootstrap.defaultSlug

        @Option(help: "First sequence number.")
        var from: Int64 = 0

        @Option(help: "How many entries at most.")
        var limit: Int = 1000

        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            var settings = try CLI.settings()
            try database.apply(to: &settings)
            let logger = CLI.quietLogger()
            let (slug, first, count) = (org, from, limit)
            try await CLI.run {
                try await Database.withDatabase(url: settings.databaseURL, logger: logger) { db in
                    try await Migrator(database: db, logger: logger).migrate()
                    guard let organization = try await db.read({ try await OrganizationStore($0).find(slug: slug) }) else {
                        throw PortalError.notFound("ledger '\(slug)'")
                    }
                    for row in try await LedgerReader(database: db).entries(organization.id, from: first, limit: count) {
                        let entry = String(decoding: row.bytes, as: UTF8.self)
                        print(#"{"seq":\#(row.seq),"hash":"\#(Hex.encode(row.hash))","entry":\#(entry)}"#)
                    }
                }
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the ledger as a .tar.zst tlog-tiles folder (checkpoint, tile/..., checkpoints/, keys/) for offline verification."
        )

        @Option(help: "Organization slug (default: default).")
        var org: String = Bootstrap.defaultSlug

        @Option(help: "The bundle file to write.")
        var out: String

        @OptionGroup var options: LedgerOptions

        func run() async throws {
            let settings = try options.settings()
            let (slug, path) = (org, out)
            try await CLI.run {
                try await withPortalServices(settings, logger: CLI.quietLogger()) { services in
                    let (ledgerID, ledgerSlug, checkpoint) = try await LedgerCommand.freshCheckpoint(slug, services: services)
                    let ledger = (id: ledgerID, slug: ledgerSlug)
                    let keys = try await services.checkpointer.verifierKeys(slug: ledger.slug)
                    let temporary = path + ".partial"
                    guard FileManager.default.createFile(atPath: temporary, contents: nil), let handle = FileHandle(forWritingAtPath: temporary) else {
                        throw PortalError(.configuration, "cannot write \(path)")
                    }
                    let summary = try await LedgerExporter(database: services.database).export(
                        organizationID: ledger.id, checkpoint: checkpoint, keys: keys, publishedDirectory: settings.checkpointDir, slug: ledger.slug
                    ) { chunk in try handle.write(contentsOf: chunk) }
                    try handle.synchronize()
                    try handle.close()
                    guard rename(temporary, path) == 0 else { throw PortalError(.configuration, "cannot move the bundle to \(path)") }
                    CLI.note("exported \(ledger.slug): \(summary.size) entries, \(summary.files) files, \(summary.compressedBytes) bytes")
                    print(path)
                }
            }
        }
    }

    struct Prove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write one entry with its inclusion proof and signed checkpoint as a C2SP tlog-proof file."
        )

        @Option(help: "Organization slug (default: default).")
        var org: String = Bootstrap.defaultSlug

        @Option(help: "The entry's sequence number.")
        var seq: Int64

        @Option(help: "The proof file to write (conventionally .tlog-proof).")
        var out: String

        @OptionGroup var options: LedgerOptions

        func run() async throws {
            let settings = try options.settings()
            let (slug, index, path) = (org, seq, out)
            try await CLI.run {
                try await withPortalServices(settings, logger: CLI.quietLogger()) { services in
                    let (ledgerID, _, checkpoint) = try await LedgerCommand.freshCheckpoint(slug, services: services)
                    guard index >= 0, index < checkpoint.size,
                          let row = try await services.ledgerReader.entries(ledgerID, from: index, limit: 1).first
                    else { throw PortalError.notFound("entry \(index) of '\(slug)'") }
                    let proof = try await services.ledgerReader.inclusionProof(ledgerID, seq: index, size: checkpoint.size)
                    let text = LedgerProofFile.make(entry: row.bytes, index: index, proof: proof, checkpoint: checkpoint.note)
                    guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else { throw PortalError(.configuration, "cannot write \(path)") }
                    print(path)
                }
            }
        }
    }
}
