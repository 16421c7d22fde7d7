import Foundation
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Synchronization
import Testing

/// Set once, read by the tasks it stops.
private final class StopFlag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}

/// Every store against every available backend: the same assertions on SQLite and PostgreSQL.
@Suite("Storage conformance")
struct StorageConformanceTests {
    let ids = IdentifierGenerator()
    let now = Date(timeIntervalSince1970: 1_795_000_000.25)

    func organization(_ slug: String) -> Organization {
        Organization(id: ids.next(), slug: slug, name: slug.uppercased(), createdAt: now)
    }

    func integration(_ org: UUID, name: String, config: JSONValue = [:]) -> IntegrationRecord {
        IntegrationRecord(
            id: ids.next(), organizationID: org, name: name, type: .enterprise, baseURL: "https://api.example.com",
            authMethod: .apiKey, credentials: ["v": 1, "ct": "c2VhbGVk"], config: config, rateLimits: nil,
            webhookConfig: nil, syncConfig: nil, status: .active, createdBy: nil, createdAt: now, updatedAt: now
        )
    }

    @Test("migrations apply once and report the schema version", arguments: Backend.available)
    func migrations(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let migrator = Migrator(database: db, logger: quietLogger)
            #expect(try await migrator.migrate().isEmpty)
            #expect(try await migrator.currentVersion() == Migrator.latestVersion)
        }
    }

    @Test("migrations from two callers at once apply each version once", arguments: Backend.available)
    func concurrentMigrations(backend: Backend) async throws {
        let test = try await TestDatabase.create(backend)
        let applied = try await Database.withDatabase(url: test.url, logger: quietLogger) { db in
            try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<3 { group.addTask { try await Migrator(database: db, logger: quietLogger).migrate() } }
                var all: [Int] = []
                for try await versions in group { all += versions }
                return all
            }
        }
        await test.drop()
        #expect(applied.sorted() == Array(1...Migrator.latestVersion))
    }

    @Test("organizations: unique, immutable slugs", arguments: Backend.available)
    func organizations(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let acme = organization("acme")
            try await db.write { try await OrganizationStore($0).insert(acme) }
            #expect(try await db.read { try await OrganizationStore($0).find(slug: "acme") } == acme)
            #expect(try await db.read { try await OrganizationStore($0).find(id: acme.id) } == acme)
            await #expect(throws: PortalError.self) {
                try await db.write { try await OrganizationStore($0).insert(organization("acme")) }
            }
            await #expect(throws: PortalError.self) {
                try await db.write { try await $0.raw("UPDATE organizations SET slug = 'other' WHERE id = \(bind: acme.id)").run() }
            }
            try await db.write { try await $0.raw("UPDATE organizations SET name = 'Renamed' WHERE id = \(bind: acme.id)").run() }
            #expect(try await db.read { try await OrganizationStore($0).find(slug: "acme") }?.name == "Renamed")
            let (again, created) = try await db.write {
                try await OrganizationStore($0).findOrCreate(slug: "acme", name: "x", id: ids.next(), at: now)
            }
            #expect(!created && again.id == acme.id)
        }
    }

    @Test("a throwing write transaction leaves nothing behind", arguments: Backend.available)
    func rollback(backend: Backend) async throws {
        struct Abort: Error {}
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            await #expect(throws: Abort.self) {
                try await db.write { tx in
                    try await OrganizationStore(tx).insert(organization("ghost"))
                    throw Abort()
                }
            }
            #expect(try await db.read { try await OrganizationStore($0).find(slug: "ghost") } == nil)
            // The connection is healthy afterwards.
            try await db.write { try await OrganizationStore($0).insert(organization("after")) }
            #expect(try await db.read { try await OrganizationStore($0).list() }.map(\.slug) == ["after"])
        }
    }

    @Test("concurrent write transactions all commit, none interleave", arguments: Backend.available)
    func concurrentWrites(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        try await db.write { tx in
                            try await OrganizationStore(tx).insert(organization("org-\(i)"))
                            try await OrganizationStore(tx).insert(organization("org-\(i)-b"))
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await db.read { try await OrganizationStore($0).list() }.count == 80)
        }
    }

    @Test("api tokens: lookup by hash, scoped lists, pagination, revocation", arguments: Backend.available)
    func tokens(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let a = organization("a"), b = organization("b")
            try await db.write { tx in
                try await OrganizationStore(tx).insert(a)
                try await OrganizationStore(tx).insert(b)
            }
            var records: [APITokenRecord] = []
            for i in 0..<5 {
                let record = APITokenRecord(
                    id: ids.next(), organizationID: i < 4 ? a.id : b.id, tokenHash: "hash-\(i)", role: .operator,
                    owner: "owner \(i)", createdAt: now, expiresAt: i == 0 ? now + 60 : nil
                )
                try await db.write { try await APITokenStore($0).insert(record) }
                records.append(record)
            }
            #expect(try await db.read { try await APITokenStore($0).find(hash: "hash-0") } == records[0])
            #expect(try await db.read { try await APITokenStore($0).find(hash: "nope") } == nil)
            let first = try await db.read { try await APITokenStore($0).list(organizationID: a.id, limit: 3, before: nil) }
            #expect(first.map(\.id) == [records[3].id, records[2].id, records[1].id])
            let second = try await db.read { try await APITokenStore($0).list(organizationID: a.id, limit: 3, before: first.last!.id) }
            #expect(second.map(\.id) == [records[0].id])
            #expect(try await db.read { try await APITokenStore($0).find(id: records[4].id, organizationID: a.id) } == nil)
            #expect(try await db.write { try await APITokenStore($0).revoke(id: records[4].id, organizationID: a.id, at: now) } == false)
            #expect(try await db.write { try await APITokenStore($0).revoke(id: records[1].id, organizationID: a.id, at: now) })
            #expect(try await db.write { try await APITokenStore($0).revoke(id: records[1].id, organizationID: a.id, at: now) } == false)
            try await db.write { try await APITokenStore($0).touch(id: records[2].id, at: now + 5) }
            let reread = try await db.read { try await APITokenStore($0).find(id: records[2].id) }
            #expect(reread?.lastUsedAt == now + 5)
            #expect(try await db.read { try await APITokenStore($0).find(id: records[1].id) }?.revokedAt == now)
        }
    }

    @Test("integrations: JSON columns round-trip, scoping, live-name uniqueness, soft delete", arguments: Backend.available)
    func integrations(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let a = organization("a"), b = organization("b")
            try await db.write { tx in
                try await OrganizationStore(tx).insert(a)
                try await OrganizationStore(tx).insert(b)
            }
            let config: JSONValue = ["nested": ["list": [1, .double(2.5), "ü/€", nil, true]], "empty": [:]]
            var crm = integration(a.id, name: "CRM", config: config)
            crm.rateLimits = ["requestsPerSecond": 5, "endpoints": ["/users": ["burst": 2]]]
            try await db.write { try await IntegrationStore($0).insert(crm) }
            let stored = try await db.read { try await IntegrationStore($0).find(id: crm.id, organizationID: a.id) }
            #expect(stored?.config == crm.config)
            #expect(stored?.rateLimits == crm.rateLimits)
            #expect(stored?.credentials == crm.credentials)
            #expect(stored?.createdAt == crm.createdAt)
            #expect(stored == crm)
            #expect(try await db.read { try await IntegrationStore($0).find(id: crm.id, organizationID: b.id) } == nil)

            await #expect(throws: PortalError.self) {
                try await db.write { try await IntegrationStore($0).insert(integration(a.id, name: "CRM")) }
            }
            try await db.write { try await IntegrationStore($0).insert(integration(b.id, name: "CRM")) }

            var deleted = crm
            deleted.deletedAt = now + 1
            deleted.status = .inactive
            #expect(try await db.write { try await IntegrationStore($0).update(deleted) })
            var wrongOrg = deleted
            wrongOrg.organizationID = b.id
            #expect(try await db.write { try await IntegrationStore($0).update(wrongOrg) } == false)
            let replacement = integration(a.id, name: "CRM")
            try await db.write { try await IntegrationStore($0).insert(replacement) }

            let live = try await db.read { try await IntegrationStore($0).list(organizationID: a.id, limit: 10, before: nil, includeDeleted: false) }
            #expect(live.map(\.id) == [replacement.id])
            let all = try await db.read { try await IntegrationStore($0).list(organizationID: a.id, limit: 10, before: nil, includeDeleted: true) }
            #expect(all.map(\.id) == [replacement.id, crm.id])
            #expect(all.last?.deletedAt == now + 1)
        }
    }

    @Test("request statistics aggregate integration_requests per integration", arguments: Backend.available)
    func requestStats(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let a = organization("a")
            let crm = integration(a.id, name: "CRM")
            try await db.write { tx in
                try await OrganizationStore(tx).insert(a)
                try await IntegrationStore(tx).insert(crm)
                for (i, status) in [200, 201, 500, 429].enumerated() {
                    try await tx.raw("""
                        INSERT INTO integration_requests (id, organization_id, integration_id, method, endpoint, response_status, duration_ms, error_message, created_at)
                        VALUES (\(bind: ids.next()), \(bind: a.id), \(bind: crm.id), 'GET', '/users/{id}', \(bind: status), \(bind: (i + 1) * 10),
                                \(bind: status >= 400 ? "upstream \(status)" : nil), \(bind: now + Double(i)))
                        """).run()
                }
            }
            let stats = try await db.read { try await IntegrationStore($0).requestStats(organizationID: a.id, ids: [crm.id]) }
            let s = try #require(stats[crm.id])
            #expect(s.totalRequests == 4)
            #expect(s.successfulRequests == 2)
            #expect(s.averageDurationMs == 25)
            #expect(s.lastErrorMessage == "upstream 429")
            #expect(s.lastErrorAt == now + 3)
            #expect(s.lastErrorEndpoint == "/users/{id}")
        }
    }

    @Test("data keys keep one wrap per master key", arguments: Backend.available)
    func dataKeys(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let a = organization("a")
            let key = DataKeyRecord(id: ids.next(), organizationID: a.id, createdAt: now, wraps: ["m1": "w1"])
            try await db.write { tx in
                try await OrganizationStore(tx).insert(a)
                try await DataKeyStore(tx).insert(key)
                try await DataKeyStore(tx).addWrap(dataKeyID: key.id, masterKeyID: "m2", wrapped: "w2", at: now)
                try await DataKeyStore(tx).addWrap(dataKeyID: key.id, masterKeyID: "m2", wrapped: "w2b", at: now)
            }
            #expect(try await db.read { try await DataKeyStore($0).newest(organizationID: a.id) }?.wraps == ["m1": "w1", "m2": "w2b"])
            #expect(try await db.write { try await DataKeyStore($0).deleteWraps(masterKeyID: "m1") } == 1)
            #expect(try await db.read { try await DataKeyStore($0).find(id: key.id) }?.wraps == ["m2": "w2b"])
            #expect(try await db.read { try await DataKeyStore($0).allIDs() } == [key.id])
        }
    }

    @Test("database URLs parse for both backends")
    func urls() throws {
        #expect(try DatabaseLocation(url: "sqlite:///tmp/x.sqlite") == .sqlite(path: "/tmp/x.sqlite"))
        #expect(try DatabaseLocation(url: "sqlite://var/portal.sqlite") == .sqlite(path: "var/portal.sqlite"))
        guard case .postgres(let pg) = try DatabaseLocation(url: "postgres://u:p%40ss@db.example:6543/portal?sslmode=require") else {
            Issue.record("not parsed as PostgreSQL")
            return
        }
        #expect(pg.host == "db.example" && pg.port == 6543 && pg.username == "u" && pg.password == "p@ss")
        #expect(pg.database == "portal" && pg.sslMode == "require")
        #expect(throws: PortalError.self) { try DatabaseLocation(url: "mysql://x") }
        #expect(throws: PortalError.self) { try DatabaseLocation(url: "postgres://h/db?sslmode=bogus") }
    }
}

