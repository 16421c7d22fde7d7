import Foundation
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Testing
@testable import Monitoring

/// Rollups: what a restart reads back (at most the minute in progress is lost), several instances merged,
/// windows beyond an hour from hourly rows, and pruning.
@Suite struct RollupTests {
    static func call(_ org: UUID, _ integration: UUID, outcome: String = "success", micros: Int64 = 100_000, at: Date) -> Activity {
        .call(.init(
            organizationID: org, integrationID: integration, endpoint: "/users", outcome: outcome, category: outcome == "success" ? nil : "network",
            durationMicros: micros, at: at
        ))
    }

    static func organization(in db: Database) async throws -> UUID {
        let id = UUID()
        try await db.write { tx in try await OrganizationStore(tx).insert(Organization(id: id, slug: "o-\(id.uuidString.prefix(8).lowercased())", name: "O", createdAt: Date())) }
        return id
    }

    @Test("a restart loses at most the minute in progress; instances merge", arguments: Backend.available)
    func restartAndInstances(backend: Backend) async throws {
        try await TestDatabase.with(backend) { _, db in
            let org = try await Self.organization(in: db)
            let integration = UUID()
            let clock = ManualWallClock(Date(timeIntervalSince1970: 1_800_000_000))
            let first = IntegrationMonitor(collector: MetricsCollector(clock: clock, instanceID: "a"), database: db, clock: clock, logger: quietLogger)
            for i in 0..<40 { first.collector.observe(Self.call(org, integration, outcome: i % 4 == 0 ? "server_error" : "success", micros: Int64(1000 * (i + 1)), at: clock.now())) }
            clock.advance(by: 60)
            first.collector.observe(Self.call(org, integration, at: clock.now()))
            // The flusher runs at the minute boundary: the completed minute is stored, the current one not.
            try await first.flush()
            let before = try #require(try await first.stats(organizationID: org, window: .fiveMinutes)[integration])
            #expect(before[.success] == 31 && before[.serverError] == 10)

            // "Restart": a new instance with an empty collector reads back every completed minute.
            let second = IntegrationMonitor(collector: MetricsCollector(clock: clock, instanceID: "b"), database: db, clock: clock, logger: quietLogger)
            let after = try #require(try await second.stats(organizationID: org, window: .fiveMinutes)[integration])
            #expect(after[.success] == 30 && after[.serverError] == 10, "only the minute in progress (one call) is lost")
            #expect(after.latency.count == 40 && after.latency.quantile(0.5)! > 15_000, "the sketch comes back with its minute")
            // Both instances' calls merge: the second instance adds its own.
            for _ in 0..<5 { second.collector.observe(Self.call(org, integration, at: clock.now())) }
            clock.advance(by: 60)
            try await second.flush()
            try await first.flush()
            let merged = try #require(try await second.stats(organizationID: org, window: .oneHour)[integration])
            #expect(merged[.success] == 36 && merged[.serverError] == 10)
            // Longer windows read the hourly rows (the current hour from minute rows): the same totals.
            let day = try #require(try await second.stats(organizationID: org, window: .oneDay)[integration])
            #expect(day[.success] == 36 && day.latency.count == 46)
            // Two hours later, the 5-minute window is empty and the day still counts them.
            clock.advance(by: 2 * 3600)
            #expect(try await second.stats(organizationID: org, window: .fiveMinutes)[integration] == nil)
            #expect(try await second.stats(organizationID: org, window: .oneDay)[integration]?[.success] == 36)
            // Pruning keeps hours for 36 days and minutes for 3 hours.
            clock.advance(by: 2 * 3600)
            try await second.prune()
            let rows = try await db.read { tx in try await MetricRollupStore(tx).rows(organizationID: org, resolution: 60, from: 0, to: .max) }
            #expect(rows.isEmpty)
            #expect(try await second.stats(organizationID: org, window: .sevenDays)[integration]?[.success] == 36)
        }
    }

    @Test("the footprint of 1,000 busy integrations stays under 200 MB")
    func footprint() {
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_800_000_000))
        let collector = MetricsCollector(clock: clock)
        let org = UUID()
        let integrations = (0..<1000).map { _ in UUID() }
        // Every minute of an hour busy, with latencies spread over four orders of magnitude.
        for minute in 0..<60 {
            for (i, id) in integrations.enumerated() {
                for k in 0..<3 { collector.observe(Self.call(org, id, micros: Int64(100 * (1 + (i * 7 + k * 131 + minute * 17) % 10_000)), at: clock.now())) }
            }
            clock.advance(by: 60)
        }
        let (count, bytes) = collector.footprint()
        #expect(count == 1000)
        #expect(bytes < 200 << 20, "\(bytes) bytes")
    }
}
