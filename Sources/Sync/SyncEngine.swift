import Crypto
package import Integrations
package import Foundation
package import Ledger
package import Logging
package import PortalCore
import ServiceLifecycle
package import Storage
import Synchronization

/// The seed's `syncData`: jobs that pull an entity's list through the gateway page by page, upsert
/// the records, resolve conflicts with the integration's policy, and record `sync.*` evidence.
///
/// Each page is one transaction: its records, its conflicts and the job's checkpoint (the next page, the
/// high-water mark so far, the running digest of record ids) commit together, so a job killed midway
/// resumes after its last committed page, without duplicates or gaps. Jobs hold a lease renewed by every
/// page; the engine's service takes over running jobs whose lease expired (a crashed instance's).
package final class SyncEngine: Service, Sendable {
    package struct Configuration: Sendable {
        package var leaseSeconds: TimeInterval
        /// How often the service looks for abandoned jobs.
        package var pollInterval: Duration
        /// How long one page may wait out a provider's 429s in all before the job fails.
        package var maxThrottleWait: TimeInterval
        /// The most pages of one job (a guard against a provider's endless cursor).
        package var maxPages: Int

        package init(leaseSeconds: TimeInterval = 30, pollInterval: Duration = .seconds(5), maxThrottleWait: TimeInterval = 300, maxPages: Int = 100_000) {
            self.leaseSeconds = leaseSeconds
            self.pollInterval = pollInterval
            self.maxThrottleWait = maxThrottleWait
            self.maxPages = maxPages
        }
    }

    let database: Database
    let gateway: any OutboundTransport
    let sealing: SubjectSealing
    let audit: any AuditTrail
    let clock: any WallClock
    let ids: IdentifierGenerator
    let logger: Logger
    let configuration: Configuration
    /// Told of the records each committed page handled (monitoring).
    let observer: any ActivityObserver
    /// This instance's lease name.
    package let owner: String
    /// Jobs to run, started by requests or taken over: the service's `run()` runs each as a child task.
    private let submissions: AsyncStream<Submission>
    private let submit: AsyncStream<Submission>.Continuation
    /// The jobs submitted in this process and not ended yet.
    private let active = Mutex<Set<UUID>>([])
    /// Completed passes of the poll loop (abandoned jobs, then due schedules): a test that expects nothing
    /// to start waits for two more passes instead of for some time.
    private let passes = Atomic<Int>(0)
    /// How the engine waits for a provider that answered 429 (injected by tests, which record the waits).
    let sleep: @Sendable (Duration) async throws -> Void

    struct Submission: Sendable {
        var job: SyncJobRecord
        var plan: Plan
    }

    package init(
        database: Database, gateway: any OutboundTransport, vault: CredentialVault, audit: any AuditTrail, clock: any WallClock = SystemWallClock(), ids: IdentifierGenerator = .shared,
        logger: Logger, configuration: Configuration = .init(), observer: any ActivityObserver = NoActivityObserver(),
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.sleep = sleep
        self.observer = observer
        self.database = database
        self.gateway = gateway
        sealing = SubjectSealing(vault: vault)
        self.audit = audit
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.configuration = configuration
        owner = "\(ProcessInfo.processInfo.hostName.prefix(40))-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8).lowercased())"
        (submissions, submit) = AsyncStream.makeStream(of: Submission.self)
    }

    /// The keyed hash that finds a data subject's key (`subject_keys.lookup`) and suppresses it once erased.
    package func subjectLookup(organizationID: UUID, subjectID: String) async throws -> String {
        try await database.write { db in try await sealing.lookup(organizationID: organizationID, subjectID: subjectID, in: db) }
    }

    // MARK: Starting and watching jobs

    /// What `POST /portal/integrations/{id}/sync` asks for: the seed's body.
    package struct Request: Sendable {
        package var syncType: SyncType
        package var entities: [String]?

        package init(syncType: SyncType, entities: [String]?) {
            self.syncType = syncType
            self.entities = entities
        }

        package static func parse(_ body: JSONValue) throws(PortalError) -> Request {
            let errors = ValidationErrors()
            var r = JSONObjectReader(body, errors: errors)
            let type = r.enumeration("syncType", SyncType.self, required: true)
            let entities = r.strings("entities", maxLength: 100)
            if let entities, entities.isEmpty { r.reject("entities", "must name at least one entity, or be left out for all") }
            r.finish()
            try errors.throwIfAny()
            return Request(syncType: type ?? .full, entities: entities)
        }
    }

    /// Starts a job per entity (all configured ones unless named) and returns them. A running job of the same
    /// integration and entity is a 409 naming it; nothing starts then.
    package func start(integrationID: UUID, _ request: Request, by principal: Principal) async throws -> [SyncJobView] {
        try principal.require(.manageIntegrations)
        return try await start(integrationID: integrationID, organizationID: principal.organizationID, request, actor: principal.tokenID.uuidString.lowercased())
    }

    func start(integrationID: UUID, organizationID: UUID, _ request: Request, actor: String, skipRunning: Bool = false) async throws -> [SyncJobView] {
        let now = clock.now()
        let (jobs, plan) = try await database.write { db -> ([SyncJobRecord], Plan) in
            let plan = try await Self.plan(integrationID: integrationID, organizationID: organizationID, in: db)
            let names = request.entities ?? plan.configuration.entities.keys.sorted()
            let unknown = names.filter { plan.configuration.entities[$0] == nil }
            guard unknown.isEmpty else {
                throw PortalError(.validationFailed, "the integration's syncConfig has no entity \(unknown.map { "'\($0.prefix(100))'" }.joined(separator: ", "))",
                                  fieldErrors: [.init(pointer: "/entities", message: "unknown: \(unknown.joined(separator: ", ").prefix(300))")])
            }
            let store = SyncStore(db)
            var jobs: [SyncJobRecord] = []
            for name in names {
                if let running = try await store.runningJob(integrationID: integrationID, entity: name) {
                    if skipRunning { continue }
                    var error = PortalError(.conflict, "a \(running.syncType) sync of \(name) is running: job \(running.id.uuidString.lowercased())")
                    error.details = ["runningJobId": .string(running.id.uuidString.lowercased())]
                    throw error
                }
                let mark = try await store.highWater(integrationID: integrationID, entity: name)
                // An incremental sync with nothing to resume from pulls everything (without deleting).
                let since = request.syncType == .incremental ? mark : nil
                let job = SyncJobRecord(
                    id: ids.next(), organizationID: organizationID, integrationID: integrationID, entity: name, syncType: request.syncType,
                    counts: Counts().json, requestedBy: actor, sinceMark: since, startedAt: now
                )
                do {
                    try await store.insertJob(job, leaseOwner: owner, leaseUntil: now.addingTimeInterval(configuration.leaseSeconds))
                } catch where Database.isUniqueViolation(error) {
                    throw PortalError(.conflict, "a sync of \(name) started meanwhile")
                }
                var data: [String: JSONValue] = ["jobId": .string(job.id.uuidString.lowercased()), "entity": .string(name), "syncType": .string(request.syncType.rawValue)]
                if let since { data["since"] = .string(since) }
                try await audit.record(AuditEvent(
                    organizationID: organizationID, type: .syncStarted, actor: actor, integrationID: integrationID, data: .object(data), time: now
                ), in: db)
                jobs.append(job)
            }
            return (jobs, plan)
        }
        audit.wake()
        for job in jobs { launch(job, plan: plan) }
        return jobs.map(SyncJobView.init)
    }

    /// The schedule of an integration's syncs, as `GET .../sync/schedule` shows it.
    package struct ScheduleView: Sendable, Encodable {
        package var intervalSeconds: Int?
        package var paused: Bool
        package var nextRunAt: String?
    }

    package func schedule(integrationID: UUID, by principal: Principal) async throws -> ScheduleView {
        try principal.require(.readIntegrations)
        return try await database.read { db in
            let plan = try await Self.plan(integrationID: integrationID, organizationID: principal.organizationID, in: db)
            let state = try await SyncStore(db).schedule(integrationID: integrationID)
            return ScheduleView(intervalSeconds: plan.configuration.intervalSeconds, paused: state?.paused ?? false, nextRunAt: state?.nextRunAt.map(Timestamp.rfc3339))
        }
    }

    /// Pauses or resumes the integration's scheduled syncs (running jobs finish); appends `sync.schedule`.
    package func setPaused(integrationID: UUID, paused: Bool, by principal: Principal) async throws -> ScheduleView {
        try principal.require(.manageIntegrations)
        let now = clock.now()
        try await database.write { db in
            _ = try await Self.plan(integrationID: integrationID, organizationID: principal.organizationID, in: db)
            try await SyncStore(db).setPaused(integrationID: integrationID, organizationID: principal.organizationID, paused: paused, at: now)
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .syncSchedule, actor: principal.tokenID.uuidString.lowercased(), integrationID: integrationID,
                data: ["paused": paused ? 1 : 0], time: now
            ), in: db)
        }
        audit.wake()
        return try await schedule(integrationID: integrationID, by: principal)
    }

    /// Starts the syncs whose schedule is due: the configured `syncType` (incremental unless set) for every
    /// entity (skipping running ones); each
    /// integration's next run is claimed in the database, so one instance runs it.
    func runDueSchedules() async {
        do {
            let now = clock.now()
            let integrations = try await database.read { try await SyncStore($0).configuredIntegrations() }
            for (id, organizationID, raw) in integrations {
                guard let configuration = try? SyncConfiguration.parse(raw), let interval = configuration.intervalSeconds else { continue }
                let claimed = try await database.write { db in
                    try await SyncStore(db).claimDue(integrationID: id, organizationID: organizationID, now: now, next: now.addingTimeInterval(TimeInterval(interval)))
                }
                guard claimed else { continue }
                do {
                    _ = try await start(integrationID: id, organizationID: organizationID, Request(syncType: configuration.syncType, entities: nil), actor: AuditEvent.system("scheduler"), skipRunning: true)
                } catch {
                    logger.warning("a scheduled sync did not start", metadata: ["portal.integration": "\(id)", "portal.error": "\(error)"])
                }
            }
        } catch is CancellationError {
            // Shutting down: the database closed under this pass, which the next start repeats.
        } catch {
            logger.error("checking sync schedules failed", metadata: ["portal.error": "\(error)"])
        }
    }

    package func job(integrationID: UUID, jobID: UUID, by principal: Principal) async throws -> SyncJobView {
        try principal.require(.readIntegrations)
        guard let job = try await database.read({ try await SyncStore($0).job(id: jobID, organizationID: principal.organizationID) }),
              job.integrationID == integrationID
        else { throw PortalError.notFound("sync job") }
        return SyncJobView(job)
    }

    package func jobs(integrationID: UUID, before cursor: UUID?, limit: Int, by principal: Principal) async throws -> [SyncJobView] {
        try principal.require(.readIntegrations)
        return try await database.read { db in
            guard try await IntegrationStore(db).find(id: integrationID, organizationID: principal.organizationID) != nil else { throw PortalError.notFound("integration") }
            return try await SyncStore(db).jobs(organizationID: principal.organizationID, integrationID: integrationID, before: cursor, limit: limit).map(SyncJobView.init)
        }
    }

    /// Asks a running job to stop after its current page (202); a finished one is a 409.
    package func cancel(integrationID: UUID, jobID: UUID, by principal: Principal) async throws -> SyncJobView {
        try principal.require(.manageIntegrations)
        let job = try await database.write { db -> SyncJobRecord in
            let store = SyncStore(db)
            guard let job = try await store.job(id: jobID, organizationID: principal.organizationID), job.integrationID == integrationID else {
                throw PortalError.notFound("sync job")
            }
            guard try await store.requestCancel(jobID: jobID, organizationID: principal.organizationID) else {
                throw PortalError(.conflict, "the job is \(job.status), not running")
            }
            return job
        }
        return SyncJobView(job)
    }

    // MARK: Service

    /// Runs the jobs this instance starts or takes over, each as a child task, and resumes abandoned jobs
    /// (on start, and whenever a lease expires) and due schedules until shutdown; then cancels its jobs,
    /// which stop after their current page (their leases run out for the next start), and waits for them.
    package func run() async throws {
        // One server process serves a SQLite database: running jobs left in it are a stopped predecessor's,
        // resumed now rather than when their leases run out.
        if database.dialect == .sqlite {
            _ = try? await database.write { db in
                try await SyncStore(db).expireLeases(notOwnedBy: self.owner)
            }
        }
        await withDiscardingTaskGroup { group in
            group.addTask {
                while !Task.isCancelled {
                    await self.resumeAbandoned()
                    await self.runDueSchedules()
                    self.passes.add(1, ordering: .releasing)
                    do { try await Task.sleep(for: self.configuration.pollInterval) } catch { return }
                }
            }
            for await submission in submissions.cancelOnGracefulShutdown() {
                group.addTask {
                    await self.execute(submission.job, plan: submission.plan)
                    _ = self.active.withLock { $0.remove(submission.job.id) }
                }
            }
            group.cancelAll()
        }
    }

    /// Takes over running jobs whose lease expired and runs them from their checkpoint.
    func resumeAbandoned() async {
        do {
            let now = clock.now()
            let taken = try await database.write { db in
                try await SyncStore(db).takeAbandoned(owner: self.owner, now: now, until: now.addingTimeInterval(self.configuration.leaseSeconds), limit: 16)
            }
            // A job this process still runs (its lease ran out during a long page) is not started twice: the
            // lease just taken is this instance's own, and the running copy keeps it.
            for job in taken where !active.withLock({ $0.contains(job.id) }) {
                logger.info("resuming sync job from its checkpoint", metadata: ["portal.job": "\(job.id)", "portal.entity": "\(job.entity)"])
                do {
                    let plan = try await database.read { db in try await Self.plan(integrationID: job.integrationID, organizationID: job.organizationID, in: db) }
                    launch(job, plan: plan)
                } catch let error as PortalError where error.code == .unavailable {
                    // Not the job's fault: it is taken over again once this lease runs out.
                    logger.warning("a sync job waits for the database", metadata: ["portal.job": "\(job.id)", "portal.reason": "\(error.message)"])
                } catch {
                    await fail(job, counts: Counts(job.counts), processed: job.recordsProcessed, message: "cannot resume: \((error as? PortalError)?.message ?? "\(error)")")
                }
            }
        } catch is CancellationError {
            // Shutting down: the database closed under this pass, which the next start repeats.
        } catch {
            logger.error("looking for abandoned sync jobs failed", metadata: ["portal.error": "\(error)"])
        }
    }

    /// Hands a job to the service's `run()`, which runs it until it ends (or the instance shuts down).
    func launch(_ job: SyncJobRecord, plan: Plan) {
        _ = active.withLock { $0.insert(job.id) }
        submit.yield(Submission(job: job, plan: plan))
    }

    /// The poll loop's completed passes (see ``passes``).
    package var completedPasses: Int { passes.load(ordering: .acquiring) }

    /// Waits until the jobs submitted in this process have ended (tests); `run()` must be running.
    package func waitForJobs() async {
        while active.withLock({ !$0.isEmpty }) {
            do { try await Task.sleep(for: .milliseconds(10)) } catch { return }
        }
    }

    // MARK: Running a job

    /// What a job needs from its integration.
    struct Plan: Sendable {
        var configuration: SyncConfiguration
        var baseURL: String
        var slug: String
    }

    static func plan(integrationID: UUID, organizationID: UUID, in db: Transaction) async throws -> Plan {
        guard let integration = try await IntegrationStore(db).find(id: integrationID, organizationID: organizationID), integration.deletedAt == nil else {
            throw PortalError.notFound("integration")
        }
        guard let raw = integration.syncConfig else {
            throw PortalError(.validationFailed, "the integration has no syncConfig", fieldErrors: [.init(pointer: "/syncConfig", message: "is required to sync")])
        }
        let configuration = try SyncConfiguration.parse(raw)
        guard let slug = try await OrganizationStore(db).find(id: organizationID)?.slug else { throw PortalError.notFound("organization") }
        return Plan(configuration: configuration, baseURL: integration.baseURL ?? "", slug: slug)
    }
}