@Suite("Several processes on one database")
struct MultiInstanceStorageTests {
    @Test("two database instances (as two processes would) write concurrently without losing writes", arguments: Backend.available)
    func twoInstances(backend: Backend) async throws {
        let test = try await TestDatabase.create(backend)
        let ids = IdentifierGenerator()
        _ = try await Database.withDatabase(url: test.url, logger: quietLogger) { db in
            try await Migrator(database: db, logger: quietLogger).migrate()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for instance in 0..<2 {
                group.addTask {
                    try await Database.withDatabase(url: test.url, logger: quietLogger) { db in
                        for i in 0..<50 {
                            try await db.write { tx in
                                try await OrganizationStore(tx).insert(Organization(id: ids.next(), slug: "i\(instance)-\(i)", name: "x", createdAt: Date()))
                            }
                            _ = try await db.read { try await OrganizationStore($0).list() }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let count = try await Database.withDatabase(url: test.url, logger: quietLogger) { db in
            try await db.read { try await OrganizationStore($0).list() }.count
        }
        await test.drop()
        #expect(count == 100)
    }
    @Test("a pool survives the server closing every connection while operations run", .enabled(if: Backend.available.contains(.postgres)), .timeLimit(.minutes(5)))
    func connectionsClosedUnderLoad() async throws {
        // A restart of the server (`pg_ctl restart -m immediate`) closes every connection at once. With a
        // minimum of kept connections, PostgresNIO 1.33 trapped on the next lease (the soak's two instances
        // both died); operations must instead fail with an error and then succeed on new connections.
        let test = try await TestDatabase.create(.postgres)
        let name = String(test.url.split(separator: "/").last?.split(separator: "?").first ?? "")
        let failures = try await Database.withDatabase(url: test.url, logger: quietLogger) { db in
            // The killer works from the maintenance database: a database cannot refuse its own connections.
            let maintenance = test.url.replacingOccurrences(of: "/" + name, with: "/postgres")
            return try await Database.withDatabase(url: maintenance, logger: quietLogger) { killer in
                let stop = StopFlag()
                return try await withThrowingTaskGroup(of: [String].self) { group in
                    for _ in 0..<8 {
                        group.addTask {
                            var errors: [String] = []
                            while !stop.isSet {
                                do {
                                    _ = try await db.read { try await $0.raw("SELECT pg_sleep(0.001) AS slept").first() }
                                } catch let error as PortalError {
                                    errors.append("\(error.code)")
                                }
                            }
                            return errors
                        }
                    }
                    group.addTask {
                        defer { stop.set() }
                        for _ in 0..<5 {
                            // Wait until the pool has connections again, then close every one of them.
                            _ = try await eventually {
                                try await Self.connections(to: name, killer) > 0
                            }
                            // As in a restart: the server refuses new connections for a moment, so the pool backs off.
                            try await killer.write { sql in
                                _ = try await sql.raw("ALTER DATABASE \(unsafeRaw: "\"" + name + "\"") WITH ALLOW_CONNECTIONS false").run()
                                _ = try await sql.raw("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(bind: name)").all()
                            }
                            try await Task.sleep(for: .milliseconds(300))
                            try await killer.write { sql in
                                _ = try await sql.raw("ALTER DATABASE \(unsafeRaw: "\"" + name + "\"") WITH ALLOW_CONNECTIONS true").run()
                            }
                        }
                        return []
                    }
                    var all: [String] = []
                    for try await errors in group { all += errors }
                    // After the last closing, new operations succeed.
                    #expect(try await eventually { (try? await db.read { try await $0.raw("SELECT 1 AS one").first() }) != nil })
                    return all
                }
            }
        }
        await test.drop()
        #expect(Set(failures).isSubset(of: ["unavailable", "storage"]), "unexpected failures: \(Set(failures))")
    }

    private static func connections(to name: String, _ db: Database) async throws -> Int {
        try await db.read { sql in
            try await sql.raw("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = \(bind: name)").first()?.decode(column: "n", as: Int.self) ?? 0
        }
    }

    @Test("TimerSleep runs out after its duration, and ends at once when cancelled", .timeLimit(.minutes(1)))
    func timerSleep() async throws {
        let start = ContinuousClock.now
        try await TimerSleep.sleep(for: .milliseconds(50))
        #expect(ContinuousClock.now - start >= .milliseconds(50))
        let outcome = await withTaskGroup(of: String.self) { group in
            group.addTask {
                do {
                    try await TimerSleep.sleep(for: .seconds(3600))
                    return "ran out"
                } catch is CancellationError {
                    return "cancelled"
                } catch {
                    return "\(error)"
                }
            }
            group.cancelAll()
            return await group.next() ?? "none"
        }
        #expect(outcome == "cancelled")
    }

    @Test("a time written reads back to the same microsecond", arguments: Backend.available)
    func timesRoundTrip(backend: Backend) async throws {
        // PostgresNIO's own Date encoding truncated a product of doubles: about one whole-microsecond time in
        // four came back a microsecond early. 400 times a little over 137 µs apart, starting at an odd
        // microsecond, cover both sides of that error.
        let start = Date(timeIntervalSince1970: 1_796_000_000.123457)
        let times = (0..<400).map { (start + Double($0) * 0.000_137).truncatedToMicroseconds }
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            var wrong: [String] = []
            try await db.read { sql in
                for time in times {
                    let back = try await sql.raw("SELECT \(bind: time) AS t").first()?.decode(column: "t", as: Date.self)
                    if back.map(Timestamp.rfc3339) != Timestamp.rfc3339(time) { wrong.append(Timestamp.rfc3339(time)) }
                }
                let optional: Date? = times[1]
                let back = try await sql.raw("SELECT \(bind: optional) AS t").first()?.decode(column: "t", as: Date.self)
                #expect(back.map(Timestamp.rfc3339) == Timestamp.rfc3339(times[1]))
            }
            #expect(wrong.count == 0, "\(wrong.count) of \(times.count) times came back different, first \(wrong.first ?? "")")
        }
    }
}
