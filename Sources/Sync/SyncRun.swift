import Crypto
import Foundation
import Integrations
import Ledger
import Logging
import PortalCore
import Storage

extension SyncEngine {
    /// Where a job stands between pages (its `checkpoint`).
    struct Checkpoint: Sendable {
        /// The next page: query parameters for the entity's endpoint, or a `Link` URL.
        var next: NextPage?
        var highWater: String?
        var digest = RecordIDDigest()
        /// True once the last page committed (a full sync then only has its deletions left).
        var listed = false

        init(next: NextPage?) {
            self.next = next
        }

        init(_ json: JSONValue) {
            let m = json.objectValue ?? [:]
            if let url = m["nextUrl"]?.stringValue {
                next = .url(url)
            } else if let query = m["nextQuery"]?.arrayValue {
                next = .query(query.compactMap { pair in
                    guard let p = pair.arrayValue, p.count == 2, let k = p[0].stringValue, let v = p[1].stringValue else { return nil }
                    return (k, v)
                })
            }
            highWater = m["highWater"]?.stringValue
            digest = m["recordIdDigest"]?.stringValue.flatMap(RecordIDDigest.init(hex:)) ?? RecordIDDigest()
            listed = m["listed"] == .bool(true)
        }

        var json: JSONValue {
            var m: [String: JSONValue] = ["recordIdDigest": .string(digest.hex), "listed": .bool(listed)]
            switch next {
            case .url(let url)?: m["nextUrl"] = .string(url)
            case .query(let query)?: m["nextQuery"] = .array(query.map { [.string($0.0), .string($0.1)] })
            case nil: break
            }
            if let highWater { m["highWater"] = .string(highWater) }
            return .object(m)
        }
    }

    /// The job's lease passed to another instance: the transaction rolls back.
    struct LeaseLost: Error {}

    private struct Stop: Error {
        var status: SyncJobStatus
        var message: String?
    }

