import Foundation

/// A latency sketch in the DDSketch style: values (microseconds) fall into logarithmic buckets whose bounds
/// grow by a factor γ = (1 + α) / (1 - α), so any quantile it answers is within a relative error α of the
/// exact value at that rank. α is 0.9%, under the 1% the monitoring issue asks for, leaving room for
/// floating-point rounding at bucket edges.
///
/// Memory is bounded: the buckets are a dense run of counters from the lowest to the highest index seen,
/// at most ``maxBuckets`` long. When a wider run would be needed, the lowest buckets are folded into the
/// lowest one kept (as DDSketch's collapsing store does): the upper quantiles (p50, p95, p99) keep their
/// accuracy, and 512 buckets span a factor of about 10,000 between the fastest and slowest value kept at
/// full accuracy (1 ms to 10 s, say). Sketches merge exactly: merging the sketches of two sets is the
/// sketch of their union.
package struct LatencySketch: Sendable, Equatable {
    package static let relativeAccuracy = 0.009
    static let gamma = (1 + relativeAccuracy) / (1 - relativeAccuracy)
    static let logGamma = log(gamma)
    package static let maxBuckets = 512

    /// Index of `counts[0]`.
    private(set) var offset: Int32 = 0
    private(set) var counts: [UInt32] = []
    package private(set) var count: UInt64 = 0

    package init() {}

    package var isEmpty: Bool { count == 0 }

    /// The bucket of `micros` (values below 1 µs count as 1 µs).
    static func index(_ micros: Double) -> Int32 {
        Int32((log(max(micros, 1)) / logGamma).rounded(.up))
    }

    /// The value a bucket stands for: the point whose relative distance to both bounds is α.
    static func value(_ index: Int32) -> Double {
        2 * pow(gamma, Double(index)) / (gamma + 1)
    }

    package mutating func add(micros: Double, count n: UInt32 = 1) {
        add(index: Self.index(micros), count: n)
    }

    private mutating func add(index: Int32, count n: UInt32) {
        count += UInt64(n)
        if counts.isEmpty {
            offset = index
            counts = [n]
            return
        }
        if index < offset {
            let grow = Int(offset - index)
            if counts.count + grow > Self.maxBuckets {
                // Too wide below: this value counts in the lowest bucket that can be kept.
                let keepLow = Int32(counts.count) + offset - Int32(Self.maxBuckets)
                if keepLow <= offset {
                    counts.insert(contentsOf: repeatElement(0, count: Int(offset - keepLow)), at: 0)
                    offset = keepLow
                }
                counts[0] &+= n
                return
            }
            counts.insert(contentsOf: repeatElement(0, count: grow), at: 0)
            offset = index
        } else if Int(index - offset) >= counts.count {
            counts.append(contentsOf: repeatElement(0, count: Int(index - offset) + 1 - counts.count))
            collapseLow()
        }
        counts[Int(index - offset)] &+= n
    }

    /// Folds the lowest buckets into the lowest kept one until at most ``maxBuckets`` remain.
    private mutating func collapseLow() {
        let excess = counts.count - Self.maxBuckets
        guard excess > 0 else { return }
        let folded = counts[0...excess].reduce(0, &+)
        // A new buffer of the kept buckets only (removing in place would keep the old capacity).
        counts = Array(counts[excess...])
        counts[0] = folded
        offset += Int32(excess)
    }

    package mutating func merge(_ other: LatencySketch) {
        guard !other.counts.isEmpty else { return }
        if counts.isEmpty {
            self = other
            return
        }
        let low = min(offset, other.offset)
        let high = max(offset + Int32(counts.count), other.offset + Int32(other.counts.count))
        var merged = [UInt32](repeating: 0, count: Int(high - low))
        for (i, c) in counts.enumerated() { merged[Int(offset - low) + i] &+= c }
        for (i, c) in other.counts.enumerated() { merged[Int(other.offset - low) + i] &+= c }
        offset = low
        counts = merged
        count += other.count
        collapseLow()
    }

    /// The value at quantile `q` (0...1) by the nearest-rank definition (the ⌈q·n⌉-th smallest), in
    /// microseconds; nil when empty.
    package func quantile(_ q: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = max(1, UInt64((q * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() {
            seen += UInt64(c)
            if seen >= rank { return Self.value(offset + Int32(i)) }
        }
        return Self.value(offset + Int32(counts.count - 1))
    }

    /// How many values were at most `micros`, within the sketch's accuracy: a value in the bucket that
    /// holds `micros` counts (it is at most γ, 1.8%, above it).
    package func count(atMost micros: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let last = Int(Self.index(micros) - offset)
        guard last >= 0 else { return 0 }
        return counts.prefix(min(counts.count, last + 1)).reduce(0) { $0 + UInt64($1) }
    }

    /// Bytes held by the buckets.
    package var bucketBytes: Int { counts.capacity * MemoryLayout<UInt32>.size }

    // MARK: Encoding

    /// Compact bytes: offset (zigzag varint), bucket count, then each bucket's count (varints).
    func encode(into out: inout [UInt8]) {
        Varint.write(UInt64(bitPattern: Int64(offset) << 1 ^ Int64(offset) >> 63), into: &out)
        Varint.write(UInt64(counts.count), into: &out)
        for c in counts { Varint.write(UInt64(c), into: &out) }
    }

    static func decode(from reader: inout Varint.Reader) throws(Varint.Malformed) -> LatencySketch {
        var sketch = LatencySketch()
        let zig = try reader.next()
        let n = try reader.next()
        guard n <= UInt64(maxBuckets) else { throw Varint.Malformed() }
        sketch.offset = Int32(truncatingIfNeeded: Int64(bitPattern: zig >> 1) ^ -Int64(bitPattern: zig & 1))
        sketch.counts.reserveCapacity(Int(n))
        for _ in 0..<n {
            let c = UInt32(truncatingIfNeeded: try reader.next())
            sketch.counts.append(c)
            sketch.count += UInt64(c)
        }
        return sketch
    }
}

/// LEB128 unsigned varints.
enum Varint {
    struct Malformed: Error {}

    static func write(_ value: UInt64, into out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    struct Reader {
        let bytes: [UInt8]
        var position = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        mutating func next() throws(Malformed) -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            while position < bytes.count, shift < 64 {
                let b = bytes[position]
                position += 1
                result |= UInt64(b & 0x7f) << shift
                if b & 0x80 == 0 { return result }
                shift += 7
            }
            throw Malformed()
        }
    }
}
