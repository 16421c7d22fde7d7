import ArgumentParser
import Foundation
import Integrations
import Ledger
import Logging
import PortalCore
import PortalServer
import Storage

/// `portal keys`: master keys of the credential vault.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Generate, rotate and retire master keys.",
        subcommands: [GenerateMaster.self, RotateMaster.self, RetireMaster.self]
    )

    struct GenerateMaster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate-master",
            abstract: "Print a new random master key (base64), or write it to a new key file."
        )

        @Option(help: "Write a key file (mode 0600) instead of printing; refuses to overwrite one.")
        var out: String?

        func run() async throws {
            let key = MasterKeyRing.generateBase64()
            guard let out else {
                print(key)
                return
            }
            guard !FileManager.default.fileExists(atPath: out) else {
                throw ValidationError("\(out) exists; rotate with 'portal keys rotate-master' instead of overwriting it")
            }
            let directory = out.lastIndex(of: "/").map { String(out[..<$0]) } ?? ""  // (NSString's deletingLastPathComponent traps on a one-letter name in release builds)
            if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
            try await CLI.run {
                try MasterKeyRing.writeKeyFile(out, keys: [key])
                CLI.note("wrote master key \(try MasterKeyRing.Key(base64: key).id) to \(out)")
            }
        }
    }

    struct RotateMaster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-master",
            abstract: "Wrap every data key under a new master key as well, without downtime.",
            discussion: """
                Running instances keep reading with the old key: its wraps stay until 'retire-master'. With
                --master-key-file, the new key is written at the top of that file (the old keys stay below it).
                Restart instances with the new key, then run 'portal keys retire-master --key-id OLD'.
                A chosen new key is read from a file (--new-key-file PATH, or - for standard input), never
                from the command line.
                """
        )

        @Option(name: .customLong("new-key-file"), help: "A file holding the new base64 master key (- reads it from standard input); generated when omitted.")
        var newKeyFile: String?

        /// Refused: only here to answer with the forms to use instead.
        @Option(name: .customLong("new-key"), help: .hidden)
        var newKeyInArguments: String?

        @OptionGroup var database: DatabaseOptions
        @OptionGroup var keys: MasterKeyOptions

        func validate() throws {
            if newKeyInArguments != nil {
                throw ValidationError(KeyInput.refusal(flag: "--new-key", instead: "--new-key-file PATH or --new-key-file - (standard input), or omit it to generate the new key"))
            }
            if newKeyFile == "-", keys.readsStandardInput {
                throw ValidationError("only one key can come from standard input: give the master key or the new key in a file")
            }
        }

        func run() async throws {
            var settings = try CLI.settings()
            try database.apply(to: &settings)
            try keys.apply(to: &settings)
            let newKey = try newKeyFile.map { try KeyInput.fileKey($0, option: "--new-key-file") }
            let logger = CLI.quietLogger()
            try await CLI.run {
                let ring = try MasterKeyRing.load(masterKey: settings.masterKey, keyFile: settings.masterKeyFile)
                let newBase64 = newKey ?? MasterKeyRing.generateBase64()
                let new = try MasterKeyRing.Key(base64: newBase64)
                let count = try await withPortalServices(settings, logger: logger) { services in
                    try await services.database.write { tx in
                        let count = try await services.vault.rewrapAll(under: new, in: tx)
                        try await services.ledger.record(AuditEvent(
                            organizationID: Organization.platformID, type: .keyRotated, actor: CLI.actor,
                            data: ["key": "master", "previousKeyId": .string(ring.active.id), "newKeyId": .string(new.id), "dataKeysRewrapped": .int(Int64(count))],
                            time: Date()
                        ), in: tx)
                        return count
                    }
                }
                if settings.masterKey == nil, let file = settings.masterKeyFile {
                    let existing = (try? String(contentsOfFile: file, encoding: .utf8)).map(MasterKeyRing.keyLines) ?? []
                    try MasterKeyRing.writeKeyFile(file, keys: [newBase64] + existing.filter { $0 != newBase64 })
                    CLI.note("added the new key at the top of \(file)")
                } else if newKey == nil {
                    CLI.note("new master key (store it, then set PORTAL_MASTER_KEY to it):")
                    print(newBase64)
                }
                CLI.note("re-wrapped \(count) data key(s) under master key \(new.id); the old key (\(ring.active.id)) still works until retired")
            }
        }
    }

    struct RetireMaster: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "retire-master",
            abstract: "Delete the wraps under an old master key (refused while a data key has no other wrap)."
        )

        @Option(name: .customLong("key-id"), help: "The id of the master key to retire (printed by rotate-master).")
        var keyID: String

        @OptionGroup var database: DatabaseOptions
        @OptionGroup var keys: MasterKeyOptions

        func run() async throws {
            var settings = try CLI.settings()
            try database.apply(to: &settings)
            try keys.apply(to: &settings)
            let logger = CLI.quietLogger()
            let id = keyID
            try await CLI.run {
                let removed = try await withPortalServices(settings, logger: logger) { services in
                    try await services.database.write { tx in
                        let removed = try await services.vault.retire(masterKeyID: id, in: tx)
                        try await services.ledger.record(AuditEvent(
                            organizationID: Organization.platformID, type: .keyRotated, actor: CLI.actor,
                            data: ["key": "master", "retiredKeyId": .string(id), "wrapsRemoved": .int(Int64(removed))],
                            time: Date()
                        ), in: tx)
                        return removed
                    }
                }
                print("removed \(removed) wrap(s) under master key \(id)")
            }
        }
    }
}
