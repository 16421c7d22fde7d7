import Crypto
import Foundation
package import PortalCore

/// The master keys this process knows: the first wraps new data keys, every one can unwrap.
///
/// A master key is 32 random bytes, given as base64 in `PORTAL_MASTER_KEY` or as lines of a key file
/// (newest first). Its id is the first 8 bytes of SHA-256 over a label and the key, in hex: it names the
/// key in `data_key_wraps` without revealing it.
package struct MasterKeyRing: Sendable {
    /// One master key and its id.
    package struct Key: Sendable {
        package let id: String
        let key: SymmetricKey

        /// Parses base64 of exactly 32 bytes.
        package init(base64: String) throws(PortalError) {
            guard let data = Data(base64Encoded: base64.trimmingCharacters(in: .whitespacesAndNewlines)),
                  data.count == 32
            else {
                throw PortalError(.configuration, "a master key must be base64 of exactly 32 bytes")
            }
            key = SymmetricKey(data: data)
            var hasher = SHA256()
            hasher.update(data: Data("portal-master-key-id\n".utf8))
            hasher.update(data: data)
            id = hasher.finalize().prefix(8).map { String(format: "%02x", $0) }.joined()
        }
    }

    /// The key that wraps new data keys.
    package let active: Key
    /// Every known key, the active one first.
    package let keys: [Key]

    /// A ring of `keys`, the first of which is active.
    package init(keys: [Key]) throws(PortalError) {
        guard let first = keys.first else { throw PortalError(.configuration, "no master key is configured") }
        active = first
        self.keys = keys
    }

    /// The ring from `PORTAL_MASTER_KEY` (or a key read from standard input), else from the key file.
    package static func load(masterKey: String?, keyFile: String?) throws(PortalError) -> MasterKeyRing {
        if let masterKey, !masterKey.isEmpty {
            return try MasterKeyRing(keys: [Key(base64: masterKey)])
        }
        guard let keyFile, !keyFile.isEmpty else {
            throw PortalError(
                .configuration,
                "no master key: set PORTAL_MASTER_KEY (base64 of 32 bytes) or PORTAL_MASTER_KEY_FILE (see 'portal keys generate-master')"
            )
        }
        return try MasterKeyRing(keys: readKeyFile(keyFile))
    }

    /// The keys of a key file: one base64 key per line, blank lines and `#` comments ignored.
    package static func readKeyFile(_ path: String) throws(PortalError) -> [Key] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw PortalError(.configuration, "cannot read the master key file \(path)")
        }
        var keys: [Key] = []
        for line in keyLines(text) { keys.append(try Key(base64: line)) }
        return keys
    }

    /// The key lines of a key file's text (or of standard input): trimmed, blank lines and `#` comments left out.
    package static func keyLines(_ text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// The one base64 master key in `text` (standard input, a `--new-key-file`), checked; `source` names it in errors.
    package static func singleKey(in text: String, source: String) throws(PortalError) -> String {
        let lines = keyLines(text)
        guard lines.count == 1 else {
            throw PortalError(.configuration, "\(source) must hold exactly one base64 master key, not \(lines.count)")
        }
        _ = try Key(base64: lines[0])
        return lines[0]
    }

    /// Writes a key file (mode 0600) atomically: the given keys, newest first.
    package static func writeKeyFile(_ path: String, keys base64Keys: [String]) throws(PortalError) {
        let text = "# portal master keys, newest first; keep this file secret and backed up\n"
            + base64Keys.joined(separator: "\n") + "\n"
        let temporary = path + ".tmp-\(UInt32.random(in: 0...UInt32.max))"
        let created = FileManager.default.createFile(
            atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]
        )
        guard created else { throw PortalError(.configuration, "cannot write the master key file \(path)") }
        // rename(2) replaces the old file atomically: a reader sees the old keys or the new, never half.
        guard rename(temporary, path) == 0 else {
            try? FileManager.default.removeItem(atPath: temporary)
            throw PortalError(.configuration, "cannot replace the master key file \(path)")
        }
    }

    /// A new random master key, as base64.
    package static func generateBase64() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
    }
}
