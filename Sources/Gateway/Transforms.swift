import Foundation
import Integrations
import PortalCore
import Storage

/// Declarative request and response transforms (`config.transforms`):
///
/// `{"request": {"headers": {"set": {"X-Client": "portal"}, "remove": ["X-Debug"]},
///               "body": {"rename": {"/name": "/fullName"}, "set": {"/source": "portal"}, "remove": ["/internal"]}},
///   "response": {"headers": {"remove": ["Server"]}, "body": {"rename": {...}, "remove": [...], "pick": ["/items", "/total"]}}}`
///
/// Body fields are JSON Pointers (RFC 6901); renames run first, then sets, removals and the pick. A body
/// that is not a JSON object passes unchanged.
///
/// Pointers are capped at ``TransformLimits/maxPointerTokens`` tokens when a configuration is written; one
/// stored before the cap is never followed: the rule does nothing, and ``problem`` (or ``checked(config:)``)
/// says why, so that a call can fail with that error instead.
struct Transforms {
    struct Side {
        var setHeaders: [(String, String)] = []
        var removeHeaders: Set<String> = []
        var rename: [(String, String)] = []
        var set: [(String, JSONValue)] = []
        var remove: [String] = []
        var pick: [String]?

        var isEmpty: Bool { setHeaders.isEmpty && removeHeaders.isEmpty && rename.isEmpty && set.isEmpty && remove.isEmpty && pick == nil }

