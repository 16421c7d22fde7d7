import Foundation
public import Logging
public import PortalCore
public import SQLKit
public import ServiceLifecycle
public import Storage
import Synchronization

/// Appends audit events to the per-organization hash chains with group commit (DESIGN section 4.4).
///
/// Each batch is one write transaction: the events waiting in memory (``append(_:)``) and those queued in
/// the outbox (``record(_:in:)``, from this or any other process), grouped by organization; per
/// organization the head is re-read under the ledger lock, entries, tiles and the new head are written,
/// and the outbox rows are deleted. Callers of ``append(_:)`` resume only after the commit.
public final class LedgerSequencer: AuditTrail, Service {
    /// Tuning of the batch loop.
    public struct Configuration: Sendable {
        /// How often the outbox is polled for rows written by other processes.
        public var pollInterval: Duration
        /// The most events in one transaction.
        public var batchSize: Int

        public init(pollInterval: Duration = .milliseconds(100), batchSize: Int = 512) {
            self.pollInterval = pollInterval
            self.batchSize = batchSize
        }
    }

    private struct Waiting {
        var event: AuditEvent
        var completion: Completion
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

    public init(
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

    public func record(_ event: AuditEvent, in db: any SQLDatabase) async throws {
        try event.validate()
        try await LedgerStore(db).enqueue(id: ids.next(), organizationID: event.organizationID, event: event.outboxJSON, at: clock.now())
    }

    public func append(_ events: [AuditEvent]) async throws {
        for event in events { try event.validate() }
        guard !events.isEmpty else { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            // One continuation for the whole list: it resumes when the last of them is committed.
            let completion = Completion(count: events.count, continuation: continuation)
            waiting.withLock { list in
                for event in events { list.append(Waiting(event: event, completion: completion)) }
            }
            wakeupContinuation.yield()
        }
    }

    public func wake() { wakeupContinuation.yield() }

    /// Records events and sequences them before returning, for processes that do not run the sequencer's
    /// loop (CLI commands): ``append(_:)`` there would wait for a loop that never comes.
    public func appendNow(_ events: [AuditEvent]) async throws {
        try await database.write { db in
            for event in events { try await record(event, in: db) }
        }
        try await drainAll()
    }

    // MARK: Service

    /// Drains on every wake-up and poll until shutdown, then drains what is left.
    public func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            let interval = configuration.pollInterval
            let continuation = wakeupContinuation
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    continuation.yield()
                }
            }
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
    public func drainAll() async throws -> Int {
        var total = 0
        while true {
            let n = try await drain()
            total += n
            if n == 0 { return total }
        }
    }

    /// Appends one batch; returns the number of entries appended (0 when there was nothing to do).
    @discardableResult
    public func drain() async throws -> Int {
        try await batchLock.withLock { try await drainLocked() }
    }

    private func drainLocked() async throws -> Int {
        let batchSize = configuration.batchSize
        let direct = waiting.withLock { list -> [Waiting] in
            let taken = Array(list.prefix(batchSize))
            list.removeFirst(taken.count)
            return taken
        }
        let now = clock.now()
        do {
            let count = try await database.write { db -> Int in
                let store = LedgerStore(db)
                let queued = try await store.takeOutbox(limit: max(0, batchSize - direct.count))
                var byOrganization: [UUID: [AuditEvent]] = [:]
                for row in queued {
                    byOrganization[row.organizationID, default: []].append(try Self.event(from: row))
                }
                for item in direct { byOrganization[item.event.organizationID, default: []].append(item.event) }
                guard !byOrganization.isEmpty else { return 0 }
                var appended = 0
                // A fixed lock order across organizations keeps two instances from deadlocking.
                for organizationID in byOrganization.keys.sorted(by: { $0.uuidString < $1.uuidString }) {
                    appended += try await Self.append(byOrganization[organizationID]!, to: organizationID, store: store, db: db, at: now)
                }
                try await store.deleteOutbox(queued.map(\.id))
                return appended
            }
            for item in direct { item.completion.done() }
            return count
        } catch {
            for item in direct { item.completion.done(error) }
            throw error
        }
    }

    /// Appends `events` to one organization's ledger inside the caller's write transaction.
    static func append(_ events: [AuditEvent], to organizationID: UUID, store: LedgerStore, db: any SQLDatabase, at now: Date) async throws -> Int {
        try await store.lock(organizationID)
        guard let slug = try await OrganizationStore(db).find(id: organizationID)?.slug else {
            throw PortalError(.storage, "an audit event names an organization that does not exist")
        }
        let head = try await store.head(organizationID) ?? LedgerHead(size: 0, root: Merkle.emptyRoot, lastHash: [UInt8](repeating: 0, count: 32))
        var tiles: [TileEdge.Tile] = []
        for key in TileEdge.edgeIndices(size: head.size) {
            guard let bytes = try await store.tile(organizationID, level: key.level, index: key.index) else {
                throw PortalError(.storage, "ledger tile \(key.level)/\(key.index) of \(slug) is missing")
            }
            tiles.append(TileEdge.Tile(level: key.level, index: key.index, hashes: LedgerTiles.split(bytes)))
        }
        var edge = TileEdge(size: head.size, tiles: tiles)
        var lastHash = head.lastHash
        for event in events {
            let entry = event.entry(seq: edge.size, slug: slug, prev: Hex.encode(lastHash))
            let bytes = try entry.canonicalBytes()
            let hash = Merkle.leafHash(bytes)
            try await store.insertEntry(organizationID, LedgerEntryRow(seq: entry.seq, bytes: bytes, hash: hash))
            edge.append(hash)
            lastHash = hash
        }
        for tile in edge.changedTiles {
            try await store.putTile(organizationID, level: tile.level, index: tile.index, hashes: tile.hashes.flatMap { $0 })
        }
        try await store.setHead(organizationID, LedgerHead(size: edge.size, root: try edge.root(), lastHash: lastHash), at: now)
        return events.count
    }

    static func event(from row: OutboxRow) throws -> AuditEvent {
        guard case .object(let m) = row.event, let type = m["type"]?.stringValue, let actor = m["actor"]?.stringValue,
              let timeText = m["time"]?.stringValue, let time = Timestamp.parse(timeText), let data = m["data"]
        else {
            throw PortalError(.storage, "an outbox row is not an audit event")
        }
        return AuditEvent(
            organizationID: row.organizationID, type: type, actor: actor,
            integrationID: m["integration"]?.stringValue.flatMap(UUID.init(uuidString:)), data: data, time: time
        )
    }
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
        var continuation: CheckedContinuation<Void, any Error>?
    }

    private let state: Mutex<State>

    init(count: Int, continuation: CheckedContinuation<Void, any Error>) {
        state = Mutex(State(remaining: count, error: nil, continuation: continuation))
    }

    /// Marks one event done, failed when `error` is given.
    func done(_ error: (any Error)? = nil) {
        let finished = state.withLock { s -> (CheckedContinuation<Void, any Error>, (any Error)?)? in
            s.remaining -= 1
            if s.error == nil, let error { s.error = error }
            guard s.remaining == 0, let continuation = s.continuation else { return nil }
            s.continuation = nil
            return (continuation, s.error)
        }
        guard let (continuation, error) = finished else { return }
        if let error { continuation.resume(throwing: error) } else { continuation.resume() }
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
