package import Foundation
package import Ledger
package import PortalCore
import Storage

/// Counts refused and unauthenticated requests per key and minute, bounded in memory: the pure core of
/// ``AuthFailureRecorder`` (no clock, no I/O; the minute is the event's own time).
///
/// A key is an organization, an entry type and the values of some members of the entry's `data` (an
/// endpoint and a reason, a token id, a route and a status). Each key's refusals of one minute become one
/// entry with `count`, `window` (the minute), `first` and `last`; integer members named as sums are added
/// up, and collected values (hashed sources, routes) are kept as sorted arrays, each at most
/// ``Limits/valuesPerSet``. An organization has at most ``Limits/keysPerOrganization`` keys in a minute:
/// refusals under further keys are counted in one `overflow` aggregate per type, whose key members read
/// `overflow`.
package struct FailureAggregator: Sendable {
    /// What a refusal is counted under.
    package struct Key: Hashable, Sendable {
        package var organizationID: UUID
        package var type: String
        /// The values of the key members, in order; empty for an overflow aggregate.
        package var values: [JSONValue]
        package var overflow: Bool
    }

    /// Bounds on what a minute holds.
    package struct Limits: Sendable {
        /// Distinct keys per organization and minute (all types together); more go to `overflow`.
        package var keysPerOrganization: Int
        /// Values kept per collected member of one aggregate (sources, routes).
        package var valuesPerSet: Int

        /// Bounds of 1,000 keys per organization and minute and 200 values per collected member.
        package init(keysPerOrganization: Int = 1_000, valuesPerSet: Int = 200) {
            self.keysPerOrganization = keysPerOrganization
            self.valuesPerSet = valuesPerSet
        }
    }

    /// What became of a refusal noted.
    package enum Outcome: Sendable, Equatable {
        /// The key's first refusal of the minute, to be appended at once by the caller (count 1).
        case first
        /// Counted in the key's aggregate, appended when the minute ends.
        case counted
        /// Counted in the organization's `overflow` aggregate for the type (too many keys this minute).
        case overflow
    }

    /// One key's refusals of one minute.
    struct Bucket: Sendable {
        /// The first refusal's event: organization, type, actor, integration and data of the aggregate.
        var event: AuditEvent
        var count = 0
        var first: Date?
        var last: Date?
        var sums: [String: Int64]
        var sets: [String: Set<String>] = [:]

        /// An empty aggregate of `event`'s key, its `sumFields` starting at 0.
        init(event: AuditEvent, sumFields: [String]) {
            self.event = event
            sums = Dictionary(sumFields.map { ($0, Int64(0)) }, uniquingKeysWith: { a, _ in a })
        }

        /// Counts one refusal at `time`.
        mutating func add(time: Date, sums added: [String: Int64], collect: [String: String], limit: Int) {
            count += 1
            if first.map({ time < $0 }) ?? true { first = time }
            if last.map({ time > $0 }) ?? true { last = time }
            for (name, value) in added { sums[name, default: 0] &+= value }
            for (name, value) in collect where sets[name, default: []].count < limit { sets[name, default: []].insert(value) }
        }
    }

    package let limits: Limits
    private var minutes: [Int64: [Key: Bucket]] = [:]
    private var keysPerOrganization: [Int64: [UUID: Int]] = [:]

    /// An empty aggregator with `limits`.
    package init(limits: Limits = .init()) {
        self.limits = limits
    }

    /// The minute (since 1970) that `time` falls in.
    package static func minute(_ time: Date) -> Int64 {
        Int64((time.timeIntervalSince1970 / 60).rounded(.down))
    }

    /// The start of `minute`.
    package static func start(_ minute: Int64) -> Date {
        Date(timeIntervalSince1970: TimeInterval(minute) * 60)
    }

    /// Counts `event` in its minute under the values of `keyFields` in its data. With `immediateFirst`, the
    /// key's first refusal of the minute is not counted here but answered ``Outcome/first``: the caller
    /// appends it at once. `sum` names integer data members added up; `collect` adds values to named sets.
    package mutating func note(
        _ event: AuditEvent, keyFields: [String], sum: [String] = [], collect: [String: String] = [:], immediateFirst: Bool
    ) -> Outcome {
        let minute = Self.minute(event.time)
        let data = event.data.objectValue ?? [:]
        var added: [String: Int64] = [:]
        for name in sum { if case .int(let n)? = data[name] { added[name] = n } }
        let key = Key(organizationID: event.organizationID, type: event.type, values: keyFields.map { data[$0] ?? .null }, overflow: false)
        if minutes[minute]?[key] != nil {
            minutes[minute]?[key]?.add(time: event.time, sums: added, collect: collect, limit: limits.valuesPerSet)
            return .counted
        }
        let distinct = keysPerOrganization[minute]?[event.organizationID] ?? 0
        guard distinct < limits.keysPerOrganization else {
            let overflow = Key(organizationID: event.organizationID, type: event.type, values: [], overflow: true)
            if minutes[minute]?[overflow] == nil {
                // Only the key members, each `overflow`: the other members were the first key's.
                let members = Dictionary(keyFields.map { ($0, JSONValue.string("overflow")) }, uniquingKeysWith: { a, _ in a })
                let prototype = AuditEvent(
                    organizationID: event.organizationID, rawType: event.type, actor: AuditEvent.system("auth"), data: .object(members), time: event.time
                )
                minutes[minute, default: [:]][overflow] = Bucket(event: prototype, sumFields: sum)
            }
            minutes[minute]?[overflow]?.add(time: event.time, sums: added, collect: collect, limit: limits.valuesPerSet)
            return .overflow
        }
        keysPerOrganization[minute, default: [:]][event.organizationID] = distinct + 1
        var bucket = Bucket(event: event, sumFields: sum)
        if !immediateFirst { bucket.add(time: event.time, sums: added, collect: collect, limit: limits.valuesPerSet) }
        minutes[minute, default: [:]][key] = bucket
        return immediateFirst ? .first : .counted
    }

    /// Removes the minutes before `minute` (every minute when nil) and returns their aggregates as entries
    /// to append, oldest minute first; a key whose only refusal was appended at once gives none.
    package mutating func take(before minute: Int64?) -> [AuditEvent] {
        let ended = minutes.keys.filter { m in minute.map { m < $0 } ?? true }.sorted()
        var entries: [AuditEvent] = []
        for m in ended {
            let buckets = minutes.removeValue(forKey: m) ?? [:]
            keysPerOrganization[m] = nil
            let ordered = buckets.filter { $0.value.count > 0 }.sorted { a, b in
                (a.key.organizationID.uuidString, a.key.type, a.key.overflow ? 1 : 0, JSONValue.encodeText(.array(a.key.values)))
                    < (b.key.organizationID.uuidString, b.key.type, b.key.overflow ? 1 : 0, JSONValue.encodeText(.array(b.key.values)))
            }
            entries += ordered.map { Self.entry($0.value, minute: m) }
        }
        return entries
    }

    /// Refusals noted and not yet taken (appended-at-once firsts excluded).
    package var pending: Int {
        minutes.values.reduce(0) { total, buckets in total + buckets.values.reduce(0) { $0 + $1.count } }
    }

    /// The entry of a single refusal appended at once: its data with `count` 1, `window`, and the collected values.
    package static func single(_ event: AuditEvent, collect: [String: String] = [:]) -> AuditEvent {
        var data = event.data.objectValue ?? [:]
        data["count"] = 1
        data["window"] = .string(Timestamp.rfc3339(start(minute(event.time))))
        for (name, value) in collect { data[name] = [.string(value)] }
        var entry = event
        entry.data = .object(data)
        return entry
    }

    /// The aggregate entry of `bucket` in `minute`, timed at its last refusal.
    static func entry(_ bucket: Bucket, minute: Int64) -> AuditEvent {
        var data = bucket.event.data.objectValue ?? [:]
        let last = bucket.last ?? bucket.event.time
        data["count"] = .int(Int64(bucket.count))
        data["window"] = .string(Timestamp.rfc3339(start(minute)))
        data["first"] = .string(Timestamp.rfc3339(bucket.first ?? last))
        data["last"] = .string(Timestamp.rfc3339(last))
        for (name, total) in bucket.sums { data[name] = .int(total) }
        for (name, values) in bucket.sets { data[name] = .array(values.sorted().map(JSONValue.string)) }
        var entry = bucket.event
        entry.data = .object(data)
        entry.time = last
        return entry
    }
}
