import Foundation
package import PortalCore
package import Storage

/// An integration's `syncConfig`, read and checked: what to pull per entity, how often, and how
/// conflicts are resolved.
package struct SyncConfiguration: Sendable, Equatable {
    package var entities: [String: SyncEntity]
    package var intervalSeconds: Int?
    /// What the schedule runs: `incremental` (the default) or `full` (the seed's `syncType`).
    package var syncType: SyncType = .incremental
    package var conflicts: ConflictPolicy

    package init(entities: [String: SyncEntity], intervalSeconds: Int? = nil, conflicts: ConflictPolicy = ConflictPolicy(strategy: .sourceWins)) {
        self.entities = entities
        self.intervalSeconds = intervalSeconds
        self.conflicts = conflicts
    }

    /// Reads a `syncConfig` object; every problem is reported with its pointer (a 422).
    package static func parse(_ value: JSONValue, pointer: String = "/syncConfig") throws(PortalError) -> SyncConfiguration {
        try JSONObjectReader.parse(value, pointer: pointer, read)
    }

    /// Reads the members of a `syncConfig` object into `r`'s error list.
    package static func read(_ r: inout JSONObjectReader) -> SyncConfiguration? {
        var entities: [String: SyncEntity] = [:]
        if let list = r.value("entities", required: true) {
            if case .object(let members) = list {
                if members.isEmpty { r.reject("entities", "must name at least one entity") }
                if members.count > 50 { r.reject("entities", "must name at most 50 entities") }
                for (name, item) in members.sorted(by: { $0.key < $1.key }) {
                    let pointer = r.pointer("entities") + "/" + jsonPointerEscape(name)
                    guard name.count <= 100, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }), !name.isEmpty else {
                        r.errorList.add(pointer, "an entity name is 1 to 100 letters, digits, _ or -")
                        continue
                    }
                    var reader = JSONObjectReader(item, pointer: pointer, errors: r.errorList)
                    if let entity = SyncEntity.read(name: name, &reader) { entities[name] = entity }
                    reader.finish()
                }
            } else {
                r.reject("entities", "must be an object of entity name to its configuration, not \(list.kindName)")
            }
        }
        let interval = r.nested("schedule") { s in s.integer("intervalSeconds", required: true, in: 60...31_536_000).map { Int($0) } }
        let conflicts = r.nested("conflictResolution") { ConflictPolicy.read(&$0) }
        let syncType = r.enumeration("syncType", SyncType.self)
        var configuration = SyncConfiguration(entities: entities, intervalSeconds: interval, conflicts: conflicts ?? ConflictPolicy(strategy: .sourceWins))
        if let syncType { configuration.syncType = syncType }
        return configuration
    }

    /// The stored form.
    package var json: JSONValue {
        var m: [String: JSONValue] = [
            "entities": .object(entities.mapValues(\.json)),
            "conflictResolution": conflicts.json, "syncType": .string(syncType.rawValue),
        ]
        if let intervalSeconds { m["schedule"] = ["intervalSeconds": .int(Int64(intervalSeconds))] }
        return .object(m)
    }
}

