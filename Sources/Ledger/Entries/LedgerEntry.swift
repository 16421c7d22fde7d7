import Crypto
import Foundation
package import PortalCore

/// One entry of an organization's ledger (DESIGN section 4.1), serialized with RFC 8785:
///
/// `{"v":1,"seq":N,"time":"…Z","org":"<slug>","type":"<event>","actor":"…","integration":"<uuid>","data":{…},"prev":"<hex>"}`
///
/// `entry_hash = SHA-256(0x00 || canonical bytes)`, the RFC 9162 leaf hash; `prev` is the previous entry's
/// hash (64 zeros for seq 0), so the entries form a hash chain whose hashes are the Merkle tree's leaves.
package struct LedgerEntry: Sendable, Equatable {
    package var seq: Int64
    /// RFC 3339 UTC with microseconds.
    package var time: String
    package var org: String
    package var type: String
    /// An API token id, or `system:<service>`.
    package var actor: String
    package var integration: String?
    package var data: JSONValue
    /// Lowercase hex of the previous entry's hash.
    package var prev: String

    /// The largest canonical entry, in bytes (entry bundles use a 16-bit length prefix).
    package static let maxBytes = 65_535
    /// `prev` of the first entry.
    package static let zeroHash = String(repeating: "0", count: 64)

    package init(seq: Int64, time: String, org: String, type: String, actor: String, integration: String?, data: JSONValue, prev: String) {
        self.seq = seq
        self.time = time
        self.org = org
        self.type = type
        self.actor = actor
        self.integration = integration
        self.data = data
        self.prev = prev
    }

    /// The entry as a JSON object.
    package var json: JSONValue {
        var members: [String: JSONValue] = [
            "v": 1, "seq": .int(seq), "time": .string(time), "org": .string(org), "type": .string(type),
            "actor": .string(actor), "data": data, "prev": .string(prev),
        ]
        if let integration { members["integration"] = .string(integration) }
        return .object(members)
    }

    /// The canonical bytes; throws when the entry is too large or holds values outside the subset.
    package func canonicalBytes() throws(PortalError) -> [UInt8] {
        let bytes = try CanonicalJSON.encode(json)
        guard bytes.count <= Self.maxBytes else {
            throw PortalError(.validationFailed, "a ledger entry may be at most \(Self.maxBytes) bytes, this one is \(bytes.count)")
        }
        return bytes
    }

    /// The canonical bytes of an entry whose `data` is already canonical (`dataBytes`): the members are
    /// written in their fixed canonical order around it, so the sequencer encodes `data` once per event,
    /// when it is validated, instead of twice (the profile in docs/performance.md). Equal to ``canonicalBytes()``.
    static func compose(
        seq: Int64, time: String, org: String, type: String, actor: String, integration: String?, dataBytes: [UInt8], prev: String
    ) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(dataBytes.count + 256)
        out += #"{"actor":"#.utf8
        CanonicalJSON.writeString(actor, into: &out)
        out += #","data":"#.utf8
        out += dataBytes
        if let integration {
            out += #","integration":"#.utf8
            CanonicalJSON.writeString(integration, into: &out)
        }
        out += #","org":"#.utf8
        CanonicalJSON.writeString(org, into: &out)
        out += #","prev":"#.utf8
        CanonicalJSON.writeString(prev, into: &out)
        out += #","seq":"#.utf8
        out += String(seq).utf8
        out += #","time":"#.utf8
        CanonicalJSON.writeString(time, into: &out)
        out += #","type":"#.utf8
        CanonicalJSON.writeString(type, into: &out)
        out += #","v":1}"#.utf8
        return out
    }

    /// Whether `bytes` are exactly the canonical form of a version 1 entry: the verifier's check, in one
    /// pass and without building the entry.
    package static func isCanonical(_ bytes: UnsafeRawBufferPointer) -> Bool {
        (try? EntryScanner.scan(bytes)) != nil
    }

    /// Parses canonical bytes back into an entry, checking that they are exactly canonical.
    package init(canonical bytes: some Collection<UInt8>) throws(PortalError) {
        let value = try JSONValue.parse(Data(bytes))
        guard case .object(let m) = value, m["v"] == 1,
              case .int(let seq)? = m["seq"], let time = m["time"]?.stringValue, let org = m["org"]?.stringValue,
              let type = m["type"]?.stringValue, let actor = m["actor"]?.stringValue,
              case .object? = m["data"], let prev = m["prev"]?.stringValue
        else {
            throw PortalError(.validationFailed, "not a version 1 ledger entry")
        }
        let known: Set<String> = ["v", "seq", "time", "org", "type", "actor", "integration", "data", "prev"]
        guard Set(m.keys).isSubset(of: known) else { throw PortalError(.validationFailed, "a ledger entry has unknown members") }
        self.init(seq: seq, time: time, org: org, type: type, actor: actor, integration: m["integration"]?.stringValue, data: m["data"]!, prev: prev)
        guard try canonicalBytes().elementsEqual(bytes) else {
            throw PortalError(.validationFailed, "the entry's bytes are not its canonical form")
        }
    }
}
