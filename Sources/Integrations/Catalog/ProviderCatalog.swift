import Foundation
package import PortalCore
package import Storage
import Yams

/// The provider catalog: presets for the seed's named providers and categories, read from
/// `catalog.yaml` (a resource of this module, or a file named by `--catalog` / `PORTAL_CATALOG`).
///
/// A preset carries everything but the credentials and a few parameters (a tenant domain, a bucket):
/// ``expand(_:)`` turns `{"preset": "okta", "parameters": {"domain": "acme.okta.com"}, "credentials": {...}}`
/// into the full body of `POST /portal/integrations`, which then goes through the usual validation.
package struct ProviderCatalog: Sendable {
    package struct Parameter: Sendable {
        package var name: String
        package var label: String
        package var example: String?
    }

    package struct Preset: Sendable {
        package var id: String
        package var name: String
        package var type: IntegrationType
        package var category: String
        package var authMethod: AuthMethod
        package var parameters: [Parameter]
        /// Credential field names the user supplies.
        package var credentialNames: [String]
        /// The preset as the catalog file gives it (the API answers this).
        package var document: JSONValue
    }

    package let providers: [Preset]

    /// Parameter values are substituted into URLs, so they may hold only these characters.
    static let parameterCharacters = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@")

    /// The catalog shipped with the portal.
    package static func builtIn() throws(PortalError) -> ProviderCatalog {
        guard let url = Bundle.module.url(forResource: "catalog", withExtension: "yaml"),
              let data = try? Data(contentsOf: url)
        else { throw PortalError(.internal, "the built-in provider catalog is missing from the build") }
        return try ProviderCatalog(yaml: String(decoding: data, as: UTF8.self), source: "catalog.yaml")
    }

    /// A catalog file: the built-in one, or an organization's own at `path`.
    package static func load(path: String?) throws(PortalError) -> ProviderCatalog {
        guard let path, !path.isEmpty else { return try builtIn() }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PortalError(.configuration, "cannot read the provider catalog at \(path)")
        }
        return try ProviderCatalog(yaml: String(decoding: data, as: UTF8.self), source: path)
    }

    /// Parses and checks a catalog: every preset names a known type and auth method, its parameters are
    /// declared, and the credentials it lists satisfy its auth method.
    package init(yaml: String, source: String = "catalog") throws(PortalError) {
        let root = try YAMLDocument.parse(yaml, source: source)
        guard case .int(1)? = root.objectValue?["version"], case .array(let entries)? = root.objectValue?["providers"] else {
            throw PortalError(.configuration, "\(source) must have version: 1 and a providers list")
        }
        var presets: [Preset] = []
        var seen = Set<String>()
        for (index, entry) in entries.enumerated() {
            presets.append(try Self.preset(entry, at: "\(source): providers[\(index)]"))
            guard seen.insert(presets[presets.count - 1].id).inserted else {
                throw PortalError(.configuration, "\(source): the preset id '\(presets[presets.count - 1].id)' appears twice")
            }
        }
        providers = presets
    }

    package func preset(_ id: String) -> Preset? { providers.first { $0.id == id } }

    private static func preset(_ entry: JSONValue, at place: String) throws(PortalError) -> Preset {
        guard let m = entry.objectValue else { throw PortalError(.configuration, "\(place) is not a mapping") }
        func string(_ key: String) throws(PortalError) -> String {
            guard let value = m[key]?.stringValue, !value.isEmpty else { throw PortalError(.configuration, "\(place) has no \(key)") }
            return value
        }
        let id = try string("id")
        guard id.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }) else {
            throw PortalError(.configuration, "\(place): the id '\(id)' must be lowercase letters, digits and '-'")
        }
        guard let type = IntegrationType(rawValue: try string("type")) else { throw PortalError(.configuration, "\(place) (\(id)) has an unknown type") }
        guard let method = AuthMethod(rawValue: try string("authMethod")) else { throw PortalError(.configuration, "\(place) (\(id)) has an unknown authMethod") }
        let parameters = try (m["parameters"]?.arrayValue ?? []).map { (p: JSONValue) throws(PortalError) -> Parameter in
            guard let name = p.objectValue?["name"]?.stringValue, let label = p.objectValue?["label"]?.stringValue else {
                throw PortalError(.configuration, "\(place) (\(id)): a parameter needs a name and a label")
            }
            return Parameter(name: name, label: label, example: p.objectValue?["example"]?.stringValue)
        }
        let credentialNames = (m["credentials"]?.arrayValue ?? []).compactMap { $0.objectValue?["name"]?.stringValue }
        let placeholders = Set(parameters.map(\.name))
        for key in ["baseUrl", "config", "testEndpoint"] {
            for name in Self.placeholders(in: m[key] ?? .null) where !placeholders.contains(name) {
                // Credential placeholders of custom header templates are filled at call time, not here.
                guard method == .custom, credentialNames.contains(name) else {
                    throw PortalError(.configuration, "\(place) (\(id)): {{\(name)}} in \(key) is not a declared parameter")
                }
            }
        }
        _ = try string("baseUrl")
        _ = try string("name")
        let sample = Dictionary(uniqueKeysWithValues: credentialNames.map { ($0, "x") })
        let errors = ValidationErrors()
        IntegrationFields.checkRequired(sample, for: method, pointer: "/credentials", errors: errors)
        if !errors.all.isEmpty { throw PortalError(.configuration, "\(place) (\(id)): its credentials do not satisfy authMethod \(method.rawValue)") }
        return Preset(
            id: id, name: try string("name"), type: type, category: try string("category"), authMethod: method, parameters: parameters,
            credentialNames: credentialNames, document: entry
        )
    }

    // MARK: Expanding a create body

    /// The full create body for a body naming a `preset`; a body without one is returned unchanged.
    /// Fields given in the body win over the preset's (`config` is merged, RFC 7396); the preset's id is
    /// kept in `config.preset`. Unknown presets, missing parameters and missing credentials are 422s that
    /// name the field.
    package func expand(_ body: JSONValue) throws(PortalError) -> JSONValue {
        guard case .object(var m) = body, let presetValue = m["preset"] else { return body }
        guard let id = presetValue.stringValue, let preset = preset(id) else {
            throw PortalError(.validationFailed, "unknown preset", fieldErrors: [.init(pointer: "/preset", message: "is not in the catalog (GET /portal/catalog lists the presets)")])
        }
        var errors: [PortalError.FieldError] = []
        var values: [String: String] = [:]
        let given = m["parameters"]?.objectValue ?? [:]
        if let parameters = m["parameters"], parameters.objectValue == nil { errors.append(.init(pointer: "/parameters", message: "must be an object")) }
        for name in given.keys.sorted() where !preset.parameters.contains(where: { $0.name == name }) {
            errors.append(.init(pointer: "/parameters/\(jsonPointerEscape(name))", message: "is not a parameter of the preset '\(id)'"))
        }
        for parameter in preset.parameters {
            let pointer = "/parameters/\(jsonPointerEscape(parameter.name))"
            guard let value = given[parameter.name]?.stringValue, !value.isEmpty else {
                errors.append(.init(pointer: pointer, message: "is required: \(parameter.label)\(parameter.example.map { ", for example \($0)" } ?? "")"))
                continue
            }
            guard value.count <= 253, value.allSatisfy({ Self.parameterCharacters.contains($0) }) else {
                errors.append(.init(pointer: pointer, message: "may hold only letters, digits, '.', '-', '_' and '@'"))
                continue
            }
            values[parameter.name] = value
        }
        let credentials = m["credentials"]?.objectValue ?? [:]
        for name in preset.credentialNames where credentials[name] == nil && m["credentials"]?.objectValue != nil {
            errors.append(.init(pointer: "/credentials/\(jsonPointerEscape(name))", message: "is required by the preset '\(id)'"))
        }
        guard errors.isEmpty else { throw PortalError.validation(errors) }

        let document = Self.substitute(preset.document, values)
        let p = document.objectValue ?? [:]
        m["preset"] = nil
        m["parameters"] = nil
        if m["name"] == nil { m["name"] = p["name"] }
        if m["type"] == nil { m["type"] = p["type"] }
        if m["authMethod"] == nil { m["authMethod"] = p["authMethod"] }
        if m["baseUrl"] == nil { m["baseUrl"] = p["baseUrl"] }
        if m["rateLimits"] == nil, let limits = p["rateLimits"], limits != .null { m["rateLimits"] = limits }
        var config = p["config"]?.objectValue ?? [:]
        if let test = p["testEndpoint"]?.stringValue { config["testEndpoint"] = .string(test) }
        if let endpoints = p["endpoints"], endpoints != .null { config["endpoints"] = endpoints }
        config["preset"] = .string(id)
        if let overrides = m["config"], case .object = overrides {
            m["config"] = JSONValue.object(config).merging(patch: overrides)
        } else if m["config"] == nil {
            m["config"] = .object(config)
        }
        if case .object(var webhook)? = m["webhookConfig"], let scheme = p["webhook"]?.objectValue?["scheme"], webhook["scheme"] == nil {
            webhook["scheme"] = scheme
            m["webhookConfig"] = .object(webhook)
        }
        return .object(m)
    }

    /// `{{name}}` placeholders anywhere in a value's strings.
    static func placeholders(in value: JSONValue) -> Set<String> {
        switch value {
        case .string(let s):
            var names = Set<String>()
            var rest = Substring(s)
            while let open = rest.range(of: "{{"), let close = rest[open.upperBound...].range(of: "}}") {
                names.insert(String(rest[open.upperBound..<close.lowerBound]))
                rest = rest[close.upperBound...]
            }
            return names
        case .array(let items): return items.reduce(into: Set<String>()) { $0.formUnion(placeholders(in: $1)) }
        case .object(let members): return members.values.reduce(into: Set<String>()) { $0.formUnion(placeholders(in: $1)) }
        default: return []
        }
    }

    /// Replaces `{{name}}` by the parameter's value in every string (other placeholders stay).
    static func substitute(_ value: JSONValue, _ values: [String: String]) -> JSONValue {
        switch value {
        case .string(var s):
            for (name, replacement) in values { s = s.replacingOccurrences(of: "{{\(name)}}", with: replacement) }
            return .string(s)
        case .array(let items): return .array(items.map { substitute($0, values) })
        case .object(let members): return .object(members.mapValues { substitute($0, values) })
        default: return value
        }
    }

    // MARK: YAML

    /// The most nodes a YAML document may expand to, and the deepest nesting: anchors and aliases let a
    /// document of a few hundred bytes stand for billions of nodes (the "billion laughs"), and a document read
    /// from a request must not make the server build them.
    static let maxNodes = 200_000
    static let maxDepth = 64

    /// A YAML node as JSON, with YAML 1.1 core-schema scalars (int, float, bool, null) typed; a document past
    /// ``maxNodes`` or ``maxDepth`` is refused.
    static func json(_ node: Node) throws -> JSONValue {
        var budget = maxNodes
        return try json(node, budget: &budget, depth: 0)
    }

    private static func json(_ node: Node, budget: inout Int, depth: Int) throws -> JSONValue {
        budget -= 1
        guard budget >= 0, depth <= maxDepth else {
            throw PortalError(.configuration, "the YAML document expands to more than \(maxNodes) nodes or nests deeper than \(maxDepth) levels")
        }
        switch node {
        case .scalar:
            switch node.tag.rawValue {
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return node.bool.map(JSONValue.bool) ?? .null
            case Tag.Name.int.rawValue: return node.int.map { .int(Int64($0)) } ?? .string(node.string ?? "")
            case Tag.Name.float.rawValue: return node.float.map(JSONValue.double) ?? .string(node.string ?? "")
            default: return .string(node.string ?? "")
            }
        case .mapping(let mapping):
            var members: [String: JSONValue] = [:]
            for (key, value) in mapping {
                guard let name = key.string else { throw PortalError(.configuration, "a mapping key is not a string") }
                members[name] = try json(value, budget: &budget, depth: depth + 1)
            }
            return .object(members)
        case .sequence(let sequence):
            var items: [JSONValue] = []
            for item in sequence { items.append(try json(item, budget: &budget, depth: depth + 1)) }
            return .array(items)
        case .alias:
            throw PortalError(.configuration, "YAML aliases are not supported in the catalog")
        }
    }
}

/// YAML documents (the catalog, alert rules) read as JSON values.
package enum YAMLDocument {
    /// Parses `yaml`; a configuration error names `source` when it is not YAML or is empty.
    package static func parse(_ yaml: String, source: String) throws(PortalError) -> JSONValue {
        do {
            guard let node = try Yams.compose(yaml: yaml) else { throw PortalError(.configuration, "\(source) is empty") }
            return try ProviderCatalog.json(node)
        } catch let error as PortalError {
            throw error
        } catch {
            throw PortalError(.configuration, "\(source) is not valid YAML: \(error)")
        }
    }
}