/// One entity's list endpoint and how to read it.
package struct SyncEntity: Sendable, Equatable {
    package var name: String
    /// The list endpoint, a path under the integration's base URL (it may carry a query).
    package var endpoint: String
    /// Where the items are in a page (a JSON pointer; "" for a page that is the array itself).
    package var itemsPath: String
    /// The record id in an item: a member name or a JSON pointer.
    package var idField: String
    /// The data subject's id in an item, for records that describe a person (stored encrypted with the
    /// subject's key).
    package var subjectIdField: String?
    /// The query parameter an incremental sync sends the high-water mark in.
    package var updatedSinceParam: String?
    /// Where an item says when it last changed (the high-water mark).
    package var updatedField: String
    package var pagination: Pagination
    package var mapping: FieldMapping?

    static func read(name: String, _ r: inout JSONObjectReader) -> SyncEntity? {
        let endpoint = r.string("endpoint", required: true, minLength: 1, maxLength: 2_000)
        if let endpoint, !endpoint.hasPrefix("/") { r.reject("endpoint", "must be a path starting with /") }
        let itemsPath = r.string("itemsPath", maxLength: 500) ?? ""
        if !itemsPath.isEmpty, !itemsPath.hasPrefix("/") { r.reject("itemsPath", "must be a JSON pointer (such as /data), or empty for a top-level array") }
        let idField = r.string("idField", minLength: 1, maxLength: 500) ?? "id"
        let subjectIdField = r.string("subjectIdField", minLength: 1, maxLength: 500)
        let updatedSinceParam = r.string("updatedSinceParam", minLength: 1, maxLength: 100)
        let updatedField = r.string("updatedField", minLength: 1, maxLength: 500) ?? "updated_at"
        let pagination = r.nested("pagination") { Pagination.read(&$0) } ?? Pagination(style: .none)
        let mapping = r.nested("mapping") { FieldMapping.read(&$0) }
        guard let endpoint, endpoint.hasPrefix("/"), itemsPath.isEmpty || itemsPath.hasPrefix("/") else { return nil }
        return SyncEntity(
            name: name, endpoint: endpoint, itemsPath: itemsPath, idField: idField, subjectIdField: subjectIdField,
            updatedSinceParam: updatedSinceParam, updatedField: updatedField, pagination: pagination, mapping: mapping
        )
    }

    var json: JSONValue {
        var m: [String: JSONValue] = [
            "endpoint": .string(endpoint), "itemsPath": .string(itemsPath), "idField": .string(idField), "updatedField": .string(updatedField),
            "pagination": pagination.json,
        ]
        if let subjectIdField { m["subjectIdField"] = .string(subjectIdField) }
        if let updatedSinceParam { m["updatedSinceParam"] = .string(updatedSinceParam) }
        if let mapping { m["mapping"] = mapping.json }
        return .object(m)
    }

    /// A member name or JSON pointer, looked up in `item`.
    package static func lookup(_ field: String, in item: JSONValue) -> JSONValue? {
        if field.hasPrefix("/") { return JSONPointer.value(at: field, in: item) }
        return item.objectValue?[field]
    }

    /// The item's record id as text (strings and integers), or nil.
    package func recordID(of item: JSONValue) -> String? {
        switch Self.lookup(idField, in: item) {
        case .string(let s)? where !s.isEmpty && s.count <= 255: s
        case .int(let n)?: String(n)
        default: nil
        }
    }
}

/// How an entity's pages follow each other.
package struct Pagination: Sendable, Equatable {
    package enum Style: String, Sendable, CaseIterable {
        /// One page holds everything.
        case none
        /// The response names the next cursor (`nextCursorPath`), sent back as `cursorParam`.
        case cursor
        /// Numbered pages (`pageParam`, from `firstPage`) of `pageSize` items; a short page is the last.
        case page
        /// RFC 8288 `Link: <...>; rel="next"` headers.
        case link
    }

    package var style: Style
    package var cursorParam: String = "cursor"
    package var nextCursorPath: String = "/next_cursor"
    package var pageParam: String = "page"
    package var firstPage: Int = 1
    package var pageSizeParam: String?
    package var pageSize: Int?

    package init(style: Style) {
        self.style = style
    }

    static func read(_ r: inout JSONObjectReader) -> Pagination? {
        let style = r.enumeration("style", Style.self, required: true)
        var p = Pagination(style: style ?? .none)
        if let v = r.string("cursorParam", minLength: 1, maxLength: 100) { p.cursorParam = v }
        if let v = r.string("nextCursorPath", minLength: 1, maxLength: 500) {
            if v.hasPrefix("/") { p.nextCursorPath = v } else { r.reject("nextCursorPath", "must be a JSON pointer, such as /meta/next") }
        }
        if let v = r.string("pageParam", minLength: 1, maxLength: 100) { p.pageParam = v }
        if let v = r.integer("firstPage", in: 0...1) { p.firstPage = Int(v) }
        p.pageSizeParam = r.string("pageSizeParam", minLength: 1, maxLength: 100)
        p.pageSize = r.integer("pageSize", in: 1...10_000).map { Int($0) }
        if style == .page, p.pageSize == nil { r.reject("pageSize", "is required for page pagination (a short page ends the list)") }
        return style == nil ? nil : p
    }

    var json: JSONValue {
        var m: [String: JSONValue] = ["style": .string(style.rawValue)]
        switch style {
        case .none, .link: break
        case .cursor:
            m["cursorParam"] = .string(cursorParam)
            m["nextCursorPath"] = .string(nextCursorPath)
        case .page:
            m["pageParam"] = .string(pageParam)
            m["firstPage"] = .int(Int64(firstPage))
        }
        if let pageSizeParam { m["pageSizeParam"] = .string(pageSizeParam) }
        if let pageSize { m["pageSize"] = .int(Int64(pageSize)) }
        return .object(m)
    }

    /// The query parameters of the first page.
    package func firstQuery() -> [(String, String)] {
        var query: [(String, String)] = []
        if style == .page { query.append((pageParam, String(firstPage))) }
        if let pageSizeParam, let pageSize { query.append((pageSizeParam, String(pageSize))) }
        return query
    }

    /// Where the page after one with `itemCount` items is: new query parameters, an absolute URL (`Link`), or
    /// nil at the end.
    package func next(after page: JSONValue, headers: [(String, String)], itemCount: Int, current: [(String, String)]) -> NextPage? {
        switch style {
        case .none:
            return nil
        case .cursor:
            let cursor: String? = switch JSONPointer.value(at: nextCursorPath, in: page) {
            case .string(let s)? where !s.isEmpty: s
            case .int(let n)?: String(n)
            default: nil
            }
            guard let cursor, itemCount > 0 else { return nil }
            return .query(current.filter { $0.0 != cursorParam } + [(cursorParam, cursor)])
        case .page:
            guard let pageSize, itemCount >= pageSize, itemCount > 0 else { return nil }
            let number = current.first { $0.0 == pageParam }.flatMap { Int($0.1) } ?? firstPage
            return .query(current.filter { $0.0 != pageParam } + [(pageParam, String(number + 1))])
        case .link:
            let values = headers.filter { $0.0.lowercased() == "link" }.map(\.1)
            guard let target = LinkHeader.target(rel: "next", in: values) else { return nil }
            return .url(target)
        }
    }
}

