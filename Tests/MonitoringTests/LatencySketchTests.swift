import Foundation
import Testing
@testable import Monitoring
import PortalCore

/// The sketch's promise: p50, p95 and p99 within 1% of the exact value at the same (nearest) rank, for one
/// sketch and for sketches merged from slots; bounded memory; exact merging; a stable stored form.
@Suite struct LatencySketchTests {
    /// The exact nearest-rank quantile of sorted values.
    static func exact(_ sorted: [Double], _ q: Double) -> Double {
        sorted[max(1, Int((q * Double(sorted.count)).rounded(.up))) - 1]
    }

    /// A deterministic generator (so a failure reproduces).
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// 100,000 latencies from a log-normal around 80 ms with a slow tail, in microseconds.
    static func latencies(seed: UInt64, count: Int = 100_000) -> [Double] {
        var rng = SplitMix(state: seed)
        return (0..<count).map { _ in
            let u1 = Double.random(in: Double.ulpOfOne..<1, using: &rng)
            let u2 = Double.random(in: 0..<1, using: &rng)
            let normal = (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
            let tail = Double.random(in: 0..<1, using: &rng) < 0.03 ? 20.0 : 1.0
            return (80_000 * exp(0.6 * normal) * tail).rounded()
        }
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func quantilesWithinOnePercentOfExact(seed: UInt64) {
        let values = Self.latencies(seed: seed)
        var sketch = LatencySketch()
        for v in values { sketch.add(micros: v) }
        let sorted = values.sorted()
        #expect(sketch.count == UInt64(values.count))
        for q in [0.5, 0.95, 0.99] {
            let exact = Self.exact(sorted, q)
            let estimate = sketch.quantile(q)!
            #expect(abs(estimate - exact) / exact <= 0.01, "q=\(q): \(estimate) vs exact \(exact)")
        }
    }

    @Test func mergedSlotsKeepTheAccuracy() {
        let values = Self.latencies(seed: 42)
        // 60 "minute slots", merged like a window is.
        var slots = [LatencySketch](repeating: LatencySketch(), count: 60)
        for (i, v) in values.enumerated() { slots[i % 60].add(micros: v) }
        var merged = LatencySketch()
        for slot in slots { merged.merge(slot) }
        var whole = LatencySketch()
        for v in values { whole.add(micros: v) }
        #expect(merged == whole, "merging slots gives the sketch of the union")
        let sorted = values.sorted()
        for q in [0.5, 0.95, 0.99] {
            let exact = Self.exact(sorted, q)
            #expect(abs(merged.quantile(q)! - exact) / exact <= 0.01)
        }
    }

    @Test func memoryIsBoundedAndUpperQuantilesSurviveCollapsing() {
        var sketch = LatencySketch()
        // Eight orders of magnitude (1 µs to 100 s): more than 512 buckets span. The lowest are folded
        // together; p95 and p99 stay within 1%, and low quantiles can only read high, never low.
        var values: [Double] = []
        for exponent in 0...7 { for k in 1...100 { values.append(pow(10, Double(exponent)) * Double(k) / 10 + 1) } }
        for v in values.shuffled() { sketch.add(micros: v) }
        #expect(sketch.bucketBytes <= (LatencySketch.maxBuckets + 16) * 4)
        let sorted = values.sorted()
        for q in [0.95, 0.99] {
            let exact = Self.exact(sorted, q)
            #expect(abs(sketch.quantile(q)! - exact) / exact <= 0.01, "q=\(q)")
        }
        #expect(sketch.quantile(0.01)! >= Self.exact(sorted, 0.01))
        #expect(sketch.count == UInt64(values.count), "folding loses no observation")
    }

    @Test func emptyAndStoredForms() {
        #expect(LatencySketch().quantile(0.95) == nil)
        var stats = ActivityStats()
        stats.record(Activity.Call(
            organizationID: UUID(), integrationID: UUID(), endpoint: "/x", outcome: "server_error", category: "network", durationMicros: 1234, at: Date()
        ))
        stats.record(webhook: .deadLettered)
        stats.record(sync: [.fetched: 7])
        stats.record(tokenRefresh: false)
        let decoded = ActivityStats.decode(stats.encoded())
        #expect(decoded == stats)
        #expect(ActivityStats.decode("not base64") == nil)
        #expect(ActivityStats.decode(Data([1, 200]).base64EncodedString()) == nil, "a truncated form is refused, not misread")
    }
}