        init(_ json: JSONValue?) {
            let m = json?.objectValue ?? [:]
            let headers = m["headers"]?.objectValue ?? [:]
            setHeaders = (headers["set"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.compactMap { key, value in value.stringValue.map { (key, $0) } }
            removeHeaders = Set((headers["remove"]?.arrayStrings ?? []).map { $0.lowercased() })
            let body = m["body"]?.objectValue ?? [:]
            rename = (body["rename"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.compactMap { from, to in to.stringValue.map { (from, $0) } }
            set = (body["set"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            remove = body["remove"]?.arrayStrings ?? []
            pick = body["pick"]?.arrayStrings
        }

        /// The body rules whose pointers are deeper than ``TransformLimits/maxPointerTokens``, as `"<list>"` names.
        var overDeep: [String] {
            let lists: [(String, [String])] = [
                ("rename", rename.flatMap { [$0.0, $0.1] }), ("set", set.map(\.0)), ("remove", remove), ("pick", pick ?? []),
            ]
            return lists.filter { _, pointers in pointers.contains { !Pointer.isFollowable($0) } }.map(\.0)
        }

        func headers(_ headers: [(name: String, value: String)]) -> [(name: String, value: String)] {
            let names = Set(setHeaders.map { $0.0.lowercased() })
            var out = headers.filter { !removeHeaders.contains($0.name.lowercased()) && !names.contains($0.name.lowercased()) }
            out += setHeaders.map { (name: $0.0, value: $0.1) }
            return out
        }

        /// The transformed body, or nil when it is unchanged (not a JSON object, or nothing to do).
        /// A rule whose pointer is over the depth cap does nothing (see ``Transforms/problem``).
        func body(_ bytes: [UInt8]) -> [UInt8]? {
            guard rename.count + set.count + remove.count > 0 || pick != nil,
                  let parsed = try? JSONValue.parse(Data(bytes)), case .object = parsed
            else { return nil }
            var value = parsed
            for (from, to) in rename where Pointer.isFollowable(to) {
                if let moved = Pointer.get(value, from) {
                    value = Pointer.remove(value, from)
                    value = Pointer.set(value, to, moved) ?? value
                }
            }
            for (pointer, newValue) in set { value = Pointer.set(value, pointer, newValue) ?? value }
            for pointer in remove { value = Pointer.remove(value, pointer) }
            if let pick {
                var picked: JSONValue = .object([:])
                for pointer in pick {
                    if let v = Pointer.get(value, pointer) { picked = Pointer.set(picked, pointer, v) ?? picked }
                }
                value = picked
            }
            return Array(JSONValue.encodeText(value).utf8)
        }
    }

    let request: Side
    let response: Side
    /// Why this configuration cannot be applied as written (a pointer stored before the caps), or nil.
    let problem: PortalError?

    init(config: JSONValue?) {
        request = Side(config?.objectValue?["request"])
        response = Side(config?.objectValue?["response"])
        let lists = request.overDeep.map { "request.body.\($0)" } + response.overDeep.map { "response.body.\($0)" }
        problem = lists.isEmpty ? nil : PortalError(
            .refused,
            "the integration's config.transforms has a JSON Pointer of more than \(TransformLimits.maxPointerTokens) tokens "
                + "(in \(lists.joined(separator: ", "))); the gateway does not follow it: PATCH config.transforms to fix it"
        )
    }

    /// The transforms of `config`, or the error that says why they cannot be applied as written.
    static func checked(config: JSONValue?) throws(PortalError) -> Transforms {
        let transforms = Transforms(config: config)
        if let problem = transforms.problem { throw problem }
        return transforms
    }
}

/// RFC 6901 JSON Pointers over objects (array indexes for reading and replacing).
///
/// Iterative, and refusing pointers of more than ``TransformLimits/maxPointerTokens`` tokens, so that no
/// configuration can exhaust the stack or build a value too deep to encode.
enum Pointer {
    /// Whether `pointer` is within the depth cap (deeper ones are never followed).
    static func isFollowable(_ pointer: String) -> Bool {
        TransformLimits.tokenCount(pointer) <= TransformLimits.maxPointerTokens
    }

    /// The unescaped reference tokens of `pointer`, or nil when it has more than the cap.
    static func tokens(_ pointer: String) -> [String]? {
        guard isFollowable(pointer) else { return nil }
        return pointer.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            .map { $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~") }
    }

    /// The value at `pointer`, or nil when there is none (or the pointer is over the cap).
    static func get(_ value: JSONValue, _ pointer: String) -> JSONValue? {
        guard let tokens = tokens(pointer) else { return nil }
        var current = value
        for token in tokens {
            switch current {
            case .object(let m): guard let next = m[token] else { return nil }; current = next
            case .array(let a): guard let i = Int(token), a.indices.contains(i) else { return nil }; current = a[i]
            default: return nil
            }
        }
        return current
    }

    /// `value` with `newValue` at `pointer`, creating objects on the way; nil when the pointer is over the cap.
    static func set(_ value: JSONValue, _ pointer: String, _ newValue: JSONValue) -> JSONValue? {
        guard let tokens = tokens(pointer) else { return nil }
        // Down: each container on the path (an existing one, or an empty object made for the token).
        var path: [(container: JSONValue, token: String)] = []
        var current = value
        for token in tokens {
            path.append((current, token))
            switch current {
            case .array(let a) where Int(token).map(a.indices.contains) == true:
                current = Int(token).map { a[$0] } ?? .object([:])
            case .object(let m):
                current = m[token] ?? .object([:])
            default:
                current = .object([:])
            }
        }
        // Up: put each level's result into its container.
        var result = newValue
        for (container, token) in path.reversed() {
            switch container {
            case .array(var a) where Int(token).map(a.indices.contains) == true:
                if let i = Int(token) { a[i] = result }
                result = .array(a)
            case .object(var m):
                m[token] = result
                result = .object(m)
            default:
                result = .object([token: result])
            }
        }
        return result
    }

    /// `value` without the member at `pointer` (objects only); unchanged when there is none or the pointer is over the cap.
    static func remove(_ value: JSONValue, _ pointer: String) -> JSONValue {
        guard let tokens = tokens(pointer), let last = tokens.last else { return value }
        var path: [(members: [String: JSONValue], token: String)] = []
        var current = value
        for token in tokens.dropLast() {
            guard case .object(let m) = current, let child = m[token] else { return value }
            path.append((m, token))
            current = child
        }
        guard case .object(var m) = current, m[last] != nil else { return value }
        m[last] = nil
        var result = JSONValue.object(m)
        for (members, token) in path.reversed() {
            var parent = members
            parent[token] = result
            result = .object(parent)
        }
        return result
    }
}
