import Foundation
import Gateway
import Integrations
import Ledger
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Sync
import Synchronization
import Testing

/// A database, sequencer, gateway and sync engine around a fake provider.
struct SyncEnvironment: Sendable {
    let db: Database
    let url: String
    let provider: FakeProvider
    let registry: IntegrationRegistry
    let gateway: Gateway
    let sequencer: LedgerSequencer
    let vault: CredentialVault
    let engine: SyncEngine
    let admin: Principal
    /// The master key (base64) the vault was made with, for rotation tests.
    let masterKey: String

    static let entities: JSONValue = [
        "users": ["endpoint": "/cursor/users", "itemsPath": "/data", "updatedSinceParam": "updated_since", "pagination": [
            "style": "cursor", "cursorParam": "after", "nextCursorPath": "/meta/next", "pageSizeParam": "limit", "pageSize": 500,
        ]],
        "users_page": ["endpoint": "/page/users", "itemsPath": "/items", "updatedSinceParam": "updated_since", "pagination": [
            "style": "page", "pageParam": "page", "pageSizeParam": "per_page", "pageSize": 400,
        ]],
        "users_link": ["endpoint": "/link/users", "updatedSinceParam": "updated_since", "pagination": ["style": "link", "pageSizeParam": "per_page", "pageSize": 300]],
    ]

    static func with(
        _ backend: Backend, conflictResolution: JSONValue = ["strategy": "source_wins"], schedule: JSONValue? = nil,
        engineConfiguration: SyncEngine.Configuration = .init(), clock: any WallClock = SystemWallClock(), runEngine: Bool = true,
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) },
        _ body: @Sendable (SyncEnvironment, UUID) async throws -> Void
    ) async throws {
        try await FakeProvider.with { provider in
            try await TestDatabase.with(backend) { test, db in
                let org = Organization(id: IdentifierGenerator.shared.next(), slug: "acme", name: "Acme", createdAt: Date())
                try await db.write { try await OrganizationStore($0).insert(org) }
                let sequencer = LedgerSequencer(database: db, logger: quietLogger)
                let masterKey = MasterKeyRing.generateBase64()
                let vault = CredentialVault(ring: try MasterKeyRing.load(masterKey: masterKey, keyFile: nil))
                let registry = IntegrationRegistry(database: db, vault: vault, audit: sequencer, defaultPolicy: OrganizationPolicy(approvals: .off))
                let gateway = Gateway(
                    database: db, vault: vault, registry: registry, audit: sequencer, logger: quietLogger,
                    configuration: .init(policy: try OutboundPolicy(allowList: "127.0.0.1")), sleep: { _ in }
                )
                let engine = SyncEngine(database: db, gateway: gateway, vault: vault, audit: sequencer, clock: clock, logger: quietLogger, configuration: engineConfiguration, sleep: sleep)
                let admin = Principal(tokenID: UUID(), organizationID: org.id, organizationSlug: "acme", role: .admin, owner: "admin@acme")
                let environment = SyncEnvironment(
                    db: db, url: test.url, provider: provider, registry: registry, gateway: gateway, sequencer: sequencer, vault: vault, engine: engine, admin: admin,
                    masterKey: masterKey
                )
                let integration = try await registry.register(try IntegrationInput.parse([
                    "name": "Directory", "type": "identity_provider", "baseUrl": .string(provider.baseURL), "authMethod": "api_key",
                    "credentials": ["apiKey": "k-0123456789"],
                    "syncConfig": schedule.map { ["entities": entities, "conflictResolution": conflictResolution, "schedule": $0] }
                        ?? ["entities": entities, "conflictResolution": conflictResolution],
                ]), by: admin)
                let integrationID = try #require(UUID(uuidString: integration.id))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await sequencer.run() }
                    if runEngine { group.addTask { try await engine.run() } }
                    do {
                        try await body(environment, integrationID)
                    } catch {
                        group.cancelAll()
                        try? await gateway.shutdown()
                        throw error
                    }
                    group.cancelAll()
                    try await gateway.shutdown()
                }
            }
        }
    }

    /// Runs a sync of `entities` to its end and returns the jobs as they finished.
    func sync(_ integrationID: UUID, _ type: SyncType, _ entities: [String]) async throws -> [SyncJobView] {
        let started = try await engine.start(integrationID: integrationID, SyncEngine.Request(syncType: type, entities: entities), by: admin)
        await engine.waitForJobs()
        var finished: [SyncJobView] = []
        for job in started { finished.append(try await engine.job(integrationID: integrationID, jobID: UUID(uuidString: job.id)!, by: admin)) }
        return finished
    }

    /// The live records of an entity, as the fake provider's field maps.
    func records(_ integrationID: UUID, _ entity: String) async throws -> [String: [String: String]] {
        let all = try await db.read { tx in
            try await SyncStore(tx).changes(organizationID: admin.organizationID, integrationID: integrationID, entity: entity, after: nil, limit: 1_000_000)
        }
        var out: [String: [String: String]] = [:]
        for record in all where record.deletedAt == nil {
            out[record.recordID] = (record.data.objectValue ?? [:]).compactMapValues(\.stringValue)
        }
        return out
    }

    func count(_ counts: JSONValue, _ key: String) -> Int {
        if case .int(let n)? = counts.objectValue?[key] { Int(n) } else { -1 }
    }

    func ledgerTypes() async throws -> [LedgerEntry] {
        try await sequencer.chainedEntries(of: admin.organizationID, in: db)
    }
}

