import Crypto
import Foundation
package import PortalCore

/// C2SP signed notes (c2sp.org/signed-note) and tlog checkpoints (c2sp.org/tlog-checkpoint).
///
/// A note is UTF-8 text ending in a newline, a blank line, then signature lines
/// `— <name> <base64(4-byte key id || signature)>`. Keys: Ed25519 (type 0x01) and ML-DSA-65 (type 0xff
/// followed by the identifier `ml-dsa-65`, DESIGN section 4.3), whose signatures are randomized.
package enum SignedNote {
    /// The signature algorithms a ledger signs with.
    package enum Algorithm: String, Sendable, CaseIterable {
        case ed25519
        case mlDSA65 = "ml-dsa-65"

        /// The bytes that precede the public key in the key id and the verifier key.
        var typePrefix: [UInt8] {
            switch self {
            case .ed25519: [0x01]
            case .mlDSA65: [0xFF] + Array("ml-dsa-65".utf8)
            }
        }
    }

    /// A verifier key: name, algorithm and public key, written `name+hex(id)+base64(type || key)`.
    package struct VerifierKey: Sendable, Equatable {
        package var name: String
        package var algorithm: Algorithm
        package var publicKey: [UInt8]

        package init(name: String, algorithm: Algorithm, publicKey: [UInt8]) {
            self.name = name
            self.algorithm = algorithm
            self.publicKey = publicKey
        }

        /// SHA-256(name || 0x0A || type || public key)[:4].
        package var keyID: [UInt8] {
            var hasher = SHA256()
            hasher.update(data: Array(name.utf8) + [0x0A] + algorithm.typePrefix + publicKey)
            return Array(hasher.finalize().prefix(4))
        }

        /// The `vkey` text.
        package var text: String {
            "\(name)+\(Hex.encode(keyID))+\(Data(algorithm.typePrefix + publicKey).base64EncodedString())"
        }

        /// Parses a `vkey` text; the key id must match.
        package init(text: String) throws(PortalError) {
            let parts = text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, !parts[0].isEmpty, let id = Hex.decode(String(parts[1])), id.count == 4,
                  let raw = Data(base64Encoded: String(parts[2])).map(Array.init), !raw.isEmpty
            else {
                throw PortalError(.validationFailed, "a verifier key is name+hexid+base64key")
            }
            let mldsa = Algorithm.mlDSA65.typePrefix
            if raw[0] == 0x01, raw.count == 33 {
                self.init(name: String(parts[0]), algorithm: .ed25519, publicKey: Array(raw.dropFirst()))
            } else if raw.starts(with: mldsa), raw.count == mldsa.count + 1952 {
                self.init(name: String(parts[0]), algorithm: .mlDSA65, publicKey: Array(raw.dropFirst(mldsa.count)))
            } else {
                throw PortalError(.validationFailed, "the verifier key is neither Ed25519 nor ML-DSA-65")
            }
            guard keyID == id else { throw PortalError(.validationFailed, "the verifier key's id does not match its key") }
        }

        /// Whether `signature` signs `message` under this key.
        package func verify(_ signature: [UInt8], message: [UInt8]) -> Bool {
            switch algorithm {
            case .ed25519:
                guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else { return false }
                return key.isValidSignature(signature, for: message)
            case .mlDSA65:
                guard let key = try? MLDSA65.PublicKey(rawRepresentation: publicKey) else { return false }
                return key.isValidSignature(signature, for: message)
            }
        }
    }

    /// A signing key for one algorithm under one name.
    package struct Signer: Sendable {
        package let verifierKey: VerifierKey
        private let sign: @Sendable ([UInt8]) throws -> [UInt8]

        /// An Ed25519 signer from its 32-byte private key.
        package static func ed25519(name: String, privateKey: [UInt8]) throws(PortalError) -> Signer {
            guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: privateKey) else {
                throw PortalError(.crypto, "not an Ed25519 private key")
            }
            return Signer(
                verifierKey: VerifierKey(name: name, algorithm: .ed25519, publicKey: Array(key.publicKey.rawRepresentation)),
                sign: { Array(try key.signature(for: $0)) }
            )
        }

        /// An ML-DSA-65 signer from its 32-byte seed.
        package static func mlDSA65(name: String, seed: [UInt8]) throws(PortalError) -> Signer {
            guard let key = try? MLDSA65.PrivateKey(seedRepresentation: seed, publicKey: nil) else {
                throw PortalError(.crypto, "not an ML-DSA-65 seed")
            }
            return Signer(
                verifierKey: VerifierKey(name: name, algorithm: .mlDSA65, publicKey: Array(key.publicKey.rawRepresentation)),
                sign: { Array(try key.signature(for: $0)) }
            )
        }

        /// The signature line of `text`.
        package func signatureLine(for text: String) throws(PortalError) -> String {
            do {
                let signature = try sign(Array(text.utf8))
                return "— \(verifierKey.name) \(Data(verifierKey.keyID + signature).base64EncodedString())"
            } catch {
                throw PortalError(.crypto, "signing failed")
            }
        }
    }

    /// Signs `text` (which must end in a newline) with every signer.
    package static func sign(_ text: String, with signers: [Signer]) throws(PortalError) -> String {
        guard text.hasSuffix("\n") else { throw PortalError(.internal, "a note's text ends with a newline") }
        var note = text + "\n"
        for signer in signers { note += try signer.signatureLine(for: text) + "\n" }
        return note
    }

    /// A note split into its text and signatures.
    package struct Parsed: Sendable {
        package var text: String
        /// (name, key id, signature) of each signature line.
        package var signatures: [(name: String, keyID: [UInt8], signature: [UInt8])]
    }

    /// Splits a signed note; throws if it is malformed.
    package static func parse(_ note: String) throws(PortalError) -> Parsed {
        guard let range = note.range(of: "\n\n", options: .backwards) else {
            throw PortalError(.validationFailed, "a signed note has a blank line before its signatures")
        }
        let text = String(note[..<range.lowerBound]) + "\n"
        let block = String(note[range.upperBound...])
        guard block.hasSuffix("\n") else { throw PortalError(.validationFailed, "a signed note ends with a newline") }
        var signatures: [(String, [UInt8], [UInt8])] = []
        for line in block.dropLast().split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix("— ") else { throw PortalError(.validationFailed, "a signature line starts with an em dash") }
            let fields = line.dropFirst(2).split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 2, let raw = Data(base64Encoded: String(fields[1])), raw.count > 4 else {
                throw PortalError(.validationFailed, "a signature line is '— name base64'")
            }
            signatures.append((String(fields[0]), Array(raw.prefix(4)), Array(raw.dropFirst(4))))
        }
        return Parsed(text: text, signatures: signatures)
    }

    /// Checks that every key in `keys` has a valid signature on the note; returns its text.
    package static func verify(_ note: String, keys: [VerifierKey]) throws(PortalError) -> String {
        let parsed = try parse(note)
        for key in keys {
            let matching = parsed.signatures.filter { $0.name == key.name && $0.keyID == key.keyID }
            guard !matching.isEmpty else {
                throw PortalError(.validationFailed, "the note has no signature by \(key.algorithm.rawValue) key \(key.name)+\(Hex.encode(key.keyID))")
            }
            guard matching.contains(where: { key.verify($0.signature, message: Array(parsed.text.utf8)) }) else {
                throw PortalError(.validationFailed, "the \(key.algorithm.rawValue) signature of \(key.name)+\(Hex.encode(key.keyID)) does not verify")
            }
        }
        return parsed.text
    }
}

/// A tlog checkpoint: origin, size and root hash.
package struct Checkpoint: Sendable, Equatable {
    package var origin: String
    package var size: Int64
    package var root: Hash

    package init(origin: String, size: Int64, root: Hash) {
        self.origin = origin
        self.size = size
        self.root = root
    }

    /// The checkpoint body: `origin\nsize\nbase64(root)\n`.
    package var text: String { "\(origin)\n\(size)\n\(Data(root).base64EncodedString())\n" }

    /// Parses a checkpoint body (extension lines after the root are allowed and ignored).
    package init(text: String) throws(PortalError) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 4, !lines[0].isEmpty, let size = Int64(lines[1]), size >= 0, String(size) == lines[1],
              let root = Data(base64Encoded: String(lines[2])), root.count == 32
        else {
            throw PortalError(.validationFailed, "not a checkpoint: origin, size and base64 root lines expected")
        }
        self.init(origin: String(lines[0]), size: size, root: Array(root))
    }
}
