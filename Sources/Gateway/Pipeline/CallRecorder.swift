import Crypto
import Foundation
import Integrations
import Ledger
import PortalCore
import Storage

/// The pipeline's recorder: every call, refused ones included, leaves one `integration_requests` row and
/// one `request.completed` or `request.failed` ledger entry, written together in the sequencer's batch
/// (DESIGN 4.1), and is told to monitoring. No credential value reaches either: stored bodies are redacted.
extension Gateway {
    /// Writes the call's row and ledger entry in one batch transaction, and waits until both are durable.
    func record(_ call: CallRecord, started: ContinuousClock.Instant) async throws {
        let now = clock.now()
        let duration = started.duration(to: .now)
        let micros = Int64(duration.components.seconds) * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
        var data: [String: JSONValue] = [
            "method": .string(call.method), "endpoint": .string(call.template), "host": .string(call.url.host ?? ""),
            "pathDigest": .string(Hex.encode(SHA256.hash(data: Array((call.url.path + (call.url.query.map { "?" + $0 } ?? "")).utf8)))),
            "outcome": .string(call.outcome.rawValue), "attempts": .int(Int64(call.attempts)), "durationMicros": .int(micros),
            "cache": .string(call.cache), "callId": .string(call.id.uuidString.lowercased()),
        ]
        if let status = call.status { data["status"] = .int(Int64(status)) }
        let category = call.outcome == .success ? nil : call.category ?? (call.outcome == .throttled ? "rate_limit" : call.outcome == .refused ? "business" : CallOutcome.category(status: call.status))
        if let category { data["errorCategory"] = .string(category) }
        if let digest = call.requestDigest { data["requestBodyDigest"] = .string(digest) }
        if !call.subjects.isEmpty { data["subjects"] = .array(call.subjects.map(JSONValue.string)) }
        if let digest = call.responseDigest { data["responseBodyDigest"] = .string(digest) }
        // Data minimization: the names of the fields removed (never their values).
        if !call.stripped.isEmpty { data["strippedFields"] = .array(call.stripped.prefix(50).map(JSONValue.string)) }
        let integration = call.integration
        let row = IntegrationRequestRecord(
            id: call.id, organizationID: integration.organizationID, integrationID: integration.id, method: call.method,
            endpoint: call.template, requestBody: call.storedRequest.map { Self.redact($0, secrets: Authenticator.secrets(of: integration)) },
            responseStatus: call.status, responseBody: call.storedResponse, durationMs: Int(micros / 1000),
            errorMessage: call.error ?? (call.outcome == .success ? nil : "HTTP \(call.status ?? 0)"), createdAt: now
        )
        let event = AuditEvent(
            organizationID: integration.organizationID, type: call.outcome == .success ? .requestCompleted : .requestFailed,
            actor: call.actor, integrationID: integration.id, data: .object(data), time: now
        )
        try await audit.append([event], with: RequestRow(record: row))
        observer.observe(.call(.init(
            organizationID: integration.organizationID, integrationID: integration.id, endpoint: call.template, outcome: call.outcome.rawValue,
            category: category, durationMicros: micros, at: now, error: row.errorMessage, quotaRemaining: call.quotaRemaining, quotaLimit: call.quotaLimit
        )))
    }

    /// The provider's remaining quota and limit from its rate-limit headers (`X-RateLimit-*` or the IETF
    /// draft's `RateLimit-*`), when it sent both.
    static func quota(_ headers: [(name: String, value: String)]) -> (Int?, Int?) {
        func value(_ names: [String]) -> Int? {
            for (name, value) in headers where names.contains(name.lowercased()) {
                if let n = Int(value.split(separator: ",").first?.trimmingCharacters(in: .whitespaces) ?? "") { return n }
            }
            return nil
        }
        let remaining = value(["x-ratelimit-remaining", "ratelimit-remaining"])
        let limit = value(["x-ratelimit-limit", "ratelimit-limit"])
        return remaining != nil && limit != nil ? (remaining, limit) : (nil, nil)
    }

    /// Records a call that ends without an answer (refused, throttled, no token, no connection) and returns
    /// the error to throw, naming the record.
    func refuse(
        _ record: CallRecord, outcome: CallOutcome, message: String, _ error: any Error, started: ContinuousClock.Instant, transient: Bool
    ) async throws -> any Error {
        var record = record
        record.outcome = outcome
        record.error = message
        if !transient { try await self.record(record, started: started) }
        return Self.naming(error, record, transient: transient)
    }

    /// A refusal or failure that was recorded, naming its record (`callId` in the problem document), so the
    /// client can cite the call the ledger holds; a test of an unsaved configuration is recorded nowhere.
    static func naming(_ error: any Error, _ record: CallRecord, transient: Bool) -> any Error {
        guard !transient, var error = error as? PortalError else { return error }
        error.details["callId"] = .string(record.id.uuidString.lowercased())
        return error
    }

    /// A call's `integration_requests` row, written with its ledger entry in the sequencer's batch.
    struct RequestRow: CompanionRow {
        var record: IntegrationRequestRecord

        static func insert(_ rows: [RequestRow], in db: Transaction) async throws -> Set<Int> {
            try await IntegrationRequestStore(db).insert(rows.map(\.record))
            return []
        }
    }

    /// A response body as JSON when it parses, else as text (binary as base64).
    static func body(_ bytes: [UInt8]) -> JSONValue {
        guard !bytes.isEmpty else { return .null }
        if let json = try? JSONValue.parse(Data(bytes)) { return json }
        if let text = String(validating: bytes, as: UTF8.self) { return .string(text) }
        return ["base64": .string(Data(bytes).base64EncodedString())]
    }

    /// `value` with every occurrence of a secret replaced by `••••`.
    static func redact(_ value: JSONValue, secrets: [String]) -> JSONValue {
        switch value {
        case .string(var s):
            for secret in secrets where s.contains(secret) { s = s.replacingOccurrences(of: secret, with: "••••") }
            return .string(s)
        case .array(let items): return .array(items.map { redact($0, secrets: secrets) })
        case .object(let members): return .object(members.mapValues { redact($0, secrets: secrets) })
        default: return value
        }
    }
}

/// What the gateway learned about one call, for its row and ledger entry.
struct CallRecord {
    /// The call's `integration_requests` row id, also in its ledger entry (`callId`) and its answer.
    var id: UUID
    var integration: OutboundIntegration
    var method: String
    var template: String
    var url: URL
    var actor: String
    var requestDigest: String?
    /// Fields removed from the body by data minimization.
    var stripped: [String] = []
    var storedRequest: JSONValue?
    var attempts = 0
    var status: Int?
    var outcome: CallOutcome = .networkError
    var error: String?
    var responseDigest: String?
    var storedResponse: JSONValue?
    /// `HIT`, `MISS` or `BYPASS`.
    var cache = "BYPASS"
    /// The error category when the status does not tell it (a failed token request: `authentication`).
    var category: String?
    /// Commitments of the data subjects the call discloses.
    var subjects: [String] = []
    /// The provider's rate-limit headers, when it sent them.
    var quotaRemaining: Int?
    var quotaLimit: Int?

    init(id: UUID, integration: OutboundIntegration, plan: CallPlan, actor: String) {
        self.id = id
        self.integration = integration
        method = plan.method
        template = plan.template
        url = plan.url
        self.actor = actor
        requestDigest = plan.requestDigest
        stripped = plan.stripped
        storedRequest = plan.storedRequest
    }
}
