import Foundation
package import Logging
package import PortalCore
import ServiceLifecycle
package import Storage
import Synchronization

/// Appends audit events to the per-organization hash chains with group commit (DESIGN section 4.4).
///
/// Each batch is one write transaction: the events waiting in memory (``append(_:)``) and those queued in
/// the outbox (``record(_:in:)``, from this or any other process), grouped by organization; per
/// organization the head is re-read under the ledger lock, entries, tiles and the new head are written,
/// and the outbox rows are deleted. Callers of ``append(_:)`` resume only after the commit.
package final class LedgerSequencer: AuditTrail, Service {
    /// Tuning of the batch loop.
    package struct Configuration: Sendable {
        /// How often the outbox is polled for rows written by other processes.
        package var pollInterval: Duration
        /// The most events in one transaction.
        package var batchSize: Int

        package init(pollInterval: Duration = .milliseconds(100), batchSize: Int = 512) {
            self.pollInterval = pollInterval
            self.batchSize = batchSize
        }
    }

    private struct Waiting {
        var event: AuditEvent
        /// The canonical bytes of the event's data, from validation.
        var data: [UInt8]
        var completion: Completion
        /// A row to write in the same transaction (on the first event of an `append(_:with:)` call).
        var row: (any CompanionRow)?
    }

    private let database: Database
    private let clock: any WallClock
    private let ids: IdentifierGenerator
    private let logger: Logger
    private let configuration: Configuration
    private let waiting = Mutex<[Waiting]>([])
    private let wakeups: AsyncStream<Void>
    private let wakeupContinuation: AsyncStream<Void>.Continuation
    /// Serializes batches of this process (the run loop and explicit ``drain()`` calls).
    private let batchLock = AsyncSerialLock()
    /// Each ledger's right edge after this process's last committed batch, so a batch reads only the head
    /// (to check that no other instance appended since) instead of the head and every edge tile.
    private let edges = Mutex<[UUID: LedgerEdge]>([:])
    private let counters = Mutex(Statistics())
    /// Whether the outbox may hold rows: set by ``wake()``, the poll and a full outbox batch. Batches of
    /// in-memory events alone skip the outbox query (the profile in docs/performance.md: a statement per batch).
    private let outboxPending = Atomic<Bool>(true)

    /// What the sequencer has done since it started: for benchmarks and monitoring.
    package struct Statistics: Sendable, Equatable {
        package var batches = 0
        package var entries = 0
    }

    package var statistics: Statistics { counters.withLock { $0 } }

    package init(
        database: Database, clock: any WallClock = SystemWallClock(), ids: IdentifierGenerator = .shared,
        logger: Logger, configuration: Configuration = .init()
    ) {
        self.database = database
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.configuration = configuration
        (wakeups, wakeupContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: AuditTrail

    package func record(_ event: AuditEvent, in db: Transaction) async throws {
        try event.validate()
        try await LedgerStore(db).enqueue(id: ids.next(), organizationID: event.organizationID, event: event.outboxJSON, at: clock.now())
    }

    package func record(_ events: [AuditEvent], in db: Transaction) async throws {
        for event in events { _ = try event.validate() }
        try await LedgerStore(db).enqueue(events.map { (ids.next(), $0.organizationID, $0.outboxJSON) }, at: clock.now())
    }

    package func append(_ events: [AuditEvent]) async throws {
        try await enqueue(events, row: nil)
    }

    @discardableResult
    package func append<Row: CompanionRow>(_ events: [AuditEvent], with row: Row) async throws -> Bool {
        try await enqueue(events, row: row)
    }

    /// Queues the events (and row) for the next batch; returns false if the row was declined.
    @discardableResult
    private func enqueue(_ events: [AuditEvent], row: (any CompanionRow)?) async throws -> Bool {
        var data: [[UInt8]] = []
        data.reserveCapacity(events.count)
        for event in events { data.append(try event.validate()) }
        guard !events.isEmpty else { return true }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
            // One continuation for the whole list: it resumes when the last of them is committed.
            let completion = Completion(count: events.count, continuation: continuation)
            waiting.withLock { list in
                for (index, (event, bytes)) in zip(events, data).enumerated() {
                    list.append(Waiting(event: event, data: bytes, completion: completion, row: index == 0 ? row : nil))
                }
            }
            wakeupContinuation.yield()
        }
    }

    package func wake() {
        outboxPending.store(true, ordering: .releasing)
        wakeupContinuation.yield()
    }

    /// Runs `body` while this sequencer's loop runs (a command outside `portal serve`, a test), then
    /// sequences whatever is still queued and stops the loop: every ``append(_:)`` made in `body` returns
    /// once its entry is durable, as in the server.
    package func whileRunning<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.run() }
            do {
                let result = try await body()
                _ = try await drainAll()
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }

    // MARK: Service

    /// Drains on every wake-up and poll until shutdown, then drains what is left.
    package func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            let interval = configuration.pollInterval
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    self.wake()
                }
            }
            // Not under the writer thread's executor preference: the shutdown-aware sequence is a merge
            // (swift-async-algorithms) that holds its lock across an await, and under a preference that
            // await consults the task's status lock, which a cancellation on another thread holds while it
            // waits for the merge's lock: a deadlock (seen in the append benchmark; docs/decisions.md).
            for await _ in wakeups.cancelOnGracefulShutdown() {
                do {
                    while try await drain() > 0 {}
                } catch is CancellationError {
                    break
                } catch {
                    logger.error("ledger batch failed; retrying at the next poll", metadata: ["portal.error": "\(error)"])
                }
            }
            group.cancelAll()
        }
        _ = try? await drainAll()
        let abandoned = waiting.withLock { list -> [Waiting] in
            defer { list.removeAll() }
            return list
        }
        for item in abandoned { item.completion.done(PortalError(.unavailable, "the ledger sequencer stopped")) }
    }

    /// Drains until the outbox and the in-memory queue are empty; returns the number of entries appended.
    @discardableResult
    package func drainAll() async throws -> Int {
        outboxPending.store(true, ordering: .releasing)
        var total = 0
        while true {
            let n = try await drain()
            total += n
            if n == 0 { return total }
        }
    }

    /// Appends one batch; returns the number of entries appended (0 when there was nothing to do).
    @discardableResult
    package func drain() async throws -> Int {
        try await batchLock.withLock { try await drainLocked() }
    }

    private func drainLocked() async throws -> Int {
        let batchSize = configuration.batchSize
        let direct = waiting.withLock { list -> [Waiting] in
            var count = min(batchSize, list.count)
            // Never split one call's events (and its rows) between two batches.
            while count > 0, count < list.count, list[count].completion === list[count - 1].completion { count += 1 }
            let taken = Array(list.prefix(count))
            list.removeFirst(taken.count)
            return taken
        }
        let now = clock.now()
        let checkOutbox = outboxPending.exchange(false, ordering: .acquiringAndReleasing)
        do {
            let (appended, declinedCalls) = try await database.write { db -> ([UUID: LedgerEdge], Set<ObjectIdentifier>) in
                let store = LedgerStore(db)
                let room = batchSize - direct.count
                let queued = checkOutbox && room > 0 ? try await store.takeOutbox(limit: room) : []
                // A full page may mean more rows are waiting.
                if checkOutbox && (room == 0 || queued.count == room) { outboxPending.store(true, ordering: .releasing) }
                var byOrganization: [UUID: [(AuditEvent, [UInt8])]] = [:]
                for row in queued {
                    let event = try Self.event(from: row)
                    byOrganization[row.organizationID, default: []].append((event, try event.validate()))
                }
                // The companion rows first: a call whose row is declined appends none of its events.
                let withRows = direct.filter { $0.row != nil }
                let declined = try await Self.insertCompanions(withRows.map { $0.row! }, in: db)
                let declinedCalls = Set(declined.map { ObjectIdentifier(withRows[$0].completion) })
                for item in direct where !declinedCalls.contains(ObjectIdentifier(item.completion)) {
                    byOrganization[item.event.organizationID, default: []].append((item.event, item.data))
                }
                var edges: [UUID: LedgerEdge] = [:]
                // A fixed lock order across organizations keeps two instances from deadlocking.
                for organizationID in byOrganization.keys.sorted(by: { $0.uuidString < $1.uuidString }) {
                    edges[organizationID] = try await append(byOrganization[organizationID]!, to: organizationID, store: store, db: db, at: now)
                }
                try await store.deleteOutbox(queued.map(\.id))
                return (edges, declinedCalls)
            }
            edges.withLock { cached in cached.merge(appended) { $1 } }
            let count = byCount(appended)
            if count > 0 { counters.withLock { $0.batches += 1; $0.entries += count } }
            // Declined only once the batch committed: a rolled-back batch may have held the row that declined it.
            for item in direct {
                if declinedCalls.contains(ObjectIdentifier(item.completion)) { item.completion.decline() } else { item.completion.done() }
            }
            return count
        } catch {
            // The batch rolled back; the next one reloads these ledgers' edges from storage and retakes
            // the outbox rows.
            edges.withLock { $0.removeAll() }
            if checkOutbox { outboxPending.store(true, ordering: .releasing) }
            for item in direct { item.completion.done(error) }
            throw error
        }
    }

    /// Writes the batch's companion rows, one `insert` per row type (the profile in docs/performance.md: a statement per
    /// call serialized the batch); returns the positions in `rows` of the declined ones.
    static func insertCompanions(_ rows: [any CompanionRow], in db: Transaction) async throws -> Set<Int> {
        var groups: [ObjectIdentifier: [Int]] = [:]
        var order: [ObjectIdentifier] = []
        for (index, row) in rows.enumerated() {
            let key = ObjectIdentifier(type(of: row))
            if groups[key] == nil { order.append(key) }
            groups[key, default: []].append(index)
        }
        var declined = Set<Int>()
        for key in order {
            guard let positions = groups[key], let first = positions.first else { continue }
            let skipped = try await insertGroup(rows[first], positions.map { rows[$0] }, in: db)
            for index in skipped where positions.indices.contains(index) { declined.insert(positions[index]) }
        }
        return declined
    }

    private static func insertGroup<Row: CompanionRow>(_ first: Row, _ group: [any CompanionRow], in db: Transaction) async throws -> Set<Int> {
        try await Row.insert(group.map { $0 as! Row }, in: db)
    }

    private func byCount(_ edges: [UUID: LedgerEdge]) -> Int { edges.values.reduce(0) { $0 + $1.appended } }

    /// Appends `events` to one organization's ledger inside the caller's write transaction; returns the new
    /// edge (cached only once the transaction commits).
    ///
    /// With the edge cached from this instance's last batch, the batch is computed on it and written by
    /// one conditional call (`LedgerStore.append`: one round trip on PostgreSQL), which writes nothing if
    /// another appender moved the head meanwhile. Otherwise (the first batch, or a moved head) the ledger is
    /// locked, its edge read back, and the batch written statement by statement.
    private func append(_ events: [(event: AuditEvent, data: [UInt8])], to organizationID: UUID, store: LedgerStore, db: Transaction, at now: Date) async throws -> LedgerEdge {
        if let cached = edges.withLock({ $0[organizationID] }), cached.head.size > 0 {
            let batch = try Self.extend(cached, with: events)
            if try await store.append(organizationID, expected: cached.head, entries: batch.rows, tiles: batch.tiles, head: batch.edge.head, at: now) {
                return batch.edge
            }
        }
        try await store.lock(organizationID)
        let head = try await store.head(organizationID) ?? LedgerHead(size: 0, root: Merkle.emptyRoot, lastHash: [UInt8](repeating: 0, count: 32))
        var state: LedgerEdge
        if let cached = edges.withLock({ $0[organizationID] }), cached.head == head {
            state = cached
        } else {
            guard let slug = try await OrganizationStore(db).find(id: organizationID)?.slug else {
                throw PortalError(.storage, "an audit event names an organization that does not exist")
            }
            var tiles: [TileEdge.Tile] = []
            for key in TileEdge.edgeIndices(size: head.size) {
                guard let bytes = try await store.tile(organizationID, level: key.level, index: key.index) else {
                    throw PortalError(.storage, "ledger tile \(key.level)/\(key.index) of \(slug) is missing")
                }
                tiles.append(TileEdge.Tile(level: key.level, index: key.index, hashes: LedgerTiles.split(bytes)))
            }
            state = LedgerEdge(slug: slug, head: head, edge: TileEdge(size: head.size, tiles: tiles), appended: 0)
        }
        let batch = try Self.extend(state, with: events)
        try await store.write(organizationID, entries: batch.rows, tiles: batch.tiles, head: batch.edge.head, at: now)
        return batch.edge
    }

    /// The entries, changed tiles and new edge of `events` appended to `state` (pure).
    static func extend(_ state: LedgerEdge, with events: [(event: AuditEvent, data: [UInt8])]) throws -> (rows: [LedgerEntryRow], tiles: [LedgerTileRow], edge: LedgerEdge) {
        var edge = state.edge
        var lastHash = state.head.lastHash
        var rows: [LedgerEntryRow] = []
        rows.reserveCapacity(events.count)
        for (event, data) in events {
            let seq = edge.size
            let bytes = event.entryBytes(seq: seq, slug: state.slug, prev: Hex.encode(lastHash), data: data)
            let hash = Merkle.leafHash(bytes)
            rows.append(LedgerEntryRow(seq: seq, bytes: bytes, hash: hash))
            edge.append(hash)
            lastHash = hash
        }
        let tiles = edge.changedTiles.map { LedgerTileRow(level: $0.level, index: $0.index, hashes: $0.hashes.flatMap { $0 }) }
        let newHead = LedgerHead(size: edge.size, root: try edge.root(), lastHash: lastHash)
        return (rows, tiles, LedgerEdge(slug: state.slug, head: newHead, edge: edge.clean(), appended: events.count))
    }

    static func event(from row: OutboxRow) throws -> AuditEvent {
        guard case .object(let m) = row.event, let type = m["type"]?.stringValue, let actor = m["actor"]?.stringValue,
              let timeText = m["time"]?.stringValue, let time = Timestamp.parse(timeText), let data = m["data"]
        else {
            throw PortalError(.storage, "an outbox row is not an audit event")
        }
        return AuditEvent(
            organizationID: row.organizationID, rawType: type, actor: actor,
            integrationID: m["integration"]?.stringValue.flatMap(UUID.init(uuidString:)), data: data, time: time
        )
    }
}

