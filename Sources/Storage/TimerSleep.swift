import NIOCore
import NIOPosix

/// A sleep for deadlines that are usually cancelled: an event-loop timer, removed from its loop when the
/// sleeping task is cancelled.
///
/// `Task.sleep` is for sleeps that usually run out. Cancelled, it keeps its task and dispatch timer
/// allocated: measured with heaptrack on a release `portal serve` on this toolchain (Swift 6.3.1, Linux),
/// 80,155 cancelled 10 s sleeps still held 24 MiB twenty seconds after their deadlines (about 300 bytes
/// each), so a deadline raced against every database operation grew the server by about 2 KiB a request
/// for as long as it ran (the soak: resident memory 1.2-1.4 times its value after warm-up).
package enum TimerSleep {
    /// Returns after `duration`, or throws `CancellationError` as soon as the task is cancelled.
    package static func sleep(for duration: Duration) async throws {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let amount: TimeAmount = nanoseconds.overflow ? .hours(24 * 365) : .nanoseconds(max(0, nanoseconds.partialValue &+ attoseconds / 1_000_000_000))
        let scheduled = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: amount) {}
        do {
            try await withTaskCancellationHandler {
                try await scheduled.futureResult.get()
            } onCancel: {
                scheduled.cancel()
            }
        } catch {
            throw CancellationError()
        }
    }
}
