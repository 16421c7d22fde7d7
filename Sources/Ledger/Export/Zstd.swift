import CZstd
package import PortalCore

/// Streaming Zstandard compression through libzstd (the CZstd system-library target): bounded buffers,
/// whatever the input size.
package final class ZstdCompressor {
    private let stream: OpaquePointer
    private var output = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())

    /// A compressor at `level` (3 is zstd's default; bundles favour speed over the last few percent).
    package init(level: Int32 = 3) throws(PortalError) {
        guard let stream = ZSTD_createCCtx() else { throw PortalError(.internal, "zstd: cannot create a compression context") }
        self.stream = stream
        ZSTD_CCtx_setParameter(stream, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(stream, ZSTD_c_checksumFlag, 1)
    }

    deinit { ZSTD_freeCCtx(stream) }

    /// Compresses `input`, handing each produced chunk to `sink`; `end` finishes the frame.
    package func compress(_ input: [UInt8], end: Bool = false, into sink: ([UInt8]) throws -> Void) throws {
        try input.withUnsafeBytes { raw in
            var inBuffer = ZSTD_inBuffer(src: raw.baseAddress, size: raw.count, pos: 0)
            while true {
                let (remaining, produced) = try output.withUnsafeMutableBytes { out -> (Int, Int) in
                    var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
                    let r = ZSTD_compressStream2(stream, &outBuffer, &inBuffer, end ? ZSTD_e_end : ZSTD_e_continue)
                    if ZSTD_isError(r) != 0 { throw PortalError(.internal, "zstd: \(String(cString: ZSTD_getErrorName(r)))") }
                    return (r, outBuffer.pos)
                }
                if produced > 0 { try sink(Array(output[0..<produced])) }
                let done = end ? remaining == 0 : inBuffer.pos == inBuffer.size
                if done { break }
            }
        }
    }
}

/// Streaming Zstandard decompression.
package final class ZstdDecompressor {
    private let stream: OpaquePointer
    private var output = [UInt8](repeating: 0, count: ZSTD_DStreamOutSize())
    /// Whether the last frame was completely decoded.
    package private(set) var frameComplete = false

    package init() throws(PortalError) {
        guard let stream = ZSTD_createDCtx() else { throw PortalError(.internal, "zstd: cannot create a decompression context") }
        self.stream = stream
    }

    deinit { ZSTD_freeDCtx(stream) }

    /// Decompresses `input`, handing each produced chunk to `sink`.
    package func decompress(_ input: [UInt8], into sink: ([UInt8]) throws -> Void) throws {
        try input.withUnsafeBytes { raw in
            var inBuffer = ZSTD_inBuffer(src: raw.baseAddress, size: raw.count, pos: 0)
            while inBuffer.pos < inBuffer.size {
                let (result, produced) = try output.withUnsafeMutableBytes { out -> (Int, Int) in
                    var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
                    let r = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
                    if ZSTD_isError(r) != 0 {
                        throw PortalError(.validationFailed, "the bundle is not valid zstd: \(String(cString: ZSTD_getErrorName(r)))")
                    }
                    return (r, outBuffer.pos)
                }
                frameComplete = result == 0
                if produced > 0 { try sink(Array(output[0..<produced])) }
            }
        }
    }
}
