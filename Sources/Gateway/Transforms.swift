import Foundation
import PortalCore
import Storage

/// Declarative request and response transforms (`config.transforms`, issue 5):
///
/// `{"request": {"headers": {"set": {"X-Client": "portal"}, "remove": ["X-Debug"]},
///               "body": {"rename": {"/name": "/fullName"}, "set": {"/source": "portal"}, "remove": ["/internal"]}},
///   "response": {"headers": {"remove": ["Server"]}, "body": {"rename": {...}, "remove": [...], "pick": ["/items", "/total"]}}}`
///
/// Body fields are JSON Pointers (RFC 6901); renames run first, then sets, removals and the pick. A body
/// that is not a JSON object passes unchanged.
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

        func headers(_ headers: [(name: String, value: String)]) -> [(name: String, value: String)] {
            let names = Set(setHeaders.map { $0.0.lowercased() })
            var out = headers.filter { !removeHeaders.contains($0.name.lowercased()) && !names.contains($0.name.lowercased()) }
            out += setHeaders.map { (name: $0.0, value: $0.1) }
            return out
        }

        /// The transformed body, or nil when it is unchanged (not a JSON object, or nothing to do).
        func body(_ bytes: [UInt8]) -> [UInt8]? {
            guard rename.count + set.count + remove.count > 0 || pick != nil,
                  case .object? = try? JSONValue.parse(Data(bytes)), var value = try? JSONValue.parse(Data(bytes))
            else { return nil }
            for (from, to) in rename {
                if let moved = Pointer.get(value, from) {
                    value = Pointer.remove(value, from)
                    value = Pointer.set(value, to, moved)
                }
            }
            for (pointer, newValue) in set { value = Pointer.set(value, pointer, newValue) }
            for pointer in remove { value = Pointer.remove(value, pointer) }
            if let pick {
                var picked: JSONValue = .object([:])
                for pointer in pick { if let v = Pointer.get(value, pointer) { picked = Pointer.set(picked, pointer, v) } }
                value = picked
            }
            return Array(JSONValue.encodeText(value).utf8)
        }
    }

    let request: Side
    let response: Side

    init(config: JSONValue?) {
        request = Side(config?.objectValue?["request"])
        response = Side(config?.objectValue?["response"])
    }
}

/// RFC 6901 JSON Pointers over objects (array indexes for reading and replacing).
enum Pointer {
    static func tokens(_ pointer: String) -> [String] {
        pointer.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
            .map { $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~") }
    }

    static func get(_ value: JSONValue, _ pointer: String) -> JSONValue? {
        var current = value
        for token in tokens(pointer) {
            switch current {
            case .object(let m): guard let next = m[token] else { return nil }; current = next
            case .array(let a): guard let i = Int(token), a.indices.contains(i) else { return nil }; current = a[i]
            default: return nil
            }
        }
        return current
    }

    /// `value` with `newValue` at `pointer`, creating objects on the way.
    static func set(_ value: JSONValue, _ pointer: String, _ newValue: JSONValue) -> JSONValue {
        set(value, tokens(pointer)[...], newValue)
    }

    private static func set(_ value: JSONValue, _ tokens: ArraySlice<String>, _ newValue: JSONValue) -> JSONValue {
        guard let token = tokens.first else { return newValue }
        switch value {
        case .array(var a) where Int(token).map(a.indices.contains) == true:
            a[Int(token)!] = set(a[Int(token)!], tokens.dropFirst(), newValue)
            return .array(a)
        case .object(var m):
            m[token] = set(m[token] ?? .object([:]), tokens.dropFirst(), newValue)
            return .object(m)
        default:
            return .object([token: set(.object([:]), tokens.dropFirst(), newValue)])
        }
    }

    static func remove(_ value: JSONValue, _ pointer: String) -> JSONValue {
        remove(value, tokens(pointer)[...])
    }

    private static func remove(_ value: JSONValue, _ tokens: ArraySlice<String>) -> JSONValue {
        guard let token = tokens.first else { return value }
        guard case .object(var m) = value else { return value }
        if tokens.count == 1 {
            m[token] = nil
        } else if let child = m[token] {
            m[token] = remove(child, tokens.dropFirst())
        }
        return .object(m)
    }
}
