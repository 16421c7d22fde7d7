package import Foundation
package import Integrations
package import PortalCore
import Synchronization

/// The seed's `RateLimitConfig` as DESIGN section 7 shapes it: per second and per minute, a burst, and
/// overrides per endpoint template.
package struct RateLimits: Sendable, Equatable {
    package struct Limit: Sendable, Equatable {
        package var perSecond: Double?
        package var perMinute: Double?
        package var burst: Double?
    }

    package var integration: Limit
    package var endpoints: [String: Limit]

    /// Parses `rateLimits`; absent fields fall back to 10 per second with a burst of 20.
    package init(_ json: JSONValue) {
        func limit(_ value: JSONValue?) -> Limit {
            let m = value?.objectValue ?? [:]
            func number(_ key: String) -> Double? {
                switch m[key] {
                case .int(let i)?: Double(i)
                case .double(let d)?: d
                default: nil
                }
            }
            return Limit(perSecond: number("requestsPerSecond"), perMinute: number("requestsPerMinute"), burst: number("burst"))
        }
        var top = limit(json)
        if top.perSecond == nil && top.perMinute == nil { top.perSecond = 10 }
        if top.burst == nil, let perSecond = top.perSecond { top.burst = max(1, perSecond * 2) }
        integration = top
        endpoints = (json.objectValue?["endpoints"]?.objectValue ?? [:]).mapValues(limit)
    }
}

/// Token buckets per integration and per endpoint template, plus what the provider said about its own
/// limits (429 with `Retry-After`, `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset`). In memory, per
/// instance: with several instances each enforces the configured rate on its own share of the calls.
package final class RateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: Date
    }

    private struct State {
        var buckets: [String: Bucket] = [:]
        /// Integration id -> until when the provider asked us to hold off.
        var blockedUntil: [UUID: Date] = [:]
    }

    private let state = Mutex(State())

    package init() {}

    /// Takes one token from every bucket that applies, or none and the seconds until the call could pass.
    package func acquire(integrationID: UUID, endpoint: String, limits: RateLimits, now: Date) -> TimeInterval? {
        state.withLock { s -> TimeInterval? in
            if let until = s.blockedUntil[integrationID] {
                if until > now { return until.timeIntervalSince(now) }
                s.blockedUntil[integrationID] = nil
            }
            var windows: [(key: String, rate: Double, capacity: Double)] = []
            func add(_ scope: String, _ limit: RateLimits.Limit) {
                if let perSecond = limit.perSecond { windows.append(("\(scope)|s", perSecond, limit.burst ?? max(1, perSecond))) }
                if let perMinute = limit.perMinute { windows.append(("\(scope)|m", perMinute / 60, perMinute)) }
            }
            let id = integrationID.uuidString
            add(id, limits.integration)
            if let endpointLimit = limits.endpoints[endpoint] { add(id + "|" + endpoint, endpointLimit) }
            var wait: TimeInterval = 0
            var refilled: [(String, Bucket)] = []
            for window in windows {
                var bucket = s.buckets[window.key] ?? Bucket(tokens: window.capacity, updated: now)
                bucket.tokens = min(window.capacity, bucket.tokens + max(0, now.timeIntervalSince(bucket.updated)) * window.rate)
                bucket.updated = now
                if bucket.tokens < 1 { wait = max(wait, (1 - bucket.tokens) / window.rate) }
                refilled.append((window.key, bucket))
            }
            for (key, var bucket) in refilled {
                if wait == 0 { bucket.tokens -= 1 }
                s.buckets[key] = bucket
            }
            return wait == 0 ? nil : wait
        }
    }

    /// Holds calls to an integration until `until` (the provider's `Retry-After` or reset time).
    package func block(integrationID: UUID, until: Date) {
        state.withLock { s in
            s.blockedUntil[integrationID] = max(until, s.blockedUntil[integrationID] ?? until)
        }
    }

    /// Reads the provider's rate-limit answer: the time to hold off until, if it asked for one.
    /// A provider's answer of "not before" is at most a day away: `Retry-After: inf` or `1e300` (an upstream's
    /// text) would otherwise hold the integration forever and overflow the whole seconds every refusal names.
    package static let maxHoldOff: TimeInterval = 86_400

    package static func holdOff(status: Int, headers: [(name: String, value: String)], now: Date) -> Date? {
        func header(_ name: String) -> String? {
            headers.first { Self.sameASCIIName($0.name, name) }?.value.trimmingCharacters(in: .whitespaces)
        }
        if status == 429 || status == 503, let retryAfter = header("Retry-After"), let delay = retryAfterSeconds(retryAfter, now: now) {
            return now.addingTimeInterval(delay)
        }
        if status == 429 { return now.addingTimeInterval(1) }
        if header("X-RateLimit-Remaining") == "0", let reset = header("X-RateLimit-Reset").flatMap(Double.init), reset.isFinite {
            // Either seconds from now or an epoch time, as providers differ.
            let until = reset > 1_000_000_000 ? Date(timeIntervalSince1970: reset) : now.addingTimeInterval(reset)
            return until > now ? min(until, now.addingTimeInterval(maxHoldOff)) : nil
        }
        return nil
    }

    /// Header names compared as HTTP does (ASCII, case-insensitive), without Foundation's locale-aware
    /// comparison (a visible cost when every response is scanned).
    static func sameASCIIName(_ a: String, _ b: String) -> Bool {
        var x = a.utf8.makeIterator()
        var y = b.utf8.makeIterator()
        while true {
            switch (x.next(), y.next()) {
            case (nil, nil): return true
            case (let p?, let q?):
                if p != q, p | 0x20 != q | 0x20 || !((p | 0x20) >= UInt8(ascii: "a") && (p | 0x20) <= UInt8(ascii: "z")) { return false }
            default: return false
            }
        }
    }

    /// `Retry-After` as seconds from now: delta-seconds or an HTTP date, at most ``maxHoldOff``; nil when it is
    /// neither (or not a finite, non-negative number).
    package static func retryAfterSeconds(_ value: String, now: Date) -> TimeInterval? {
        if let seconds = Double(value) { return seconds.isFinite && seconds >= 0 ? min(seconds, maxHoldOff) : nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return min(max(0, date.timeIntervalSince(now)), maxHoldOff)
    }
}

