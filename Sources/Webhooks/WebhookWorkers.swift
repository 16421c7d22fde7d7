package import Foundation
package import Integrations
import Ledger
import Logging
import PortalCore
import ServiceLifecycle
import Storage

/// Drains the webhook queue: leases due events (`FOR UPDATE SKIP LOCKED` on PostgreSQL), runs the
/// handler for each inside the transaction that records its outcome, and retries failures with the
/// endpoint's policy until they are dead-lettered (`failed`). A crashed worker's leases expire and the
/// events are taken again. Also reloads the receiver's live paths every few seconds.
package final class WebhookWorkers: Service, Sendable {
    package struct Configuration: Sendable {
        package var pollInterval: Duration
        package var leaseSeconds: TimeInterval
        package var batchSize: Int
        package var pathRefresh: Duration
        /// How long a wake-up waits for more deliveries before the queue is drained.
        package var gather: Duration

        package init(
            pollInterval: Duration = .milliseconds(500), leaseSeconds: TimeInterval = 30, batchSize: Int = 128, pathRefresh: Duration = .seconds(5),
            gather: Duration = .milliseconds(20)
        ) {
            self.pollInterval = pollInterval
            self.leaseSeconds = leaseSeconds
            self.batchSize = batchSize
            self.pathRefresh = pathRefresh
            self.gather = gather
        }
    }

    private let service: WebhookService
    private let handlers: [any WebhookEventHandler]
    private let configuration: Configuration
    /// This worker's lease name: host, process and a random suffix.
    package let owner: String

    package init(service: WebhookService, handlers: [any WebhookEventHandler], configuration: Configuration = .init()) {
        self.service = service
        self.handlers = handlers
        self.configuration = configuration
        owner = "\(ProcessInfo.processInfo.hostName.prefix(40))-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    package func run() async throws {
        try? await service.refreshPaths()
        // One server process serves a SQLite database: leases left in it are a crashed predecessor's.
        if service.database.dialect == .sqlite {
            _ = try? await service.database.write { db in
                try await WebhookEventStore(db).releaseAllLeases()
            }
        }
        await withTaskGroup(of: Void.self) { group in
            let refresh = configuration.pathRefresh
            // No database work starts once the loop is cancelled: the pool may be closing.
            group.addTask {
                while true {
                    do { try await Task.sleep(for: refresh) } catch { return }
                    try? await self.service.refreshPaths()
                }
            }
            // A poll, for events other instances received and for retries that come due.
            group.addTask {
                let interval = self.configuration.pollInterval
                while !Task.isCancelled {
                    await self.drainAll()
                    do { try await Task.sleep(for: interval) } catch { return }
                }
            }
            // Wake-ups from this instance's receiver, gathered for a moment so that a burst is leased in a
            // few large batches rather than one transaction per delivery.
            group.addTask {
                for await _ in self.service.queued {
                    do { try await Task.sleep(for: self.configuration.gather) } catch { return }
                    await self.drainAll()
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
    }

    /// Drains full batches; a partial one means the queue is empty but for what arrived meanwhile, which
    /// wakes the workers again (or waits for the poll).
    private func drainAll() async {
        do {
            while !Task.isCancelled, try await drain() == configuration.batchSize {}
        } catch is CancellationError {
            // Shutting down: the database closed under this pass, which the next start repeats.
        } catch {
            service.logger.error("webhook worker batch failed", metadata: ["portal.error": "\(error)"])
        }
    }

    /// Leases and processes one batch; returns how many events it took. The lease commits first (so a
    /// crash still counts the attempt); then the whole batch is settled in one transaction: the leases
    /// still held are locked, each handler runs under a savepoint (a failing one rolls back only its own
    /// writes), and the outcomes and their ledger events are written with a statement per group rather than
    /// per event (the profile in docs/performance.md: the workers' statements held SQLite's single writer from the receiver).
    @discardableResult
    package func drain() async throws -> Int {
        let service = service
        let handlers = handlers
        let owner = owner
        let now = service.clock.now()
        let leased = try await service.database.write { db in
            try await WebhookEventStore(db).lease(owner: owner, now: now, until: now.addingTimeInterval(configuration.leaseSeconds), limit: configuration.batchSize)
        }
        guard !leased.isEmpty else { return 0 }
        let handled = Dictionary(uniqueKeysWithValues: leased.compactMap { record in
            handlers.first { $0.eventTypes.contains { WebhookService.matches(pattern: $0, record.eventType) } }.map { (record.id, $0) }
        })
        // Only events a handler takes need their bodies, opened before the settling transaction takes the
        // writer (a data key not in memory yet is read on a reader).
        let payloads = handled.isEmpty ? [:] : try await service.database.read { db -> [UUID: Result<JSONValue, Unreadable>] in
            var opened: [UUID: Result<JSONValue, Unreadable>] = [:]
            for record in leased where handled[record.id] != nil {
                do {
                    let body = try await service.vault.open(record.payload, organizationID: record.organizationID, context: VaultContext.webhookEvent(record.id), in: db)
                    opened[record.id] = .success((try? JSONValue.parse(body)) ?? .string(String(decoding: body, as: UTF8.self)))
                } catch {
                    opened[record.id] = .failure(Unreadable(message: "the stored body cannot be opened: \(error)"))
                }
            }
            return opened
        }
        let (lost, settled) = try await service.database.write { db -> (Int, [AuditEvent]) in
            let store = WebhookEventStore(db)
            // A lease that expired meanwhile may be another worker's now: those events are left alone.
            let held = try await store.held(ids: leased.map(\.id), owner: owner)
            var processed: [String: [WebhookEventRecord]] = [:]
            var failed: [(WebhookEventRecord, message: String, final: Bool)] = []
            for record in leased where held.contains(record.id) {
                guard let handler = handled[record.id] else {
                    let note = record.eventType == "data.sync"
                        ? "no handler is registered for data.sync" : "warning: no handler for event type '\(record.eventType.prefix(100))'; recorded only"
                    processed[note, default: []].append(record)
                    continue
                }
                let payload: JSONValue
                switch payloads[record.id] {
                case .success(let value)?:
                    payload = value
                case .failure(let error)?:
                    failed.append((record, error.message, true))
                    continue
                case nil:
                    failed.append((record, "the stored body was not opened", true))
                    continue
                }
                let event = ReceivedWebhookEvent(
                    id: record.id, organizationID: record.organizationID, integrationID: record.integrationID, endpointID: record.endpointID,
                    eventType: record.eventType, providerEventID: record.providerEventID, payload: payload, receivedAt: record.createdAt
                )
                do {
                    // The handler's writes are undone when it throws; the attempt is recorded as failed.
                    let note = try await db.savepoint { try await handler.handle(event, in: $0) } ?? "processed"
                    processed[String(note.prefix(500)), default: []].append(record)
                } catch {
                    failed.append((record, (error as? PortalError)?.message ?? "\(type(of: error))", false))
                }
            }
            let finished = service.clock.now()
            var events: [AuditEvent] = []
            for (note, records) in processed {
                try await store.finishProcessed(ids: records.map(\.id), owner: owner, note: note, at: finished)
                events += records.map { record in
                    AuditEvent(
                        organizationID: record.organizationID, type: .webhookProcessed, actor: AuditEvent.system("webhook-worker"), integrationID: record.integrationID,
                        data: [
                            "eventId": .string(record.id.uuidString.lowercased()), "eventType": .string(record.eventType), "attempts": .int(Int64(record.attempts)),
                            "note": .string(String(note.prefix(200))), "worker": .string(owner),
                        ],
                        time: finished
                    )
                }
            }
            for (record, message, final) in failed {
                events.append(try await Self.fail(record, message: message, final: final, owner: owner, service: service, in: db, at: finished))
            }
            try await service.audit.record(events, in: db)
            return (leased.count - held.count, events)
        }
        for event in settled {
            guard let integrationID = event.integrationID else { continue }
            let status: Activity.WebhookStatus = event.type == AuditEventType.webhookProcessed.rawValue ? .processed : event.data.objectValue?["final"] == .int(1) ? .deadLettered : .failed
            service.observer.observe(.webhook(organizationID: event.organizationID, integrationID: integrationID, status: status))
        }
        if lost > 0 {
            service.logger.warning("webhook events' leases expired before they were processed; another worker takes them", metadata: ["portal.events": "\(lost)"])
        }
        service.audit.wake()
        return leased.count
    }

    /// A stored body that cannot be opened: a final failure (retrying cannot help).
    struct Unreadable: Error, Sendable {
        var message: String
    }

    /// Records a failed attempt of an event this worker holds: `retrying` with the endpoint's policy's next
    /// time, or `failed` (the dead letter) once the retries are spent or the failure is final. Returns its
    /// `webhook.failed` event.
    private static func fail(
        _ record: WebhookEventRecord, message: String, final: Bool, owner: String, service: WebhookService, in db: Transaction, at now: Date
    ) async throws -> AuditEvent {
        let policy = RetryPolicy(try await WebhookEndpointStore(db).find(id: record.endpointID, organizationID: record.organizationID)?.config.objectValue?["retryPolicy"])
        let retries = record.retryCount + 1
        let dead = final || retries > policy.maxRetries
        let next = now.addingTimeInterval(policy.delay(retry: retries, unit: Double.random(in: 0..<1)))
        _ = try await WebhookEventStore(db).finish(
            id: record.id, owner: owner, status: dead ? .failed : .retrying, error: message, note: nil, retryCount: dead ? record.retryCount : retries,
            availableAt: dead ? now : next, processedAt: nil
        )
        var data: [String: JSONValue] = [
            "eventId": .string(record.id.uuidString.lowercased()), "eventType": .string(record.eventType), "attempts": .int(Int64(record.attempts)),
            "error": .string(String(message.prefix(300))), "final": dead ? 1 : 0, "worker": .string(owner),
        ]
        if !dead { data["nextAttemptAt"] = .string(Timestamp.rfc3339(next)) }
        return AuditEvent(
            organizationID: record.organizationID, type: .webhookFailed, actor: AuditEvent.system("webhook-worker"), integrationID: record.integrationID,
            data: .object(data), time: now
        )
    }
}
