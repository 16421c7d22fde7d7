#if canImport(Glibc)
import Glibc
#endif
import ServiceLifecycle

/// Gives memory the server has freed back to the system (glibc only; a no-op elsewhere).
///
/// Measured in the PostgreSQL soak: an instance's resident set grew about 3 MiB a minute while
/// heaptrack, attached to it, counted at most 12 MiB of live heap allocated in four minutes and 0.7 MiB never
/// freed. The growth was freed memory kept by glibc's allocator: the largest allocations are the PostgreSQL
/// connections' read and bind buffers (7.6 MiB at peak), sized to the largest result, such as a page of
/// 2,000 ledger entries, and freed when an idle connection closes. glibc raises its mmap threshold after the
/// first such buffer is freed, so the later ones come from the heap arenas, where freed space stays in the
/// process. Here the threshold is fixed (buffers of 256 KiB and more are their own mappings, returned when
/// freed) and every 30 s `malloc_trim(0)` returns the free pages of every arena.
struct MemoryReturn: Service {
    static let interval: Duration = .seconds(30)

    /// Fixes the mmap threshold; call once at start, before the servers allocate.
    static func configure() {
        // glibc's <malloc.h> is not part of the Glibc module: its two functions are looked up by name.
        if let mallopt = Self.function("mallopt", as: (@convention(c) (Int32, Int32) -> Int32).self) {
            _ = mallopt(-3, 256 * 1024)  // M_MMAP_THRESHOLD
        }
    }

    private static let trim = function("malloc_trim", as: (@convention(c) (Int) -> Int32).self)

    private static func function<F>(_ name: String, as type: F.Type) -> F? {
        #if canImport(Glibc)
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), name) else { return nil }
        return unsafeBitCast(symbol, to: type)
        #else
        return nil
        #endif
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do { try await Task.sleep(for: Self.interval) } catch { return }
                _ = Self.trim?(0)
            }
        }
    }
}