/// The next page of a list.
package enum NextPage: Sendable, Equatable {
    case query([(String, String)])
    case url(String)

    package static func == (a: NextPage, b: NextPage) -> Bool {
        switch (a, b) {
        case (.url(let x), .url(let y)): x == y
        case (.query(let x), .query(let y)): x.map { "\($0.0)=\($0.1)" } == y.map { "\($0.0)=\($0.1)" }
        default: false
        }
    }
}

/// RFC 8288 `Link` header values.
package enum LinkHeader {
    /// The target of the first link whose `rel` includes `rel` (relation types compare case-insensitively,
    /// `rel` may list several), across all the header's values.
    package static func target(rel: String, in values: [String]) -> String? {
        for value in values {
            for link in links(value) where link.rels.contains(rel.lowercased()) { return link.target }
        }
        return nil
    }

    /// Each `<target>; param=value; ...` of one header value; commas inside `<>` or quotes do not split.
    static func links(_ value: String) -> [(target: String, rels: [String])] {
        var result: [(String, [String])] = []
        var rest = Substring(value)
        while let open = rest.firstIndex(of: "<") {
            guard let close = rest[open...].firstIndex(of: ">") else { break }
            let target = String(rest[rest.index(after: open)..<close])
            rest = rest[rest.index(after: close)...]
            // The parameters run to the next comma outside quotes.
            var params = ""
            var quoted = false
            var index = rest.startIndex
            while index < rest.endIndex {
                let c = rest[index]
                if c == "\"" { quoted.toggle() }
                if c == ",", !quoted { break }
                params.append(c)
                index = rest.index(after: index)
            }
            rest = index < rest.endIndex ? rest[rest.index(after: index)...] : ""
            var rels: [String] = []
            for param in params.split(separator: ";") {
                let parts = param.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2, parts[0].lowercased() == "rel" else { continue }
                let raw = parts[1].hasPrefix("\"") && parts[1].hasSuffix("\"") && parts[1].count >= 2 ? String(parts[1].dropFirst().dropLast()) : parts[1]
                rels = raw.lowercased().split(separator: " ").map(String.init)
                break
            }
            result.append((target, rels))
        }
        return result
    }
}

/// RFC 6901 JSON pointers.
package enum JSONPointer {
    /// The value at `pointer` ("" is the whole document), or nil.
    package static func value(at pointer: String, in document: JSONValue) -> JSONValue? {
        if pointer.isEmpty { return document }
        guard pointer.hasPrefix("/") else { return nil }
        var current = document
        for raw in pointer.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            let token = raw.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            switch current {
            case .object(let members):
                guard let next = members[token] else { return nil }
                current = next
            case .array(let items):
                guard let n = Int(token), items.indices.contains(n) else { return nil }
                current = items[n]
            default:
                return nil
            }
        }
        return current
    }
}
