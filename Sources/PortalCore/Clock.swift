package import Foundation
import Synchronization

/// The wall clock, injected wherever time decides behaviour (expiry, timestamps) so tests never sleep.
package protocol WallClock: Sendable {
    /// The current time, truncated to whole microseconds (the precision every store keeps).
    func now() -> Date
}

extension Date {
    /// This date truncated to whole microseconds since 1970.
    package var truncatedToMicroseconds: Date {
        Date(timeIntervalSince1970: (timeIntervalSince1970 * 1_000_000).rounded(.down) / 1_000_000)
    }
}

/// The system's real time.
package struct SystemWallClock: WallClock {
    package init() {}
    package func now() -> Date { Date().truncatedToMicroseconds }
}

/// A clock that only moves when told to; for tests.
package final class ManualWallClock: WallClock {
    private let current: Mutex<Date>

    package init(_ start: Date = Date(timeIntervalSince1970: 1_795_000_000)) {
        current = Mutex(start.truncatedToMicroseconds)
    }

    package func now() -> Date { current.withLock { $0 } }

    /// Moves the clock forward by `seconds`.
    package func advance(by seconds: TimeInterval) {
        current.withLock { $0 = ($0 + seconds).truncatedToMicroseconds }
    }
}
