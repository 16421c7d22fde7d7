import Foundation
package import Logging
package import PortalCore
import ServiceLifecycle

/// A loop that one instance at a time runs (a `service_leases` lease held for one and a half intervals and
/// renewed on every turn), until graceful shutdown; a failed turn is logged and retried next interval.
package struct LeasedLoop: Sendable {
    let name: String
    let owner: String
    let database: Database
    let clock: any WallClock
    let logger: Logger

    package init(name: String, owner: String, database: Database, clock: any WallClock, logger: Logger) {
        self.name = name
        self.owner = owner
        self.database = database
        self.clock = clock
        self.logger = logger
    }

    package func run(every interval: Duration, first: Duration, _ body: @Sendable () async throws -> Void) async {
        var wait = first
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let pause = wait
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
            } catch {
                return
            }
            wait = interval
            do {
                let now = clock.now()
                let seconds = Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18
                let held = try await database.write { db in
                    try await ServiceLeaseStore(db).claim(name, owner: owner, until: now.addingTimeInterval(seconds * 1.5), now: now)
                }
                if held { try await body() }
            } catch {
                logger.warning("a periodic task failed; it runs again next interval", metadata: ["portal.task": "\(name)", "portal.error": "\(error)"])
            }
        }
    }
}
