package import Foundation
import Integrations
import Ledger
package import PortalCore
package import Storage

/// One event in the seed's webhook logs: never the body.
package struct WebhookLogEntry: Sendable, Encodable {
    package var id: String
    package var endpointId: String
    package var providerEventId: String?
    package var eventType: String
    package var status: WebhookEventStatus
    package var attempts: Int
    package var retryCount: Int
    package var error: String?
    package var note: String?
    package var bodyDigest: String
    package var receivedAt: String
    package var processedAt: String?
    package var nextAttemptAt: String?

    init(_ r: WebhookEventRecord) {
        id = r.id.uuidString.lowercased()
        endpointId = r.endpointID.uuidString.lowercased()
        providerEventId = r.providerEventID
        eventType = r.eventType
        status = r.status
        attempts = r.attempts
        retryCount = r.retryCount
        error = r.errorMessage
        note = r.note
        bodyDigest = r.bodyDigest
        receivedAt = Timestamp.rfc3339(r.createdAt)
        processedAt = r.processedAt.map(Timestamp.rfc3339)
        nextAttemptAt = r.status == .retrying ? Timestamp.rfc3339(r.availableAt) : nil
    }
}

package struct WebhookLogPage: Sendable, Encodable {
    package var items: [WebhookLogEntry]
    package var nextCursor: String?
}

/// The outcome of a retry request, per event.
package struct WebhookRetryResult: Sendable, Encodable {
    package var requested: Int
    package var requeued: Int
    package var results: [Item]

    package struct Item: Sendable, Encodable {
        package var id: String
        package var result: String
    }
}

extension WebhookService {

    /// The seed's getWebhookLogs: the integration's events, newest first, optionally of one status.
    package func logs(integrationID: UUID, status: String?, cursor: String?, limit: Int, by principal: Principal) async throws -> WebhookLogPage {
        try principal.require(.readIntegrations)
        _ = try await registry.get(id: integrationID, organizationID: principal.organizationID)
        var wanted: WebhookEventStatus?
        if let status {
            guard let known = WebhookEventStatus(rawValue: status) else {
                throw PortalError.validation([.init(pointer: "?status", message: "must be one of \(WebhookEventStatus.allCases.map(\.rawValue).joined(separator: ", "))")])
            }
            wanted = known
        }
        var before: UUID?
        if let cursor {
            guard let id = UUID(uuidString: cursor) else { throw PortalError.validation([.init(pointer: "?cursor", message: "is not a cursor from a previous page")]) }
            before = id
        }
        let rows = try await database.read { db in
            try await WebhookEventStore(db).list(organizationID: principal.organizationID, integrationID: integrationID, status: wanted, before: before, limit: limit + 1)
        }
        let page = Array(rows.prefix(limit))
        return WebhookLogPage(items: page.map(WebhookLogEntry.init), nextCursor: rows.count > limit ? page.last?.id.uuidString.lowercased() : nil)
    }

    /// The seed's retryFailedWebhook: a dead-lettered event goes back to the queue for one more attempt
    /// (409 if it is not failed); failing again returns it to the dead letter.
    package func retry(eventID: UUID, by principal: Principal) async throws -> WebhookLogEntry {
        try principal.require(.manageIntegrations)
        let now = clock.now()
        let record = try await database.write { db -> WebhookEventRecord in
            let store = WebhookEventStore(db)
            guard let record = try await store.find(id: eventID, organizationID: principal.organizationID) else { throw PortalError.notFound("webhook event") }
            guard try await store.requeue(ids: [eventID], organizationID: principal.organizationID, at: now) == [eventID] else {
                throw PortalError(.conflict, "only failed events are retried; this one is \(record.status)")
            }
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .webhookRetried, actor: principal.tokenID.uuidString.lowercased(), integrationID: record.integrationID,
                data: ["eventIds": [.string(eventID.uuidString.lowercased())]], time: now
            ), in: db)
            return try await store.find(id: eventID, organizationID: principal.organizationID) ?? record
        }
        audit.wake()
        wakeWorkers()
        return WebhookLogEntry(record)
    }

    /// Bulk retry of failed events by filter (integration, event type), as one job with per-event results.
    package func retryFailed(integrationID: UUID?, eventType: String?, limit: Int, by principal: Principal) async throws -> WebhookRetryResult {
        try principal.require(.manageIntegrations)
        if let integrationID { _ = try await registry.get(id: integrationID, organizationID: principal.organizationID) }
        let now = clock.now()
        let result = try await database.write { db -> WebhookRetryResult in
            let store = WebhookEventStore(db)
            let ids = try await store.failedIDs(organizationID: principal.organizationID, integrationID: integrationID, eventType: eventType, limit: limit)
            let requeued = Set(try await store.requeue(ids: ids, organizationID: principal.organizationID, at: now))
            if !requeued.isEmpty {
                try await audit.record(AuditEvent(
                    organizationID: principal.organizationID, type: .webhookRetried, actor: principal.tokenID.uuidString.lowercased(), integrationID: integrationID,
                    data: ["eventIds": .array(requeued.map { .string($0.uuidString.lowercased()) }.sorted { $0.stringValue ?? "" < $1.stringValue ?? "" })],
                    time: now
                ), in: db)
            }
            return WebhookRetryResult(
                requested: ids.count, requeued: requeued.count,
                results: ids.map { .init(id: $0.uuidString.lowercased(), result: requeued.contains($0) ? "requeued" : "not failed any more") }
            )
        }
        audit.wake()
        wakeWorkers()
        return result
    }
}
