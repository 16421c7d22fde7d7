import Foundation
import HTTPTypes
import Hummingbird
import PortalCore
import Sync

/// The seed's `syncData` and what a compliance officer needs around it: jobs, records, conflicts, and the
/// schedule's pause switch.
struct SyncRoutes {
    let maxBodyBytes: Int
    let sync: SyncEngine

    func register(on group: RouterGroup<PortalRequestContext>, table: RouteTable) {
        let sync = self.sync
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/sync", .manageIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let jobs = try await sync.start(integrationID: id, try SyncEngine.Request.parse(try await request.jsonBody(limit: self.maxBodyBytes)), by: principal)
            return JSONOutput.response(["jobs": jobs], status: .accepted)
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/sync/jobs", .readIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let limit = try request.queryInteger("limit", default: 50, in: 1...500)
            let cursor = try Self.idCursor(request)
            let jobs = try await sync.jobs(integrationID: id, before: cursor, limit: limit, by: principal)
            return JSONOutput.response(Page(items: jobs, nextCursor: jobs.count == limit ? jobs.last?.id : nil))
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/sync/jobs/{jobId}", .readIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let job = try context.uuidParameter("jobId", what: "sync job")
            return JSONOutput.response(try await sync.job(integrationID: id, jobID: job, by: principal))
        }
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/sync/jobs/{jobId}/cancel", .manageIntegrations) { _, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let job = try context.uuidParameter("jobId", what: "sync job")
            return JSONOutput.response(try await sync.cancel(integrationID: id, jobID: job, by: principal), status: .accepted)
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/sync/schedule", .readIntegrations) { _, context, principal in
            JSONOutput.response(try await sync.schedule(integrationID: try context.uuidParameter("id", what: "integration"), by: principal))
        }
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/sync/pause", .manageIntegrations) { _, context, principal in
            JSONOutput.response(try await sync.setPaused(integrationID: try context.uuidParameter("id", what: "integration"), paused: true, by: principal))
        }
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/sync/resume", .manageIntegrations) { _, context, principal in
            JSONOutput.response(try await sync.setPaused(integrationID: try context.uuidParameter("id", what: "integration"), paused: false, by: principal))
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/sync/conflicts", .readIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let limit = try request.queryInteger("limit", default: 100, in: 1...1000)
            let cursor = try Self.idCursor(request)
            let items = try await sync.conflicts(integrationID: id, status: request.queryString("status"), cursor: cursor, limit: limit, by: principal)
            return JSONOutput.response(Page(items: items, nextCursor: items.count == limit ? items.last?.id : nil))
        }
        table.guarded(group, prefix: "/portal", .post, "/integrations/{id}/sync/conflicts/{conflictId}/resolve", .manageIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let conflict = try context.uuidParameter("conflictId", what: "conflict")
            return JSONOutput.response(try await sync.resolveConflict(
                integrationID: id, conflictID: conflict, body: try await request.jsonBody(limit: self.maxBodyBytes), by: principal
            ))
        }
        table.guarded(group, prefix: "/portal", .get, "/integrations/{id}/records/{entity}", .readIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let entity = context.parameters.get("entity") ?? ""
            var since: Date?
            if let text = request.queryString("modified_after") {
                guard let date = Timestamp.parse(text) else {
                    throw PortalError.validation([.init(pointer: "/modified_after", message: "must be an RFC 3339 timestamp")])
                }
                since = date
            }
            return JSONOutput.response(try await sync.records(
                integrationID: id, entity: entity, modifiedAfter: since, cursor: request.queryString("cursor"),
                limit: try request.queryInteger("limit", default: 100, in: 1...1000), by: principal
            ))
        }
        table.guarded(group, prefix: "/portal", .patch, "/integrations/{id}/records/{entity}/{recordId}", .manageIntegrations) { request, context, principal in
            let id = try context.uuidParameter("id", what: "integration")
            let entity = context.parameters.get("entity") ?? ""
            let record = context.parameters.get("recordId") ?? ""
            let patch = try await request.jsonBody(limit: self.maxBodyBytes, acceptMergePatch: true)
            return JSONOutput.response(try await sync.editRecord(integrationID: id, entity: entity, recordID: record, patch: patch, by: principal))
        }
    }
}

extension SyncRoutes {
    /// The `cursor` of a listing ordered by id: the last id of the previous page.
    static func idCursor(_ request: Request) throws(PortalError) -> UUID? {
        guard let text = request.queryString("cursor") else { return nil }
        guard let id = UUID(uuidString: text) else { throw PortalError.validation([.init(pointer: "/cursor", message: "unknown cursor")]) }
        return id
    }
}