    /// Runs `job` from its checkpoint to its end: completed, failed or cancelled. Returns early, leaving the
    /// job running for the next start, when this instance shuts down or loses the lease.
    ///
    /// The lease is renewed every third of its length while the job runs, not only when a page commits: a
    /// page that takes longer than the lease (a slow provider, 429s waited out) must not let another
    /// instance start the same job beside this one.
    func execute(_ job: SyncJobRecord, plan: Plan) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.keepLease(job) }
            await self.run(job, plan: plan)
            group.cancelAll()
        }
    }

    /// Renews `job`'s lease until cancelled or lost.
    private func keepLease(_ job: SyncJobRecord) async {
        let every = Duration.milliseconds(max(50, Int(configuration.leaseSeconds * 1000 / 3)))
        while true {
            do {
                try await Task.sleep(for: every)
                let until = clock.now().addingTimeInterval(configuration.leaseSeconds)
                let held = try await database.write { db in try await SyncStore(db).renewLease(jobID: job.id, owner: self.owner, until: until) }
                if !held { return }
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                logger.warning("renewing a sync job's lease failed", metadata: ["portal.job": "\(job.id)", "portal.error": "\(error)"])
            }
        }
    }

    private func run(_ job: SyncJobRecord, plan: Plan) async {
        guard let entity = plan.configuration.entities[job.entity] else {
            await fail(job, counts: Counts(job.counts), processed: job.recordsProcessed, message: "the syncConfig no longer has entity '\(job.entity)'")
            return
        }
        var counts = Counts(job.counts)
        var processed = job.recordsProcessed
        var checkpoint: Checkpoint
        if job.checkpoint.objectValue?["recordIdDigest"] != nil {
            checkpoint = Checkpoint(job.checkpoint)
        } else {
            var first = entity.pagination.firstQuery()
            if job.syncType == .incremental, let since = job.sinceMark, let param = entity.updatedSinceParam { first.append((param, since)) }
            checkpoint = Checkpoint(next: .query(first))
        }
        let principal = Principal(
            tokenID: job.requestedBy.flatMap(UUID.init(uuidString:)) ?? UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
            organizationID: job.organizationID, organizationSlug: plan.slug, role: .admin, owner: "sync"
        )
        // The next page is fetched while this one commits (its address is known once this one is parsed), so
        // a sync takes about the longer of fetching and writing, not their sum. The page fetched ahead is
        // used only if it is the one the committed checkpoint names; a stop, a cancellation or a lost lease
        // leaves it unused (one call more than needed, recorded like any other).
        var ahead: (endpoint: String, page: Result<GatewayResult, any Error>)?
        do {
            while !checkpoint.listed {
                if Task.isCancelled { return }
                if try await database.read({ try await SyncStore($0).cancelRequested(jobID: job.id) }) { throw Stop(status: .cancelled, message: "cancelled on request") }
                guard counts.pages < configuration.maxPages else { throw Stop(status: .failed, message: "more than \(configuration.maxPages) pages") }
                let endpoint = try Self.endpoint(for: checkpoint.next, entity: entity, baseURL: plan.baseURL)
                let page: GatewayResult
                if let fetched = ahead, fetched.endpoint == endpoint {
                    page = try fetched.page.get()
                } else {
                    page = try await fetch(endpoint, integrationID: job.integrationID, by: principal)
                }
                ahead = nil
                guard let document = try? JSONValue.parse(page.body) else { throw Stop(status: .failed, message: "page \(counts.pages + 1) is not JSON") }
                guard case .array(let items)? = JSONPointer.value(at: entity.itemsPath, in: document) else {
                    throw Stop(status: .failed, message: "page \(counts.pages + 1) has no array at itemsPath '\(entity.itemsPath)'")
                }
                var current: [(String, String)] = []
                if case .query(let query)? = checkpoint.next { current = query }
                let next = entity.pagination.next(after: document, headers: page.headers.map { ($0.name, $0.value) }, itemCount: items.count, current: current)
                var after = checkpoint
                after.next = next
                after.listed = next == nil
                let nextEndpoint = after.listed || counts.pages + 1 >= configuration.maxPages
                    ? nil : try? Self.endpoint(for: next, entity: entity, baseURL: plan.baseURL)
                async let fetchedAhead = fetchAhead(nextEndpoint, integrationID: job.integrationID, by: principal)
                let committed = try await commit(page: items, job: job, entity: entity, plan: plan, counts: &counts, processed: &processed, checkpoint: &after)
                guard committed else {
                    logger.warning("a sync job's lease passed to another instance; this one stops", metadata: ["portal.job": "\(job.id)"])
                    return
                }
                checkpoint = after
                if let nextEndpoint, let page = await fetchedAhead { ahead = (nextEndpoint, page) }
            }
            try await complete(job, entity: entity, counts: &counts, processed: processed, checkpoint: checkpoint)
        } catch let stop as Stop {
            if stop.status == .cancelled {
                await end(job, status: .cancelled, counts: counts, processed: processed, message: stop.message, checkpoint: checkpoint)
            } else {
                await fail(job, counts: counts, processed: processed, message: stop.message ?? "failed")
            }
        } catch is CancellationError {
            return
        } catch is LeaseLost {
            logger.warning("a sync job's lease passed to another instance; this one stops", metadata: ["portal.job": "\(job.id)"])
            return
        } catch let error as PortalError where error.code == .unavailable {
            // The database is unreachable (a restart, a failover): the page in flight was not committed, and
            // the job is not failed for it. It stays running; once its lease runs out an instance resumes it
            // from its last committed page, counting nothing twice.
            logger.warning("a sync job waits for the database; it resumes from its last committed page", metadata: ["portal.job": "\(job.id)", "portal.reason": "\(error.message)"])
            return
        } catch {
            if Task.isCancelled { return }
            await fail(job, counts: counts, processed: processed, message: (error as? PortalError)?.message ?? "\(type(of: error))")
        }
    }

    /// The endpoint (path and query below the base URL) of a page.
    static func endpoint(for next: NextPage?, entity: SyncEntity, baseURL: String) throws -> String {
        switch next {
        case .url(let url)?:
            // A Link target must stay under the integration's base URL: the gateway calls only there.
            let base = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
            guard url.hasPrefix(base + "/") || url == base else {
                throw PortalError(.refused, "the provider's next link leaves the integration's base URL")
            }
            return String(url.dropFirst(base.count))
        case .query(let query)?:
            guard !query.isEmpty else { return entity.endpoint }
            var components = URLComponents()
            components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) }
            let encoded = components.percentEncodedQuery ?? ""
            return entity.endpoint + (entity.endpoint.contains("?") ? "&" : "?") + encoded.replacingOccurrences(of: "+", with: "%2B")
        case nil:
            return entity.endpoint
        }
    }

    /// The page at `endpoint`, fetched ahead, or the error fetching it gave (raised when the page is used,
    /// as if fetched then); nil when there is none to fetch.
    private func fetchAhead(_ endpoint: String?, integrationID: UUID, by principal: Principal) async -> Result<GatewayResult, any Error>? {
        guard let endpoint else { return nil }
        do {
            return .success(try await fetch(endpoint, integrationID: integrationID, by: principal))
        } catch {
            return .failure(error)
        }
    }

    /// One page from the provider through the gateway; 429s (the provider's, or the portal's own limit) are
    /// waited out with their `Retry-After` (or a doubling pause), up to `maxThrottleWait` in all.
    private func fetch(_ endpoint: String, integrationID: UUID, by principal: Principal) async throws -> GatewayResult {
        var waited: TimeInterval = 0
        var pause: TimeInterval = 0.5
        while true {
            let wait: TimeInterval
            do {
                let result = try await gateway.perform(
                    GatewayCall(method: "GET", endpoint: endpoint, headers: [("Accept", "application/json")], body: []), integrationID: integrationID, by: principal
                )
                if (200..<300).contains(result.status) { return result }
                guard result.status == 429 else { throw Stop(status: .failed, message: "the provider answered \(result.status) for \(endpoint.prefix(200))") }
                let retryAfter = result.headers.first { $0.name.lowercased() == "retry-after" }.flatMap { TimeInterval($0.value.trimmingCharacters(in: .whitespaces)) }
                wait = retryAfter ?? pause
            } catch let error as PortalError where error.code == .throttled {
                wait = error.retryAfterSeconds.map(TimeInterval.init) ?? pause
            }
            let bounded = min(max(wait, 0.05), 60)
            guard waited + bounded <= configuration.maxThrottleWait else {
                throw Stop(status: .failed, message: "the provider kept answering 429 for \(Int(waited)) s")
            }
            try await sleep(.milliseconds(Int(bounded * 1000)))
            waited += bounded
            pause = min(pause * 2, 30)
        }
    }

    /// Writes one page in one transaction with the job's progress and checkpoint; false if the lease was lost.
    private func commit(
        page items: [JSONValue], job: SyncJobRecord, entity: SyncEntity, plan: Plan, counts: inout Counts, processed: inout Int, checkpoint: inout Checkpoint
    ) async throws -> Bool {
        let now = clock.now()
        // Read and map the items outside the transaction.
        var rows: [(id: String, record: JSONValue, updated: String?, subject: String?)] = []
        var rejected = 0
        var seen = Set<String>()
        for item in items {
            guard case .object = item, let id = entity.recordID(of: item), !seen.contains(id) else {
                rejected += 1
                continue
            }
            // A record that describes a person must name its subject (it is stored under the subject's key).
            var subject: String?
            if let field = entity.subjectIdField {
                switch SyncEntity.lookup(field, in: item) {
                case .string(let s)? where !s.trimmingCharacters(in: .whitespaces).isEmpty: subject = s
                case .int(let n)?: subject = String(n)
                default:
                    rejected += 1
                    continue
                }
            }
            let record: JSONValue
            do {
                record = try entity.mapping?.apply(to: item) ?? item
            } catch {
                rejected += 1
                continue
            }
            seen.insert(id)
            let updated: String? = switch SyncEntity.lookup(entity.updatedField, in: item) {
            case .string(let s)?: s
            case .int(let n)?: String(n)
            default: nil
            }
            rows.append((id, record, updated, subject))
        }
        var pageCounts = counts
        pageCounts.fetched += items.count
        pageCounts.rejected += rejected
        pageCounts.pages += 1
        var after = checkpoint
        for row in rows {
            after.digest.add(row.id)
            if let updated = row.updated, Self.later(updated, than: after.highWater) { after.highWater = updated }
        }
        let policy = plan.configuration.conflicts
        let sealing = entity.subjectIdField == nil ? nil : self.sealing
        let leaseUntil = now.addingTimeInterval(configuration.leaseSeconds)
        let finalCounts: Counts?
        do {
            finalCounts = try await database.write { db -> Counts? in
                var c = pageCounts
                let store = SyncStore(db)
                let unchanged = try await Self.upsert(
                    rows.map { ($0.id, $0.record, $0.subject) },
                    target: UpsertTarget(organizationID: job.organizationID, integrationID: job.integrationID, entity: job.entity, jobID: job.id, sealing: sealing),
                    policy: policy, counts: &c, ids: ids, audit: audit, in: db, at: now
                )
                if job.syncType == .full { try await store.markSeen(integrationID: job.integrationID, entity: job.entity, jobID: job.id, ids: unchanged) }
                // A lease lost meanwhile (another instance took the job over) rolls the page back.
                guard try await store.saveProgress(
                    jobID: job.id, owner: owner, processed: processed + items.count, total: nil, counts: c.json, checkpoint: after.json, leaseUntil: leaseUntil
                ) else { throw LeaseLost() }
                return c
            }
        } catch is LeaseLost {
            finalCounts = nil
        }
        guard let finalCounts else { return false }
        if finalCounts.conflicts > counts.conflicts { audit.wake() }
        observe(job, from: counts, to: finalCounts)
        counts = finalCounts
        processed += items.count
        checkpoint = after
        return true
    }

    /// Where upserted records go, and what wrote them.
    struct UpsertTarget {
        var organizationID: UUID
        var integrationID: UUID
        var entity: String
        var jobID: UUID?
        var source = "sync"
        var sourceEventID: String?
        /// Set for entities whose records describe a person: they are stored under the subject's key.
        var sealing: SubjectSealing?
    }

    /// The one upsert path of syncs and webhook events: new or undeleted records are created, records whose
    /// provider version did not change are left alone, records changed only at the provider are updated,
    /// and records changed at the provider and locally since the last sync go through the conflict policy
    /// (filed for review when it says so, and recorded as `sync.conflict`). Returns the unchanged ids.
    static func upsert(
        _ input: [(id: String, record: JSONValue, subject: String?)], target: UpsertTarget, policy: ConflictPolicy, counts c: inout Counts,
        ids: IdentifierGenerator, audit: any AuditTrail, in db: Transaction, at now: Date
    ) async throws -> [String] {
        let store = SyncStore(db)
        var rows = input
        var existing = try await store.records(integrationID: target.integrationID, entity: target.entity, ids: rows.map(\.id))
        // Records of people: erased subjects are suppressed; the rest are compared in plaintext and written sealed.
        var lookups: [String: String] = [:]
        var keys: [String: SymmetricKey] = [:]
        if let sealing = target.sealing {
            for row in rows { if let subject = row.subject { lookups[row.id] = try await sealing.lookup(organizationID: target.organizationID, subjectID: subject, in: db) } }
            let erased = try await SubjectKeyStore(db).erased(organizationID: target.organizationID, lookups: Array(Set(lookups.values)))
            let before = rows.count
            rows = rows.filter { row in lookups[row.id].map { !erased.contains($0) } ?? false }
            c.suppressed += before - rows.count
            let stored = Set(existing.values.flatMap { [SubjectSealing.subject(of: $0.data), SubjectSealing.subject(of: $0.sourceData)].compactMap { $0 } })
            // Keys are created for the subjects being written, never for one only a stored record names (an
            // erased subject's stays gone).
            let writing = Set(rows.compactMap { lookups[$0.id] })
            keys = try await sealing.keys(organizationID: target.organizationID, lookups: writing, create: true, in: db, at: now)
            keys.merge(try await sealing.keys(organizationID: target.organizationID, lookups: stored.subtracting(writing), create: false, in: db, at: now)) { $1 }
            for (id, record) in existing {
                let aad = SubjectSealing.aad(organizationID: target.organizationID, integrationID: target.integrationID, entity: target.entity, recordID: id)
                existing[id]?.data = SubjectSealing.open(record.data, keys: keys, aad: aad)
                existing[id]?.sourceData = record.sourceData.map { SubjectSealing.open($0, keys: keys, aad: aad) }
            }
        }
        func stored(_ value: JSONValue, _ id: String) throws -> JSONValue {
            guard target.sealing != nil, let lookup = lookups[id], let key = keys[lookup] else { return value }
            return try SubjectSealing.seal(
                value, lookup: lookup, key: key,
                aad: SubjectSealing.aad(organizationID: target.organizationID, integrationID: target.integrationID, entity: target.entity, recordID: id)
            )
        }
        var writes: [(recordID: String, data: JSONValue, sourceData: JSONValue, keepLocal: Bool)] = []
        var unchanged: [String] = []
        for row in rows {
            let sealedRecord = try stored(row.record, row.id)
            guard let current = existing[row.id], current.deletedAt == nil else {
                c.created += 1
                writes.append((row.id, sealedRecord, sealedRecord, false))
                continue
            }
            if current.sourceData == row.record {
                c.unchanged += 1
                unchanged.append(row.id)
                continue
            }
            guard current.localModifiedAt != nil, current.data != row.record else {
                c.updated += 1
                writes.append((row.id, sealedRecord, sealedRecord, false))
                continue
            }
            // Changed at the source and locally since the last sync: a conflict.
            let outcome = ConflictResolver.resolve(source: row.record, destination: current.data, base: current.sourceData, policy: policy)
            c.conflicts += 1
            writes.append((row.id, try stored(outcome.value, row.id), sealedRecord, outcome.needsReview))
            if outcome.needsReview {
                try await store.insertConflict(SyncConflictRecord(
                    id: ids.next(), organizationID: target.organizationID, integrationID: target.integrationID, entity: target.entity, recordID: row.id,
                    jobID: target.jobID, source: sealedRecord, destination: try stored(current.data, row.id),
                    base: try current.sourceData.map { try stored($0, row.id) }, flagged: outcome.flagged, createdAt: now
                ))
            }
            var data: [String: JSONValue] = [
                "entity": .string(target.entity), "recordIdDigest": .string(Hex.encode(SHA256.hash(data: Array(row.id.utf8)))),
                "strategy": .string(policy.strategy.rawValue), "review": outcome.needsReview ? 1 : 0, "fields": .array(outcome.flagged.map(JSONValue.string)),
            ]
            if let job = target.jobID { data["jobId"] = .string(job.uuidString.lowercased()) }
            if let event = target.sourceEventID { data["webhookEventId"] = .string(event) }
            try await audit.record(AuditEvent(
                organizationID: target.organizationID, type: .syncConflict, actor: AuditEvent.system("sync"), integrationID: target.integrationID,
                data: .object(data), time: now
            ), in: db)
        }
        try await store.upsertSynced(
            organizationID: target.organizationID, integrationID: target.integrationID, entity: target.entity, jobID: target.jobID,
            source: target.source, sourceEventID: target.sourceEventID, writes, at: now
        )
        return unchanged
    }

    /// Whether `mark` is later than `current` (instants when both are timestamps, else numbers, else text).
    static func later(_ mark: String, than current: String?) -> Bool {
        guard let current else { return true }
        if let a = Timestamp.parse(mark), let b = Timestamp.parse(current) { return a > b }
        if let a = Double(mark), let b = Double(current) { return a > b }
        return mark > current
    }

    /// After the last page: a full sync soft-deletes what it did not see; an incremental one saves its
    /// high-water mark; the job completes with `sync.completed`, all in one transaction.
    private func complete(_ job: SyncJobRecord, entity: SyncEntity, counts: inout Counts, processed: Int, checkpoint: Checkpoint) async throws {
        let now = clock.now()
        let owner = owner
        let result = try await database.write { db -> Counts? in
            var c = counts
            let store = SyncStore(db)
            if job.syncType == .full {
                c.deleted = try await store.deleteUnseen(integrationID: job.integrationID, entity: job.entity, jobID: job.id, at: now)
            }
            let mark = checkpoint.highWater ?? job.sinceMark
            if mark != nil { try await store.setHighWater(integrationID: job.integrationID, entity: job.entity, mark: mark, at: now) }
            // Deletions and the high-water mark roll back with a lost lease: the new owner finishes the job.
            guard try await store.finishJob(jobID: job.id, owner: owner, status: .completed, error: nil, processed: processed, total: processed, counts: c.json, at: now) else {
                throw LeaseLost()
            }
            try await IntegrationStore(db).markSynced(id: job.integrationID, organizationID: job.organizationID, at: now)
            var data: [String: JSONValue] = [
                "jobId": .string(job.id.uuidString.lowercased()), "entity": .string(job.entity), "syncType": .string(job.syncType.rawValue),
                "counts": c.json, "recordIdDigest": .string(checkpoint.digest.hex), "recordIdDigestAlgorithm": "sum of SHA-256(record id) mod 2^256",
            ]
            if let mark { data["highWater"] = .string(mark) }
            try await audit.record(AuditEvent(
                organizationID: job.organizationID, type: .syncCompleted, actor: AuditEvent.system("sync"), integrationID: job.integrationID,
                data: .object(data), time: now
            ), in: db)
            return c
        }
        audit.wake()
        if let result {
            observe(job, from: counts, to: result)
            counts = result
        }
    }

    /// Ends a job as cancelled (or another final status) with its counts so far.
    private func end(_ job: SyncJobRecord, status: SyncJobStatus, counts: Counts, processed: Int, message: String?, checkpoint: Checkpoint) async {
        let now = clock.now()
        do {
            try await database.write { db in
                guard try await SyncStore(db).finishJob(
                    jobID: job.id, owner: self.owner, status: status, error: message, processed: processed, total: nil, counts: counts.json, at: now
                ) else { return }
                try await self.audit.record(AuditEvent(
                    organizationID: job.organizationID, type: .syncFailed, actor: AuditEvent.system("sync"), integrationID: job.integrationID,
                    data: [
                        "jobId": .string(job.id.uuidString.lowercased()), "entity": .string(job.entity), "syncType": .string(job.syncType.rawValue), "status": .string(status.rawValue),
                        "error": .string(String((message ?? status.rawValue).prefix(300))), "counts": counts.json, "recordIdDigest": .string(checkpoint.digest.hex),
                    ],
                    time: now
                ), in: db)
            }
            audit.wake()
        } catch {
            logger.error("recording the end of a sync job failed", metadata: ["portal.job": "\(job.id)", "portal.error": "\(error)"])
        }
    }

    /// Ends a job as failed with `sync.failed`.
    func fail(_ job: SyncJobRecord, counts: Counts, processed: Int, message: String) async {
        logger.warning("sync job failed", metadata: ["portal.job": "\(job.id)", "portal.reason": "\(message.prefix(200))"])
        await end(job, status: .failed, counts: counts, processed: processed, message: message, checkpoint: Checkpoint(job.checkpoint))
    }
}

extension SyncEngine {
    /// Tells monitoring what a committed step of `job` added to its counts.
    func observe(_ job: SyncJobRecord, from before: Counts, to after: Counts) {
        let delta: [Activity.SyncOperation: Int] = [
            .fetched: after.fetched - before.fetched, .created: after.created - before.created, .updated: after.updated - before.updated,
            .unchanged: after.unchanged - before.unchanged, .deleted: after.deleted - before.deleted, .conflicts: after.conflicts - before.conflicts,
            .rejected: after.rejected - before.rejected,
        ]
        guard delta.values.contains(where: { $0 > 0 }) else { return }
        observer.observe(.syncRecords(organizationID: job.organizationID, integrationID: job.integrationID, counts: delta))
    }
}
