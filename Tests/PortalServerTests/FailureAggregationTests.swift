import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import Integrations
import SQLKit
import Storage
import Synchronization
import Testing

/// Refused and unauthenticated traffic costs a few ledger entries per minute, not one per request (issue 16
/// item 9): rejected webhook deliveries, uses of an expired token and refusals by role are counted per key
/// and minute, with nothing lost when the minute ends or the server stops.
@Suite("Failure aggregation")
struct FailureAggregationTests {
    // MARK: The pure core

    static let org = UUID()
    /// The start of a minute (2026-11-18T11:07:00Z).
    static let start = Date(timeIntervalSince1970: 1_795_000_020)
    static func window(_ minutes: Double = 0) -> JSONValue { .string(Timestamp.rfc3339(start + minutes * 60)) }

    static func rejection(_ endpoint: String, _ reason: String, at time: Date, bytes: Int64 = 10, org: UUID = org) -> AuditEvent {
        AuditEvent(
            organizationID: org, type: .webhookRejected, actor: "provider:\(endpoint)",
            data: ["endpoint": .string(endpoint), "scheme": "hmac", "reason": .string(reason), "status": 401, "bodyBytes": .int(bytes)], time: time
        )
    }

    @Test("a key's first refusal of a minute is appended at once; the rest of the minute is one entry with count, window, first, last and sums")
    func aggregatorCounts() {
        var aggregator = FailureAggregator()
        let keys = ["endpoint", "reason", "status"]
        #expect(aggregator.note(Self.rejection("crm", "bad_signature", at: Self.start), keyFields: keys, sum: ["bodyBytes"], immediateFirst: true) == .first)
        for i in 1..<300 {
            let outcome = aggregator.note(
                Self.rejection("crm", "bad_signature", at: Self.start + Double(i) / 10, bytes: 20), keyFields: keys, sum: ["bodyBytes"],
                collect: ["sources": i.isMultiple(of: 2) ? "aaaa" : "bbbb"], immediateFirst: true
            )
            #expect(outcome == .counted)
        }
        #expect(aggregator.note(Self.rejection("crm", "stale_timestamp", at: Self.start), keyFields: keys, immediateFirst: true) == .first)
        #expect(aggregator.pending == 299)
        // The minute has not ended: nothing to take.
        #expect(aggregator.take(before: FailureAggregator.minute(Self.start)).isEmpty)
        let entries = aggregator.take(before: FailureAggregator.minute(Self.start) + 1)
        #expect(entries.count == 1, "the stale_timestamp key had only its first refusal, appended at once")
        let data = entries.first?.data.objectValue ?? [:]
        #expect(data["count"] == 299 && data["bodyBytes"] == .int(299 * 20) && data["endpoint"] == "crm" && data["reason"] == "bad_signature")
        #expect(data["window"] == Self.window() && data["first"] == .string(Timestamp.rfc3339(Self.start + 0.1)))
        #expect(data["last"] == .string(Timestamp.rfc3339(Self.start + 29.9)) && entries.first?.time == Self.start + 29.9)
        #expect(data["sources"] == ["aaaa", "bbbb"] && data["scheme"] == "hmac" && data["status"] == 401)
        #expect(aggregator.pending == 0 && aggregator.take(before: nil).isEmpty)

        // The single entry appended at once carries count 1 and its minute.
        let single = FailureAggregator.single(Self.rejection("crm", "bad_signature", at: Self.start), collect: ["sources": "cccc"])
        #expect(single.data.objectValue?["count"] == 1 && single.data.objectValue?["window"] == Self.window())
        #expect(single.data.objectValue?["sources"] == ["cccc"])

        // Without immediateFirst every refusal waits for the aggregate (auth.failures); a new minute is a new key.
        var plain = FailureAggregator()
        for i in 0..<3 { #expect(plain.note(Self.rejection("crm", "bad_signature", at: Self.start + Double(i) * 30), keyFields: keys, immediateFirst: false) == .counted) }
        let minutes = plain.take(before: nil)
        #expect(minutes.map { $0.data.objectValue?["count"] } == [2, 1])
        #expect(minutes.map { $0.data.objectValue?["window"] } == [Self.window(), Self.window(1)])
    }

    @Test("an organization's keys beyond the cap in one minute are counted in one overflow aggregate per type; collected values are capped")
    func aggregatorBounds() {
        var aggregator = FailureAggregator(limits: .init(keysPerOrganization: 10, valuesPerSet: 3))
        let keys = ["endpoint", "reason", "status"]
        var outcomes: [FailureAggregator.Outcome] = []
        for i in 0..<25 {
            outcomes.append(aggregator.note(Self.rejection("e\(i)", "bad_signature", at: Self.start), keyFields: keys, collect: ["sources": "s\(i)"], immediateFirst: true))
        }
        #expect(outcomes.filter { $0 == .first }.count == 10 && outcomes.filter { $0 == .overflow }.count == 15)
        // A key already counted this minute stays countable; another organization has its own cap.
        #expect(aggregator.note(Self.rejection("e0", "bad_signature", at: Self.start), keyFields: keys, immediateFirst: true) == .counted)
        #expect(aggregator.note(Self.rejection("e0", "bad_signature", at: Self.start, org: UUID()), keyFields: keys, immediateFirst: true) == .first)
        let entries = aggregator.take(before: nil)
        #expect(entries.count == 2)
        let overflow = entries.first { $0.data.objectValue?["endpoint"] == "overflow" }?.data.objectValue ?? [:]
        #expect(overflow["count"] == 15 && overflow["reason"] == "overflow" && overflow["status"] == "overflow" && overflow["scheme"] == nil)
        #expect(overflow["sources"]?.arrayValue?.count == 3)
        #expect(entries.first { $0.data.objectValue?["endpoint"] == "e0" }?.data.objectValue?["count"] == 1)
        // The next minute starts with the full allowance again.
        #expect(aggregator.note(Self.rejection("e99", "bad_signature", at: Self.start + 60), keyFields: keys, immediateFirst: true) == .first)
    }

    @Test("the recorder hashes sources and keeps aggregates the ledger refused for the next flush")
    func recorderRetries() async throws {
        let clock = ManualWallClock(Self.start)
        let trail = FlakyTrail()
        let recorder = AuthFailureRecorder(audit: trail, key: SymmetricKey(size: .bits256), clock: clock)
        for _ in 0..<5 { try await recorder.refused(Self.rejection("crm", "bad_signature", at: clock.now()), keyFields: ["endpoint", "reason"], address: "203.0.113.7") }
        #expect(trail.appended.count == 1 && recorder.pending == 4)
        clock.advance(by: 60)
        trail.failing = true
        await #expect(throws: (any Error).self) { try await recorder.flush() }
        trail.failing = false
        try await recorder.flush()
        let counts = trail.appended.compactMap { event -> Int64? in if case .int(let n)? = event.data.objectValue?["count"] { n } else { nil } }
        #expect(counts == [1, 4])
        let text = trail.appended.map { JSONValue.encodeText($0.data) }.joined()
        #expect(!text.contains("203.0.113.7"))
        #expect(trail.appended.allSatisfy { $0.data.objectValue?["sources"]?.arrayValue?.count == 1 })
    }

    // MARK: Over HTTP

    /// The entries of `type` in acme's ledger.
    static func entries(_ portal: Portal, _ type: String, org: UUID? = nil) async throws -> [LedgerEntry] {
        try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
            try await db.read { tx in
                try await LedgerStore(tx).entries(org ?? portal.acme.id, from: 0, limit: 100_000).map { try LedgerEntry(canonical: $0.bytes) }.filter { $0.type == type }
            }
        }
    }