/// A job as the API shows it.
package struct SyncJobView: Sendable, Encodable {
    package var id: String
    package var integrationId: String
    package var entity: String
    package var syncType: SyncType
    package var status: SyncJobStatus
    package var recordsProcessed: Int
    package var recordsTotal: Int?
    package var counts: JSONValue
    package var error: String?
    package var since: String?
    package var startedAt: String
    package var completedAt: String?
    package var cancelRequested: Bool

    init(_ job: SyncJobRecord) {
        id = job.id.uuidString.lowercased()
        integrationId = job.integrationID.uuidString.lowercased()
        entity = job.entity
        syncType = job.syncType
        status = job.status
        recordsProcessed = job.recordsProcessed
        recordsTotal = job.recordsTotal
        counts = job.counts
        error = job.errorMessage
        since = job.sinceMark
        startedAt = Timestamp.rfc3339(job.startedAt)
        completedAt = job.completedAt.map(Timestamp.rfc3339)
        cancelRequested = job.cancelRequested
    }
}

/// A job's counts (DESIGN section 4: the `sync.completed` entry's).
struct Counts: Sendable {
    var fetched = 0, created = 0, updated = 0, unchanged = 0, deleted = 0, conflicts = 0, rejected = 0
    /// Records of erased subjects, not stored again.
    var suppressed = 0
    var pages = 0

