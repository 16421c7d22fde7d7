package import Foundation
import Synchronization

/// Generates UUIDv7 identifiers (RFC 9562): a 48-bit Unix millisecond timestamp, then a 12-bit counter
/// and random bits.
///
/// Ordering by id is ordering by creation time, which gives newest-first cursor pagination on both
/// backends without comparing floating-point timestamps. Within one process ids are strictly increasing
/// (the counter in `rand_a` breaks ties inside one millisecond).
package final class IdentifierGenerator: Sendable {
    private struct State {
        var lastMillis: UInt64 = 0
        var counter: UInt16 = 0
    }

    private let state = Mutex(State())
    private let clock: any WallClock

    package init(clock: any WallClock = SystemWallClock()) {
        self.clock = clock
    }

    /// A shared generator on the system clock.
    package static let shared = IdentifierGenerator()

    /// A new, time-ordered identifier.
    package func next() -> UUID {
        let wall = UInt64(max(0, clock.now().timeIntervalSince1970 * 1000))
        let (millis, counter) = state.withLock { s -> (UInt64, UInt16) in
            if wall > s.lastMillis {
                s.lastMillis = wall
                s.counter = UInt16.random(in: 0..<0x0400)
            } else if s.counter < 0x0FFF {
                s.counter += 1
            } else {
                s.lastMillis += 1
                s.counter = 0
            }
            return (s.lastMillis, s.counter)
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: millis >> (40 - 8 * UInt64(i))) }
        bytes[6] = 0x70 | UInt8(truncatingIfNeeded: counter >> 8)
        bytes[7] = UInt8(truncatingIfNeeded: counter)
        var rng = SystemRandomNumberGenerator()
        for i in 8..<16 { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(uuid: (
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
            bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
        ))
    }
}
