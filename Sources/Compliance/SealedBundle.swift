import Crypto
import Foundation
import PortalCore

/// A bundle sealed to an auditor's X-Wing (ML-KEM-768 + X25519) public key with HPKE (RFC 9180, ciphersuite
/// X-Wing / HKDF-SHA256 / AES-256-GCM), so only the auditor opens it (`portal report open`).
///
/// Format: `PORTAL-SEALED-BUNDLE-1\n`, the encapsulated key's length (4 bytes, big-endian) and bytes, then
/// chunks of at most 1 MiB of plaintext, each its ciphertext length (4 bytes) and ciphertext, sealed in order
/// by one HPKE context (so chunks cannot be reordered), the last with the associated data `final` (so a
/// truncated file does not open).
package enum SealedBundle {
    static let magic = Array("PORTAL-SEALED-BUNDLE-1\n".utf8)
    static let suite = HPKE.Ciphersuite.XWingMLKEM768X25519_SHA256_AES_GCM_256
    static let info = Data("portal evidence bundle".utf8)
    static let chunk = 1 << 20

    /// A new auditor key pair: (private seed, public key), both base64 for key files.
    package static func makeKeyPair() throws -> (privateKey: String, publicKey: String) {
        let key = try XWingMLKEM768X25519.PrivateKey()
        return (key.seedRepresentation.base64EncodedString(), key.publicKey.rawRepresentation.base64EncodedString())
    }

    static func publicKey(_ text: String) throws(PortalError) -> XWingMLKEM768X25519.PublicKey {
        guard let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)),
              let key = try? XWingMLKEM768X25519.PublicKey(rawRepresentation: raw)
        else { throw PortalError(.validationFailed, "the key file does not hold an X-Wing public key (base64)") }
        return key
    }

    static func privateKey(_ text: String) throws(PortalError) -> XWingMLKEM768X25519.PrivateKey {
        guard let seed = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)),
              let key = try? XWingMLKEM768X25519.PrivateKey(seedRepresentation: seed, publicKey: nil)
        else { throw PortalError(.validationFailed, "the key file does not hold an X-Wing private key (base64 seed)") }
        return key
    }

    /// Seals `input` (a file) to `publicKey` (base64), writing to `output`.
    package static func seal(input: String, publicKey text: String, output: String) throws {
        var sender = try HPKE.Sender(recipientKey: try publicKey(text), ciphersuite: suite, info: info)
        guard let reader = FileHandle(forReadingAtPath: input), FileManager.default.createFile(atPath: output, contents: nil), let writer = FileHandle(forWritingAtPath: output) else {
            throw PortalError(.configuration, "cannot read \(input) or write \(output)")
        }
        defer {
            try? reader.close()
            try? writer.close()
        }
        let encapsulated = sender.encapsulatedKey
        try writer.write(contentsOf: magic + length(encapsulated.count) + Array(encapsulated))
        var pending = try reader.read(upToCount: chunk) ?? Data()
        while true {
            let next = try reader.read(upToCount: chunk) ?? Data()
            let last = next.isEmpty
            let sealed = try sender.seal(pending, authenticating: Array((last ? "final" : "chunk").utf8))
            try writer.write(contentsOf: length(sealed.count) + Array(sealed))
            if last { break }
            pending = next
        }
        try writer.synchronize()
    }

    /// Opens a sealed bundle with the private key (base64 seed), writing the bundle to `output`.
    package static func open(input: String, privateKey text: String, output: String) throws {
        guard let data = FileManager.default.contents(atPath: input) else { throw PortalError(.configuration, "cannot read \(input)") }
        let bytes = Array(data)
        guard bytes.starts(with: magic) else { throw PortalError(.validationFailed, "\(input) is not a sealed bundle") }
        var offset = magic.count
        func take() throws(PortalError) -> [UInt8] {
            guard bytes.count - offset >= 4 else { throw PortalError(.validationFailed, "the sealed bundle is truncated") }
            let n = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            offset += 4
            guard n <= bytes.count - offset else { throw PortalError(.validationFailed, "the sealed bundle is truncated") }
            defer { offset += n }
            return Array(bytes[offset..<offset + n])
        }
        let encapsulated = try take()
        var recipient = try HPKE.Recipient(privateKey: try privateKey(text), ciphersuite: suite, info: info, encapsulatedKey: Data(encapsulated))
        var plain = Data()
        var finished = false
        while offset < bytes.count {
            let sealed = try take()
            let isFinal = offset == bytes.count
            do {
                plain.append(try recipient.open(sealed, authenticating: Array((isFinal ? "final" : "chunk").utf8)))
            } catch {
                throw PortalError(.validationFailed, "the sealed bundle does not open with this key, or was changed")
            }
            finished = isFinal
        }
        guard finished else { throw PortalError(.validationFailed, "the sealed bundle is truncated") }
        guard FileManager.default.createFile(atPath: output, contents: plain, attributes: [.posixPermissions: 0o600]) else { throw PortalError(.configuration, "cannot write \(output)") }
    }

    static func length(_ n: Int) -> [UInt8] { [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] }
}