/// A ledger's state after a batch: its head and right edge.
struct LedgerEdge: Sendable {
    var slug: String
    var head: LedgerHead
    var edge: TileEdge
    /// Entries the batch appended.
    var appended: Int
}

/// Concatenated 32-byte hashes, as tiles are stored.
enum LedgerTiles {
    static func split(_ bytes: [UInt8]) -> [Hash] {
        stride(from: 0, to: bytes.count - bytes.count % 32, by: 32).map { Array(bytes[$0..<$0 + 32]) }
    }
}

/// Resumes the caller of ``LedgerSequencer/append(_:)`` once every one of its events is committed (or
/// with the first error).
final class Completion: Sendable {
    private struct State {
        var remaining: Int
        var error: (any Error)?
        var declined = false
        var continuation: CheckedContinuation<Bool, any Error>?
    }

    private let state: Mutex<State>

    init(count: Int, continuation: CheckedContinuation<Bool, any Error>) {
        state = Mutex(State(remaining: count, error: nil, continuation: continuation))
    }

    /// Marks one event done, failed when `error` is given.
    func done(_ error: (any Error)? = nil) {
        finish(error, declined: false)
    }

    /// Marks one event as not appended because its call's companion row was declined.
    func decline() {
        finish(nil, declined: true)
    }

    private func finish(_ error: (any Error)?, declined: Bool) {
        let finished = state.withLock { s -> (CheckedContinuation<Bool, any Error>, (any Error)?, Bool)? in
            s.remaining -= 1
            if s.error == nil, let error { s.error = error }
            if declined { s.declined = true }
            guard s.remaining == 0, let continuation = s.continuation else { return nil }
            s.continuation = nil
            return (continuation, s.error, s.declined)
        }
        guard let (continuation, error, declined) = finished else { return }
        if let error { continuation.resume(throwing: error) } else { continuation.resume(returning: !declined) }
    }
}

/// A lock for async code: one holder at a time, waiters in arrival order.
final class AsyncSerialLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func withLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await acquire()
        do {
            let result = try await body()
            release()
            return result
        } catch {
            release()
            throw error
        }
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { s -> Bool in
                if !s.locked {
                    s.locked = true
                    return true
                }
                s.waiters.append(continuation)
                return false
            }
            if acquired { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiters.isEmpty {
                s.locked = false
                return nil
            }
            return s.waiters.removeFirst()
        }
        next?.resume()
    }
}
