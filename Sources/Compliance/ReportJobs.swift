package import Foundation
package import Ledger
package import Logging
package import PortalCore
import ServiceLifecycle
package import Storage

/// Evidence bundles requested over the API (`POST /portal/reports`): stored as `reports` rows, built by this
/// service one at a time per instance (a lease on the row, so another instance takes over a build whose
/// instance died), the finished bundle kept in the row for `GET /portal/reports/{id}/download`. A request is
/// picked up within half a second.
package final class ReportJobs: Service, Sendable {
    let database: Database
    let checkpointer: LedgerCheckpointer
    let sequencer: LedgerSequencer
    let clock: any WallClock
    let ids: IdentifierGenerator
    let logger: Logger
    let owner: String
    let mappings: String
    let templates: String
    let serviceLevels: EvidenceBundler.ServiceLevelSource?

    /// The most report builds an organization may have queued or running (each is built in memory).
    let maxOpen: Int

    package init(
        database: Database, checkpointer: LedgerCheckpointer, sequencer: LedgerSequencer, clock: any WallClock, ids: IdentifierGenerator, logger: Logger,
        owner: String, reportsDirectory: String, maxOpen: Int = Quotas().openReports, serviceLevels: EvidenceBundler.ServiceLevelSource? = nil
    ) {
        self.serviceLevels = serviceLevels
        self.maxOpen = maxOpen
        self.database = database
        self.checkpointer = checkpointer
        self.sequencer = sequencer
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.owner = owner
        mappings = URL(fileURLWithPath: reportsDirectory).appendingPathComponent("mappings").path
        templates = URL(fileURLWithPath: reportsDirectory).appendingPathComponent("templates").path
    }

    /// A report as the API shows it.
    package struct View: Sendable, Encodable {
        package var id: String
        package var kind: String
        package var from: String
        package var to: String
        package var at: Int64?
        package var status: String
        package var error: String?
        package var checkpointSize: Int64?
        package var manifestDigest: String?
        package var bytes: Int64?
        package var requestedBy: String
        package var createdAt: String
        package var completedAt: String?
        package var download: String?

        init(_ r: ReportRecord) {
            id = r.id.uuidString.lowercased()
            kind = r.kind
            from = r.periodFrom
            to = r.periodTo
            at = r.atSize
            status = r.status
            error = r.error
            checkpointSize = r.checkpointSize
            manifestDigest = r.manifestDigest
            bytes = r.bundleBytes
            requestedBy = r.requestedBy
            createdAt = Timestamp.rfc3339(r.createdAt)
            completedAt = r.completedAt.map(Timestamp.rfc3339)
            download = r.status == "completed" ? "/portal/reports/\(id)/download" : nil
        }
    }

    /// Requests a bundle from `{kind, from, to, at?}` (202); it is built in the background.
    package func request(_ json: JSONValue, by principal: Principal) async throws -> View {
        try principal.require(.manageReports)
        guard case .object(let m) = json else { throw PortalError.validation([.init(pointer: "", message: "must be an object")]) }
        var errors: [PortalError.FieldError] = []
        for key in m.keys.sorted() where !["kind", "from", "to", "at"].contains(key) { errors.append(.init(pointer: "/\(key)", message: "unknown field")) }
        let kind = m["kind"]?.stringValue
        if !["soc2", "gdpr", "iso27001"].contains(kind) { errors.append(.init(pointer: "/kind", message: "must be soc2, gdpr or iso27001")) }
        let from = m["from"]?.stringValue ?? ""
        let to = m["to"]?.stringValue ?? ""
        do {
            _ = try ProcessingRegister.period(from: from, to: to)
        } catch {
            errors += error.fieldErrors.map { .init(pointer: "/" + $0.pointer, message: $0.message) }
        }
        var at: Int64?
        if let value = m["at"] {
            if case .int(let n) = value, n > 0 { at = n } else { errors.append(.init(pointer: "/at", message: "must be a tree size (a positive integer)")) }
        }
        guard errors.isEmpty, let kind else { throw PortalError.validation(errors) }
        let record = ReportRecord(
            id: ids.next(), organizationID: principal.organizationID, kind: kind, periodFrom: from, periodTo: to, atSize: at, status: "pending",
            requestedBy: principal.tokenID.uuidString.lowercased(), createdAt: clock.now()
        )
        let maxOpen = maxOpen
        try await database.write { db in
            let open = try await ReportStore(db).countOpen(organizationID: principal.organizationID)
            guard open < maxOpen else {
                var full = PortalError(.throttled, "the organization has \(open) report builds queued or running, the most allowed (PORTAL_MAX_OPEN_REPORTS) is \(maxOpen); retry when one is done")
                full.retryAfterSeconds = 30
                throw full
            }
            try await ReportStore(db).insert(record)
        }
        return View(record)
    }

    package func report(id: UUID, by principal: Principal) async throws -> View {
        try principal.require(.readReports)
        guard let record = try await database.read({ db in try await ReportStore(db).find(id: id, organizationID: principal.organizationID) }) else {
            throw PortalError.notFound("report")
        }
        return View(record)
    }

    package func list(by principal: Principal, limit: Int) async throws -> [View] {
        try principal.require(.readReports)
        return try await database.read { db in try await ReportStore(db).list(organizationID: principal.organizationID, limit: limit) }.map(View.init)
    }

    package func download(id: UUID, by principal: Principal) async throws -> (data: Data, name: String) {
        let view = try await report(id: id, by: principal)
        guard view.status == "completed", let data = try await database.read({ db in try await ReportStore(db).bundle(id: id, organizationID: principal.organizationID) }) else {
            throw PortalError(.conflict, "the report is \(view.status); it can be downloaded once completed")
        }
        return (data, "\(principal.organizationSlug)-\(view.kind)-\(view.from)-\(view.to).tar.zst")
    }

    // MARK: The builder

    package func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var built = false
            do {
                built = try await buildNext()
            } catch {
                logger.warning("a report build failed to start", metadata: ["portal.error": "\(error)"])
            }
            if built { continue }
            // Requests (this instance's or another's) and expired leases are picked up within half a second.
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(500)) }
            } catch {
                return
            }
        }
    }

    /// Builds the next pending report, if any; returns whether there was one.
    @discardableResult
    package func buildNext() async throws -> Bool {
        let now = clock.now()
        guard let job = try await database.write({ db in try await ReportStore(db).claim(owner: owner, until: now.addingTimeInterval(600), now: now) }) else { return false }
        do {
            let slug = try await database.read { db in try await OrganizationStore(db).find(id: job.organizationID)?.slug } ?? ""
            let period = try ProcessingRegister.period(from: job.periodFrom, to: job.periodTo)
            let checkpoint: LedgerCheckpointRow
            if let at = job.atSize {
                guard let row = try await database.read({ db in try await LedgerStore(db).checkpoints(job.organizationID) }).first(where: { $0.size == at }) else {
                    throw PortalError(.validationFailed, "the ledger has no stored checkpoint of size \(at)")
                }
                checkpoint = row
            } else {
                try await sequencer.drainAll()
                guard let row = try await checkpointer.cutWaiting(organizationID: job.organizationID, slug: slug) else { throw PortalError(.conflict, "the ledger is empty") }
                checkpoint = row
            }
            var bundle = Data()
            let result = try await EvidenceBundler(database: database, checkpointer: checkpointer, serviceLevels: serviceLevels).build(
                kind: job.kind, organizationID: job.organizationID, slug: slug, start: period.start, end: period.end, checkpoint: checkpoint,
                mappings: mappings, templates: templates
            ) { chunk in bundle.append(contentsOf: chunk) }
            let done = clock.now()
            guard try await database.write({ db in
                try await ReportStore(db).complete(id: job.id, owner: owner, bundle: bundle, checkpointSize: result.checkpointSize, manifestDigest: result.manifestDigest, at: done)
            }) else { return true }
            try await sequencer.append([AuditEvent(
                organizationID: job.organizationID, type: .reportExported, actor: job.requestedBy,
                data: [
                    "kind": .string(job.kind), "from": .string(Timestamp.rfc3339(period.start)), "to": .string(Timestamp.rfc3339(period.end)),
                    "manifestDigest": .string(result.manifestDigest), "checkpointSize": .int(result.checkpointSize), "reportId": .string(job.id.uuidString.lowercased()),
                ],
                time: done
            )])
        } catch {
            let message = (error as? PortalError)?.message ?? "\(error)"
            logger.warning("report build failed", metadata: ["portal.report": "\(job.id)", "portal.error": "\(message)"])
            try await database.write { db in try await ReportStore(db).fail(id: job.id, owner: owner, error: String(message.prefix(500)), at: clock.now()) }
        }
        return true
    }
}