    init() {}

    init(_ json: JSONValue) {
        let m = json.objectValue ?? [:]
        func int(_ key: String) -> Int { if case .int(let n)? = m[key] { Int(n) } else { 0 } }
        fetched = int("fetched"); created = int("created"); updated = int("updated"); unchanged = int("unchanged")
        deleted = int("deleted"); conflicts = int("conflicts"); rejected = int("rejected"); pages = int("pages")
        suppressed = int("suppressed")
    }

    var json: JSONValue {
        [
            "fetched": .int(Int64(fetched)), "created": .int(Int64(created)), "updated": .int(Int64(updated)), "unchanged": .int(Int64(unchanged)),
            "deleted": .int(Int64(deleted)), "conflicts": .int(Int64(conflicts)), "rejected": .int(Int64(rejected)), "pages": .int(Int64(pages)),
            "suppressed": .int(Int64(suppressed)),
        ]
    }
}

/// An order-independent digest of a set of record ids that survives a resume: the sum, modulo 2^256, of
/// SHA-256 of each id (as UTF-8). Recomputable by anyone holding the ids (PI1 reconciliation).
struct RecordIDDigest: Sendable, Equatable {
    private(set) var sum = [UInt8](repeating: 0, count: 32)

    init() {}

    init?(hex: String) {
        guard let bytes = Hex.decode(hex), bytes.count == 32 else { return nil }
        sum = bytes
    }

    mutating func add(_ id: String) {
        let digest = Array(SHA256.hash(data: Array(id.utf8)))
        var carry = 0
        for i in stride(from: 31, through: 0, by: -1) {
            let total = Int(sum[i]) + Int(digest[i]) + carry
            sum[i] = UInt8(total & 0xFF)
            carry = total >> 8
        }
    }

    var hex: String { Hex.encode(sum) }
}
