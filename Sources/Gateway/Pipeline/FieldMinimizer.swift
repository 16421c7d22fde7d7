import Foundation
import PortalCore

/// Data minimization of outbound JSON bodies (issue 21): keeps only the members the integration may send,
/// given as JSON pointers (RFC 6901; a `*` token matches every member or element at its level), and names
/// what it removed. A pointer keeps everything under it; the objects and arrays above it are kept as far
/// as they lead to a kept field. Pure.
struct FieldMinimizer: Sendable {
    /// The pointers as a tree of their tokens.
    final class Node: Sendable {
        let keepsAll: Bool
        let children: [String: Node]
        let wildcard: Node?

        init(keepsAll: Bool, children: [String: Node], wildcard: Node?) {
            self.keepsAll = keepsAll
            self.children = children
            self.wildcard = wildcard
        }
    }

    let root: Node

    init(fields: [String]) {
        root = Self.build(fields.map { Self.tokens($0) })
    }

    /// The tokens of a pointer, unescaped (`~1` is `/`, `~0` is `~`).
    static func tokens(_ pointer: String) -> [String] {
        pointer.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    private static func build(_ paths: [[String]]) -> Node {
        if paths.contains(where: \.isEmpty) { return Node(keepsAll: true, children: [:], wildcard: nil) }
        var groups: [String: [[String]]] = [:]
        for path in paths { groups[path[0], default: []].append(Array(path.dropFirst())) }
        let wildcard = groups.removeValue(forKey: "*").map(build)
        return Node(keepsAll: false, children: groups.mapValues(build), wildcard: wildcard)
    }

    /// `value` without the fields not allowed, and the pointers of those removed (array indexes as `*`,
    /// each once, in the order met).
    func minimize(_ value: JSONValue) -> (kept: JSONValue, stripped: [String]) {
        var stripped: [String] = []
        var seen: Set<String> = []
        let kept = walk(value, root, path: "", stripped: &stripped, seen: &seen) ?? value
        return (kept, stripped)
    }

    /// The kept part of `value` at `node`; nil when nothing of it may be sent.
    private func walk(_ value: JSONValue, _ node: Node, path: String, stripped: inout [String], seen: inout Set<String>) -> JSONValue? {
        if node.keepsAll { return value }
        func strip(_ pointer: String) {
            if seen.insert(pointer).inserted { stripped.append(pointer) }
        }
        switch value {
        case .object(let members):
            var kept: [String: JSONValue] = [:]
            for (key, member) in members.sorted(by: { $0.key < $1.key }) {
                let pointer = path + "/" + jsonPointerEscape(key)
                guard let child = node.children[key] ?? node.wildcard else {
                    strip(pointer)
                    continue
                }
                if let value = walk(member, child, path: pointer, stripped: &stripped, seen: &seen) { kept[key] = value }
            }
            return .object(kept)
        case .array(let items):
            let pointer = path + "/*"
            var kept: [JSONValue] = []
            for (i, item) in items.enumerated() {
                guard let child = node.wildcard ?? node.children[String(i)] else {
                    strip(pointer)
                    continue
                }
                if let value = walk(item, child, path: pointer, stripped: &stripped, seen: &seen) { kept.append(value) }
            }
            return .array(kept)
        default:
            // A scalar where only members below it are allowed.
            strip(path.isEmpty ? "" : path)
            return nil
        }
    }
}
