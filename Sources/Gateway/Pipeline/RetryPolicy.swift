import PortalCore

/// The retry loop's decisions, with no I/O: after each attempt's answer (or failure), what the gateway does
/// next. The caller passes the time and a random unit in [0, 1) (the gateway's injected clock and random
/// source), so every path is tested without a network, a sleep or chance (`RetryPolicyTests`).
///
/// The rules: a 401 to an OAuth bearer refreshes the token once and tries again; a 401 or 403 during a
/// credential rotation's overlap tries the previous credentials once; a 429 or 5xx, or a connection that
/// failed, is retried with exponential backoff and full jitter (never shorter than the provider's
/// `Retry-After`) while the call is idempotent, attempts remain and the wait ends before the call's deadline.
/// A timeout is never retried: the deadline is spent.
struct RetryPolicy: Sendable {
    enum Next: Equatable, Sendable {
        /// Refresh the OAuth access token (the upstream refused it) and send again.
        case refreshToken
        /// Sign with the credentials from before the rotation and send again.
        case previousCredentials
        /// Wait, then send again.
        case retry(after: Duration)
        /// Answer with this attempt's outcome.
        case finish
    }

    let backoff: Backoff
    /// GET, PUT and DELETE, a call with an `Idempotency-Key`, or any call when the integration allows it.
    let idempotent: Bool
    let deadline: ContinuousClock.Instant
    /// An OAuth bearer that may be refreshed after a 401 (not for a transient test).
    let refreshableToken: Bool
    /// Whether the integration authenticates with OAuth (the previous credentials are not used then).
    let usesOAuth: Bool
    /// Attempts made, counting the one whose answer is being decided.
    private(set) var attempts = 0
    private var refreshed = false
    private var previousAvailable: Bool

    init(backoff: Backoff, idempotent: Bool, deadline: ContinuousClock.Instant, refreshableToken: Bool, usesOAuth: Bool, hasPreviousCredentials: Bool) {
        self.backoff = backoff
        self.idempotent = idempotent
        self.deadline = deadline
        self.refreshableToken = refreshableToken
        self.usesOAuth = usesOAuth
        previousAvailable = hasPreviousCredentials
    }

    /// Whether a method is retried without an idempotency key.
    static func idempotent(method: String, headers: [(name: String, value: String)], retryNonIdempotent: Bool) -> Bool {
        ["GET", "PUT", "DELETE"].contains(method) || headers.contains { $0.name.lowercased() == "idempotency-key" } || retryNonIdempotent
    }

    /// Counts an attempt about to be sent.
    mutating func attemptStarted() {
        attempts += 1
    }

    /// After an answer with `status` (and the provider's `Retry-After`, in seconds, when it sent one).
    mutating func after(status: Int, retryAfter: Double?, now: ContinuousClock.Instant, unit: Double) -> Next {
        if status == 401, refreshableToken, !refreshed {
            refreshed = true
            return .refreshToken
        }
        if status == 401 || status == 403, previousAvailable, !usesOAuth {
            previousAvailable = false
            return .previousCredentials
        }
        guard status == 429 || status >= 500, idempotent, attempts < backoff.maxAttempts else { return .finish }
        var delay = backoff.delay(attempt: attempts, unit: unit)
        if let retryAfter, retryAfter.isFinite, retryAfter > 0 {
            // Bounded: a wait past the deadline is not taken anyway.
            delay = max(delay, .milliseconds(Int64(min(retryAfter, 86_400) * 1000)))
        }
        return now + delay < deadline ? .retry(after: delay) : .finish
    }

    /// After an attempt that failed without an answer (`upstreamFailed`: no connection; `upstreamTimeout`).
    mutating func after(failure code: PortalError.Code, now: ContinuousClock.Instant, unit: Double) -> Next {
        guard idempotent, code == .upstreamFailed, attempts < backoff.maxAttempts else { return .finish }
        let delay = backoff.delay(attempt: attempts, unit: unit)
        return now + delay < deadline ? .retry(after: delay) : .finish
    }
}
