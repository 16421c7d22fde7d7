package import Foundation
package import PortalCore
package import Storage

/// Something that happened and must be in the ledger: the `type`, `actor` and `data` of a ledger entry
/// (DESIGN section 4.1), before the ledger gives it a sequence number and chains it.
package struct AuditEvent: Sendable, Equatable {
    package var organizationID: UUID
    /// An ``AuditEventType``'s raw value.
    package private(set) var type: String
    /// An API token id, or `system:<service>`.
    package var actor: String
    package var integrationID: UUID?
    /// An object of strings, integers, arrays and objects; never raw personal data or secrets.
    package var data: JSONValue
    package var time: Date

    package init(organizationID: UUID, type: AuditEventType, actor: String, integrationID: UUID? = nil, data: JSONValue, time: Date) {
        self.init(organizationID: organizationID, rawType: type.rawValue, actor: actor, integrationID: integrationID, data: data, time: time)
    }

    /// An event whose type was already written once (read back from the outbox, or copied from another
    /// event): a type from the catalogue as text.
    package init(organizationID: UUID, rawType type: String, actor: String, integrationID: UUID? = nil, data: JSONValue, time: Date) {
        self.organizationID = organizationID
        self.type = type
        self.actor = actor
        self.integrationID = integrationID
        self.data = data
        self.time = time
    }

    /// The actor string of a system service.
    package static func system(_ service: String) -> String { "system:\(service)" }

    /// The event as queued in the outbox.
    var outboxJSON: JSONValue {
        var members: [String: JSONValue] = [
            "type": .string(type), "actor": .string(actor), "data": data, "time": .string(Timestamp.rfc3339(time)),
        ]
        if let integrationID { members["integration"] = .string(integrationID.uuidString.lowercased()) }
        return .object(members)
    }

    /// Throws unless the event can become an entry (only the ledger's JSON subset, at most 65,535 bytes);
    /// returns the canonical bytes of `data`, from which ``entryBytes(seq:slug:prev:data:)`` builds the entry.
    @discardableResult
    func validate() throws(PortalError) -> [UInt8] {
        guard case .object = data else { throw PortalError(.internal, "an audit event's data is an object") }
        let dataBytes = try CanonicalJSON.encode(data)
        // Far below the limit (the usual case), composing the entry to measure it is not needed: the other
        // members take at most 600 bytes, plus the type and actor escaped (at most 6 bytes a byte).
        if dataBytes.count + 6 * (type.utf8.count + actor.utf8.count) + 600 <= LedgerEntry.maxBytes { return dataBytes }
        // The longest the entry can be: the largest sequence number and slug.
        let longest = entryBytes(seq: Int64.max, slug: String(repeating: "x", count: 63), prev: LedgerEntry.zeroHash, data: dataBytes)
        guard longest.count <= LedgerEntry.maxBytes else {
            throw PortalError(.validationFailed, "a ledger entry may be at most \(LedgerEntry.maxBytes) bytes, this one would be \(longest.count)")
        }
        return dataBytes
    }

    /// The canonical bytes of the entry this event becomes at `seq` after `prev` in the ledger of `slug`,
    /// given the canonical bytes of its data.
    func entryBytes(seq: Int64, slug: String, prev: String, data dataBytes: [UInt8]) -> [UInt8] {
        LedgerEntry.compose(
            seq: seq, time: Timestamp.rfc3339(time), org: slug, type: type, actor: actor,
            integration: integrationID?.uuidString.lowercased(), dataBytes: dataBytes, prev: prev
        )
    }
}

/// A row written in the sequencer's batch transaction together with the entries it accompanies.
package protocol CompanionRow: Sendable {
    /// Writes rows of this type from several calls at once; returns the positions in `rows` of those it
    /// declined (a replay of a row already stored, say): their calls' events are not appended, and
    /// ``AuditTrail/append(_:with:)`` returns false to them.
    static func insert(_ rows: [Self], in db: Transaction) async throws -> Set<Int>
}

/// How every capability records evidence (DESIGN section 2): the one protocol the ledger implements.
package protocol AuditTrail: Sendable {
    /// Queues `event` in the caller's write transaction (the transactional outbox): it commits, or rolls
    /// back, with the state change it describes, and the sequencer chains it within milliseconds.
    func record(_ event: AuditEvent, in db: Transaction) async throws

    /// Queues several events in the caller's write transaction, with one statement.
    func record(_ events: [AuditEvent], in db: Transaction) async throws

    /// Appends events that accompany no other state change; returns once they are durable in the chain.
    func append(_ events: [AuditEvent]) async throws

    /// Appends events together with a row of their own, written in the same batch transaction (DESIGN
    /// 4.1: an outbound call's `integration_requests` row and its `request.*` entry); returns once both
    /// are durable. The rows of one type from every call in a batch are written together (one statement),
    /// so the row must hold only what the caller has already validated. Returns false when the row's
    /// `insert` declined it: then neither the row nor the events were written.
    @discardableResult
    func append<Row: CompanionRow>(_ events: [AuditEvent], with row: Row) async throws -> Bool

    /// Tells the sequencer that a transaction with recorded events committed, so it drains now rather than
    /// at its next poll.
    func wake()
}

/// Seals and opens secrets (the credential vault); the ledger uses it for its signing keys.
package protocol SecretSealer: Sendable {
    func seal(_ plaintext: Data, organizationID: UUID, context: String, in db: Transaction) async throws -> JSONValue
    func open(_ envelope: JSONValue, organizationID: UUID, context: String, in db: Transaction) async throws -> Data
}
