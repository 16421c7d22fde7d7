/// Comparisons whose time does not depend on where the inputs differ, for tokens and signatures.
package enum ConstantTime {
    /// Whether `a` and `b` are equal, in time that depends only on their lengths.
    package static func equals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        // Contiguous inputs (arrays, strings' UTF-8) compare through buffers: the generic zip was a
        // visible cost on every authenticated request.
        if let result = a.withContiguousStorageIfAvailable({ x in b.withContiguousStorageIfAvailable { y in xorAll(x, y) } }), let result {
            return result == 0
        }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }

    private static func xorAll(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> UInt8 {
        var difference: UInt8 = 0
        for i in 0..<x.count { difference |= x[i] ^ y[i] }
        return difference
    }
}