    /// The sum of the entries' `count` (an entry without one counts 1).
    static func total(_ entries: [LedgerEntry]) -> Int64 {
        entries.reduce(0) { sum, entry in if case .int(let n)? = entry.data.objectValue?["count"] { sum + n } else { sum + 1 } }
    }

    /// Runs `count` requests, eight at a time.
    static func concurrently(_ count: Int, _ request: @escaping @Sendable (Int) async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask { for i in stride(from: worker, to: count, by: 8) { try await request(i) } }
            }
            try await group.waitForAll()
        }
    }

    /// Registers acme's `crm` endpoint (generic HMAC) and returns its path.
    static func endpoint(_ portal: Portal) async throws -> String {
        let integration = try await portal.createIntegration(name: "CRM")
        let created = try await portal.call(.post, "/portal/integrations/\(integration)/webhooks", token: portal.token("acme.admin"), json: """
            {"endpoint":"/webhooks/crm","secret":"crm-webhook-secret-1","signatureHeader":"X-CRM-Signature","signatureMethod":"hmac-sha256"}
            """)
        #expect(created.status == .created, "\(created.body.string)")
        return "/webhooks/acme/crm"
    }

    static func forged(_ portal: Portal, _ path: String, _ i: Int) async throws -> TestResponse {
        let body = #"{"type":"user.created","data":{"id":"u-\#(i)"}}"#
        let signature = "sha256=" + Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(body.utf8), using: SymmetricKey(data: Array("forged".utf8))))
        return try await portal.client.execute(
            uri: path, method: .post, headers: [.contentType: "application/json", HTTPField.Name("X-CRM-Signature")!: signature], body: ByteBuffer(string: body)
        )
    }

    @Test("300 bad webhook signatures in a minute are two webhook.rejected entries whose counts sum to 300 once the minute ends", arguments: Backend.available)
    func webhookRejections(backend: Backend) async throws {
        let clock = ManualWallClock(Date())
        try await withPortal(backend, clock: clock) { portal in
            let path = try await Self.endpoint(portal)
            let statuses = Mutex<[Int]>([])
            try await Self.concurrently(300) { i in
                let status = try await Self.forged(portal, path, i).status.code
                statuses.withLock { $0.append(status) }
            }
            #expect(statuses.withLock { $0 }.allSatisfy { $0 == 401 } && statuses.withLock { $0.count } == 300)
            // The first is in the ledger at once; the other 299 wait for their minute to end.
            let before = try await Self.entries(portal, "webhook.rejected")
            #expect(before.count == 1 && Self.total(before) == 1)
            #expect(portal.services.authFailures.pending == 299)

            clock.advance(by: 60)
            var rejected: [LedgerEntry] = []
            #expect(try await eventually {
                rejected = try await Self.entries(portal, "webhook.rejected")
                return Self.total(rejected) == 300
            })
            #expect(rejected.count == 2)
            let aggregate = try #require(rejected.last?.data.objectValue)
            #expect(aggregate["count"] == 299 && aggregate["endpoint"] == "crm" && aggregate["reason"] == "bad_signature" && aggregate["status"] == 401)
            #expect(aggregate["scheme"] == "hmac" && aggregate["window"] == rejected.first?.data.objectValue?["window"])
            #expect(aggregate["first"]?.stringValue != nil && aggregate["last"]?.stringValue != nil && aggregate["bodyBytes"] != nil)
            #expect(rejected.allSatisfy { $0.actor == "provider:crm" && $0.integration != nil })
            #expect(portal.services.authFailures.pending == 0)
        }
    }

    @Test("50 uses of an expired token are apitoken.used_expired entries whose counts sum to 50, and auth.failures counts them too", arguments: Backend.available)
    func expiredToken(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            try await Self.concurrently(50) { _ in
                let response = try await portal.call(.get, "/portal/whoami", token: portal.token("acme.expired"))
                #expect(response.status == .unauthorized)
            }
            try await portal.services.authFailures.flush(force: true)
            let used = try await Self.entries(portal, "apitoken.used_expired")
            #expect(Self.total(used) == 50)
            // A few entries per minute the calls spanned (a busy machine may span several): the first, the rest,
            // and a remainder when an append is retried or a flush is forced mid-minute; never one per use.
            let windows = Dictionary(grouping: used) { $0.data.objectValue?["window"]?.stringValue ?? "" }
            #expect(windows.values.allSatisfy { (1...4).contains($0.count) }, "per minute: \(windows.mapValues(\.count))")
            #expect(used.count <= 12, "\(used.count) entries for 50 uses")
            #expect(Set(used.compactMap { $0.data.objectValue?["tokenId"]?.stringValue }).count == 1)
            #expect(used.allSatisfy { $0.data.objectValue?["owner"] == "late" && $0.data.objectValue?["window"] != nil })
            let failures = try await Self.entries(portal, "auth.failures", org: Organization.platformID)
            #expect(Self.total(failures) == 50)
        }
    }

    @Test("40 forbidden calls on two routes are access.denied entries whose counts sum to 40, 20 per route", arguments: Backend.available)
    func forbidden(backend: Backend) async throws {
        let clock = ManualWallClock(Date())
        try await withPortal(backend, clock: clock) { portal in
            let integration = try await portal.createIntegration()
            try await Self.concurrently(40) { i in
                let response = i.isMultiple(of: 2)
                    ? try await portal.call(.delete, "/portal/integrations/\(integration)", token: portal.token("acme.auditor"))
                    : try await portal.call(.post, "/portal/tokens", token: portal.token("acme.auditor"), json: #"{"role":"admin","owner":"x"}"#)
                #expect(response.status == .forbidden)
            }
            #expect(Self.total(try await Self.entries(portal, "access.denied")) == 2)
            clock.advance(by: 61)
            var denied: [LedgerEntry] = []
            #expect(try await eventually {
                denied = try await Self.entries(portal, "access.denied")
                return Self.total(denied) == 40
            })
            #expect(denied.count == 4)
            for route in ["/portal/integrations/{id}", "/portal/tokens"] {
                let of = denied.filter { $0.data.objectValue?["route"] == .string(route) }
                #expect(Self.total(of) == 20 && of.count == 2, "\(route)")
                #expect(of.allSatisfy { $0.data.objectValue?["status"] == 403 && $0.data.objectValue?["tokenId"]?.stringValue == $0.actor })
            }
        }
    }

    @Test("counts still pending when the server stops are appended during its graceful shutdown", arguments: Backend.available)
    func flushedAtShutdown(backend: Backend) async throws {
        try await TestDatabase.with(backend) { test, db in
            let org = Organization(id: UUID(), slug: "acme", name: "Acme", createdAt: Date())
            let sequencer = LedgerSequencer(database: db, logger: quietLogger)
            let authority = APITokenAuthority(database: db, audit: sequencer)
            let auditor = try await db.write { tx in
                try await OrganizationStore(tx).insert(org)
                return try await authority.issue(organizationID: org.id, role: .auditor, owner: "auditor@acme", actor: "system:test", in: tx).token
            }
            try await sequencer.drainAll()
            var settings = PortalSettings()
            settings.databaseURL = test.url
            settings.masterKey = MasterKeyRing.generateBase64()
            settings.port = 0
            let app = try buildApplication(ServerConfiguration(settings: settings, clock: ManualWallClock(Date()), logger: quietLogger, bootstrap: false))
            try await app.test(.router) { client in
                for _ in 0..<25 {
                    let response = try await client.execute(uri: "/portal/tokens", method: .post, headers: [.authorization: "Bearer \(auditor)", .contentType: "application/json"], body: ByteBuffer(string: #"{"role":"admin","owner":"x"}"#))
                    #expect(response.status == .forbidden)
                }
            }
            // The server has stopped (the clock never left the minute): the 24 after the first were flushed on the way out.
            let denied = try await db.read { tx in
                try await LedgerStore(tx).entries(org.id, from: 0, limit: 1_000).map { try LedgerEntry(canonical: $0.bytes) }.filter { $0.type == "access.denied" }
            }
            #expect(denied.count == 2 && Self.total(denied) == 25)
        }
    }

    @Test("a SOC 2 bundle's CC6.6 population has one row per webhook.rejected aggregate, with its count and window", arguments: [Backend.sqlite])
    func population(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let path = try await Self.endpoint(portal)
            try await Self.concurrently(30) { i in _ = try await Self.forged(portal, path, i) }
            try await portal.services.authFailures.flush(force: true)
            let rejected = try await Self.entries(portal, "webhook.rejected")
            let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("failure-population-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: scratch) }
            let file = try await portal.todaysSOC2Bundle(into: scratch)
            let root = try LedgerBundleVerifier().unpack(bundle: file.path, into: scratch)
            let rows = (try JSONValue.parse(Data(contentsOf: root.appendingPathComponent("populations/cc6.6.json"))).arrayValue ?? [])
                .compactMap(\.objectValue).filter { $0["type"] == "webhook.rejected" }
            #expect(rows.count == rejected.count && rows.count < 30, "\(rows.count) rows for 30 rejections")
            let counts = rows.map { row -> Int64 in if case .int(let n)? = row["fields"]?.objectValue?["count"] { n } else { 0 } }
            #expect(counts.reduce(0, +) == 30)
            #expect(rows.allSatisfy { $0["fields"]?.objectValue?["window"]?.stringValue != nil })
        }
    }
}

/// An audit trail that records appended events in memory and refuses appends while `failing`.
final class FlakyTrail: AuditTrail {
    private let state = Mutex<(events: [AuditEvent], failing: Bool)>(([], false))

    var appended: [AuditEvent] { state.withLock { $0.events } }
    var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    func record(_ event: AuditEvent, in db: Transaction) async throws { try await append([event]) }
    func record(_ events: [AuditEvent], in db: Transaction) async throws { try await append(events) }
    func append(_ events: [AuditEvent]) async throws {
        try state.withLock { state in
            if state.failing { throw PortalError(.unavailable, "the ledger is down") }
            state.events += events
        }
    }
    func append<Row: CompanionRow>(_ events: [AuditEvent], with row: Row) async throws -> Bool {
        try await append(events)
        return true
    }
    func wake() {}
}