@Suite("Sync engine")
struct SyncEngineTests {
    @Test("full and incremental syncs over cursor, page and Link pagination leave exactly the provider's state; deletions are found", arguments: Backend.available)
    func matchesProvider(backend: Backend) async throws {
        try await SyncEnvironment.with(backend) { env, integrationID in
            let entities = ["users", "users_page", "users_link"]
            env.provider.seed(10_000)
            let first = try await env.sync(integrationID, .full, entities)
            for job in first {
                #expect(job.status == .completed, "\(job.entity): \(job.error ?? "")")
                #expect(env.count(job.counts, "created") == 10_000 && job.recordsProcessed == 10_000 && job.recordsTotal == 10_000, "\(job.entity)")
            }
            for entity in entities { #expect(try await env.records(integrationID, entity) == env.provider.snapshot(), "\(entity) after the first full sync") }

            // The provider changes: 50 updated, 30 deleted, 20 added.
            for n in 1...50 { env.provider.update(String(format: "u-%06d", n), plan: "pro") }
            for n in 101...130 { env.provider.delete(String(format: "u-%06d", n)) }
            env.provider.seed(20)
            let incremental = try await env.sync(integrationID, .incremental, entities)
            for job in incremental {
                #expect(job.status == .completed, "\(job.entity): \(job.error ?? "")")
                #expect(job.since != nil)
                #expect(env.count(job.counts, "updated") == 50 && env.count(job.counts, "created") == 20 && env.count(job.counts, "deleted") == 0, "\(job.entity): \(job.counts)")
                #expect(env.count(job.counts, "fetched") < 200, "an incremental sync fetches the changes only: \(job.counts)")
            }
            let full = try await env.sync(integrationID, .full, entities)
            for job in full {
                #expect(env.count(job.counts, "deleted") == 30 && env.count(job.counts, "unchanged") == 9_990 && env.count(job.counts, "created") == 0, "\(job.entity): \(job.counts)")
            }
            for entity in entities { #expect(try await env.records(integrationID, entity) == env.provider.snapshot(), "\(entity) after the changes") }

            let entries = try await env.ledgerTypes()
            #expect(entries.filter { $0.type == "sync.started" }.count == 9)
            let completed = entries.filter { $0.type == "sync.completed" }
            #expect(completed.count == 9)
            #expect(completed.allSatisfy { $0.data.objectValue?["recordIdDigest"]?.stringValue?.count == 64 })
            // The three first full syncs saw the same ids, so their digests agree.
            let firstDigests = Set(completed.prefix(3).compactMap { $0.data.objectValue?["recordIdDigest"]?.stringValue })
            #expect(firstDigests.count == 1)
        }
    }

    @Test("a provider that keeps answering 429 is waited for as it asks, then the job fails naming it (no real time passes)", arguments: [Backend.sqlite])
    func throttledForever(backend: Backend) async throws {
        let waits = Mutex<[Duration]>([])
        try await SyncEnvironment.with(backend, engineConfiguration: .init(maxThrottleWait: 120), sleep: { d in waits.withLock { $0.append(d) } }) { env, integrationID in
            env.provider.seed(10)
            env.provider.throttle(1_000_000, from: 1)
            let started = try await env.engine.start(integrationID: integrationID, .init(syncType: .full, entities: ["users"]), by: env.admin)
            await env.engine.waitForJobs()
            let job = try await env.engine.job(integrationID: integrationID, jobID: try #require(UUID(uuidString: started[0].id)), by: env.admin)
            #expect(job.status == .failed && job.error?.contains("kept answering 429") == true, "\(job.error ?? "")")
            let all = waits.withLock { $0 }
            let total = all.reduce(Duration.zero, +)
            #expect(!all.isEmpty && all.allSatisfy { $0 >= .seconds(1) }, "each wait at least the provider's Retry-After of 1 s: \(all.prefix(5))")
            #expect(total <= .seconds(120) && total >= .seconds(60), "waited up to maxThrottleWait: \(total)")
            #expect(env.provider.throttledAnswers >= 1)
        }
    }

    @Test("a page that cannot be fetched fails the job after the pages before it are committed (the next page is fetched while one commits)", arguments: Backend.available)
    func failingLaterPage(backend: Backend) async throws {
        try await SyncEnvironment.with(backend, engineConfiguration: .init(maxThrottleWait: 5), sleep: { _ in }) { env, integrationID in
            env.provider.seed(1_200)
            // Requests 1 and 2 are pages 1 and 2 (500 users each); page 3 is answered 429 for good.
            env.provider.throttle(1_000_000, from: 3)
            let jobs = try await env.sync(integrationID, .full, ["users"])
            let job = try #require(jobs.first)
            #expect(job.status == .failed && job.error?.contains("kept answering 429") == true, "\(job.error ?? "")")
            #expect(job.recordsProcessed == 1_000, "pages 1 and 2 committed, nothing of page 3: \(job.recordsProcessed)")
            #expect(try await env.records(integrationID, "users").count == 1_000)
            // Nothing was soft-deleted: a failed full sync never reaches its deletion step.
            let types = try await env.ledgerTypes().map(\.type)
            #expect(types.contains("sync.failed") && !types.contains("sync.completed"), "\(types.suffix(5))")
        }
    }

    @Test("one running job per entity: a second start is a 409 naming it; unknown entities are 422", arguments: [Backend.sqlite])
    func oneRunningJob(backend: Backend) async throws {
        try await SyncEnvironment.with(backend) { env, integrationID in
            env.provider.seed(2_000)
            env.provider.throttle(1, from: 1)
            let started = try await env.engine.start(integrationID: integrationID, .init(syncType: .full, entities: ["users"]), by: env.admin)
            do {
                _ = try await env.engine.start(integrationID: integrationID, .init(syncType: .full, entities: ["users"]), by: env.admin)
                Issue.record("a second job started")
            } catch let error as PortalError {
                #expect(error.code == .conflict)
                #expect(error.details["runningJobId"] == .string(started[0].id))
            }
            await #expect(throws: PortalError.self) {
                try await env.engine.start(integrationID: integrationID, .init(syncType: .full, entities: ["groups"]), by: env.admin)
            }
            await env.engine.waitForJobs()
            let job = try await env.engine.job(integrationID: integrationID, jobID: UUID(uuidString: started[0].id)!, by: env.admin)
            #expect(job.status == .completed)
            #expect(env.provider.throttledAnswers == 1, "the 429 slowed the sync instead of failing it")
        }
    }

    @Test("a conflict: changed at the provider and in the portal; merge takes one-sided changes and files the rest for review", arguments: Backend.available)
    func conflicts(backend: Backend) async throws {
        try await SyncEnvironment.with(backend, conflictResolution: ["strategy": "merge", "rules": [["field": "name", "action": "overwrite"]]]) { env, integrationID in
            env.provider.seed(10)
            _ = try await env.sync(integrationID, .full, ["users"])
            // The portal edits two users; the provider changes one of them and another one.
            let edited = try await env.db.write { tx in
                try await SyncStore(tx).editLocal(
                    integrationID: integrationID, organizationID: env.admin.organizationID, entity: "users", recordID: "u-000001",
                    data: ["id": "u-000001", "email": "user1@example.test", "name": "User 1", "plan": "team", "updated_at": "2026-01-01T00:00:00Z"], at: Date()
                )
            }
            #expect(edited)
            env.provider.update("u-000001", plan: "enterprise", name: "Ada")
            env.provider.update("u-000002", plan: "pro")
            let job = try #require(try await env.sync(integrationID, .incremental, ["users"]).first)
            #expect(job.status == .completed, "\(job.error ?? "")")
            #expect(env.count(job.counts, "conflicts") == 1 && env.count(job.counts, "updated") == 1, "\(job.counts)")
            let records = try await env.records(integrationID, "users")
            #expect(records["u-000001"]?["name"] == "Ada", "the rule takes the provider's name")
            #expect(records["u-000001"]?["plan"] == "team", "both changed the plan: the portal's is kept for review")
            #expect(records["u-000002"]?["plan"] == "pro")
            let open = try await env.db.read { tx in
                try await SyncStore(tx).conflicts(organizationID: env.admin.organizationID, integrationID: integrationID, status: "open", before: nil, limit: 10)
            }
            #expect(open.count == 1)
            #expect(open.first?.recordID == "u-000001" && open.first?.flagged == ["plan", "updated_at"])
            let entries = try await env.ledgerTypes()
            let conflict = try #require(entries.first { $0.type == "sync.conflict" })
            #expect(conflict.data.objectValue?["recordIdDigest"]?.stringValue?.count == 64)
            #expect(String(decoding: try conflict.canonicalBytes(), as: UTF8.self).contains("u-000001") == false, "no record id in the ledger")
        }
    }

    @Test("a job whose instance stopped midway is resumed from its last committed page by another: no duplicates, no gaps", arguments: Backend.available)
    func resumes(backend: Backend) async throws {
        // The environment's engine starts only once the first instance has stopped (as a restarted process would).
        try await SyncEnvironment.with(backend, engineConfiguration: .init(leaseSeconds: 1, pollInterval: .milliseconds(200)), runEngine: false) { env, integrationID in
            env.provider.seed(3_000)
            // The provider stalls (429) from its fourth request on, while the first instance runs the job.
            env.provider.throttle(1_000_000, from: 4)
            let first = SyncEngine(database: env.db, gateway: env.gateway, vault: env.vault, audit: env.sequencer, logger: quietLogger, configuration: .init(leaseSeconds: 1))
            let runFirst = Task { try await first.run() }
            let started = try await first.start(integrationID: integrationID, .init(syncType: .full, entities: ["users"]), by: env.admin)
            let jobID = try #require(UUID(uuidString: started[0].id))
            // Three pages committed, and the fourth request throttled: the first instance is stuck on page 4.
            #expect(try await eventually {
                try await env.engine.job(integrationID: integrationID, jobID: jobID, by: env.admin).recordsProcessed >= 1_500 && env.provider.throttledAnswers > 0
            })
            // The first instance stops (its job stays running, its lease runs out); the provider recovers.
            runFirst.cancel()
            _ = await runFirst.result
            let stopped = try await env.engine.job(integrationID: integrationID, jobID: jobID, by: env.admin)
            #expect(stopped.status == .running && stopped.recordsProcessed == 1_500, "three pages of 500 committed: \(stopped.recordsProcessed)")
            // Another instance (lease 1 s, polling every 200 ms) takes the job over.
            env.provider.throttle(0)
            let runSecond = Task { try await env.engine.run() }
            var finished = stopped
            #expect(try await eventually {
                finished = try await env.engine.job(integrationID: integrationID, jobID: jobID, by: env.admin)
                return finished.status != .running
            })
            runSecond.cancel()
            _ = await runSecond.result
            #expect(finished.status == .completed, "\(finished.error ?? "")")
            #expect(env.count(finished.counts, "fetched") == 3_000 && env.count(finished.counts, "created") == 3_000, "each page counted once: \(finished.counts)")
            #expect(try await env.records(integrationID, "users") == env.provider.snapshot())
        }
    }

    @Test("a completed sync sets the integration's lastSync (the seed's field); before it, it is null", arguments: Backend.available)
    func lastSync(backend: Backend) async throws {
        try await SyncEnvironment.with(backend) { env, integrationID in
            env.provider.seed(10)
            #expect(try await env.registry.get(id: integrationID, organizationID: env.admin.organizationID).lastSync == nil)
            let job = try #require(try await env.sync(integrationID, .full, ["users"]).first)
            #expect(job.status == .completed)
            let after = try await env.registry.get(id: integrationID, organizationID: env.admin.organizationID)
            let stamp = try #require(after.lastSync)
            #expect(Timestamp.parse(stamp) != nil, "\(stamp)")
            #expect(job.completedAt.map { Timestamp.parse($0) == Timestamp.parse(stamp) } ?? false, "lastSync is the job's completion: \(stamp) vs \(String(describing: job.completedAt))")
        }
    }

    @Test("a page slower than the lease is fetched and counted once: the instance keeps its lease while it works", arguments: Backend.available)
    func slowPages(backend: Backend) async throws {
        try await SyncEnvironment.with(backend, engineConfiguration: .init(leaseSeconds: 1, pollInterval: .milliseconds(50))) { env, integrationID in
            env.provider.seed(1_500)
            // Each page of 500 takes 1.5 s, longer than the 1 s lease; the engine looks for expired leases every 50 ms.
            env.provider.slow(1_500)
            let jobs = try await env.sync(integrationID, .full, ["users"])
            let job = try #require(jobs.first)
            #expect(job.status == .completed, "\(job.error ?? "")")
            #expect(env.provider.requests == 3, "each page fetched once, by one execution: \(env.provider.requests) requests")
            #expect(env.count(job.counts, "fetched") == 1_500 && env.count(job.counts, "created") == 1_500 && env.count(job.counts, "unchanged") == 0, "\(job.counts)")
            #expect(try await env.records(integrationID, "users") == env.provider.snapshot())
        }
    }

    @Test("the scheduler starts due syncs once per interval, and not while paused", arguments: [Backend.sqlite])
    func scheduler(backend: Backend) async throws {
        let clock = ManualWallClock()
        try await SyncEnvironment.with(
            backend, schedule: ["intervalSeconds": 3600], engineConfiguration: .init(pollInterval: .milliseconds(50)), clock: clock
        ) { env, integrationID in
            env.provider.seed(50)
            func jobs() async throws -> [SyncJobView] {
                try await env.engine.jobs(integrationID: integrationID, before: nil, limit: 100, by: env.admin)
            }
            func settle(_ count: Int) async throws -> [SyncJobView] {
                var all: [SyncJobView] = []
                _ = try await eventually {
                    all = try await jobs()
                    return all.count >= count && all.allSatisfy { $0.status != .running }
                }
                return all
            }
            // Due at once: one job per entity, incremental from nothing.
            var all = try await settle(3)
            #expect(all.count == 3 && all.allSatisfy { $0.status == .completed && $0.syncType == .incremental })
            // Two full passes of the scheduler after the jobs ended: had one been due, it would have started.
            func twoPasses() async throws {
                let seen = env.engine.completedPasses
                #expect(try await eventually { env.engine.completedPasses >= seen + 2 }, "the scheduler runs")
            }
            try await twoPasses()
            #expect(try await jobs().count == 3, "not due again before the interval")
            let paused = try await env.engine.setPaused(integrationID: integrationID, paused: true, by: env.admin)
            #expect(paused.paused && paused.intervalSeconds == 3600)
            clock.advance(by: 3601)
            try await twoPasses()
            #expect(try await jobs().count == 3, "paused: nothing starts")
            _ = try await env.engine.setPaused(integrationID: integrationID, paused: false, by: env.admin)
            all = try await settle(6)
            #expect(all.count == 6)
            let schedule = try await env.engine.schedule(integrationID: integrationID, by: env.admin)
            #expect(schedule.nextRunAt != nil && !schedule.paused)
            let types = try await env.ledgerTypes().map(\.type)
            #expect(types.filter { $0 == "sync.schedule" }.count == 2)
        }
    }
}