/// `min(maxDelay, baseDelay * 2^(attempt-1))` with full jitter (the seed's RetryManager).
package struct Backoff: Sendable, Equatable {
    package var maxAttempts: Int
    /// Milliseconds.
    package var baseDelay: Int
    package var maxDelay: Int

    package init(maxAttempts: Int = 3, baseDelay: Int = 200, maxDelay: Int = 5_000) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// From the integration's `config.retry` (checked when written: 1 to 10 attempts).
    package init(_ retry: IntegrationConfiguration.Retry) {
        self.init(maxAttempts: max(1, min(10, retry.maxAttempts)), baseDelay: max(0, retry.baseDelay), maxDelay: max(0, retry.maxDelay))
    }

    /// The delay before retry number `attempt` (1 for the first retry), `unit` in [0, 1) from the caller's
    /// random source.
    package func delay(attempt: Int, unit: Double) -> Duration {
        let ceiling = min(Double(maxDelay), Double(baseDelay) * pow(2, Double(max(0, attempt - 1))))
        return .milliseconds(Int64(ceiling * unit))
    }
}

/// The path as recorded: the template configured for it, else identifier-like segments (numbers, UUIDs,
/// emails, long tokens) replaced by `{id}` (DESIGN 4.1: no raw personal data in entries).
package enum EndpointTemplate {
    package static func of(path: String, configured: [String]) -> String {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for template in configured {
            let parts = template.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == segments.count else { continue }
            if zip(parts, segments).allSatisfy({ $0.hasPrefix("{") && $0.hasSuffix("}") || $0 == $1 }) { return template }
        }
        return segments.map { isIdentifier($0) ? "{id}" : $0 }.joined(separator: "/")
    }

    static func isIdentifier(_ segment: String) -> Bool {
        guard !segment.isEmpty else { return false }
        if segment.allSatisfy(\.isNumber) { return true }
        if UUID(uuidString: segment) != nil { return true }
        if segment.contains("@") || segment.contains("%40") { return true }
        let digits = segment.filter(\.isNumber).count
        return segment.count >= 16 && digits > 0 && digits < segment.count
    }
}
