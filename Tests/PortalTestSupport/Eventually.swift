import Foundation

/// Polls `condition` until it holds, or until `timeout` has passed; returns whether it held.
///
/// Tests wait for conditions, never for a fixed time: the timeout is only a backstop for a feature that is
/// broken (it is never reached when the feature works, however busy the machine), so it is generous.
package func eventually(
    timeout: Duration = .seconds(180), every: Duration = .milliseconds(20), _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while true {
        if try await condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try await Task.sleep(for: every)
    }
}
