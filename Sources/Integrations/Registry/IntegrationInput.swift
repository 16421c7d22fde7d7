import Foundation
package import PortalCore
package import Storage

/// A validated integration configuration: the seed's `IntegrationConfig`.
///
/// Parsed from the request's JSON by ``parse(_:)``, which reports every problem at once as a 422 naming
/// the field. Secrets (credential values, the webhook secret) are kept apart so they go only to the vault.
package struct IntegrationInput: Sendable {
    package var name: String
    package var type: IntegrationType
    package var baseURL: String
    package var authMethod: AuthMethod
    package var credentials: [String: String]
    package var config: JSONValue
    package var rateLimits: JSONValue?
    /// The webhook configuration without its secret.
    package var webhookConfig: JSONValue?
    package var webhookSecret: String?
    package var syncConfig: JSONValue?
    /// GDPR Art. 30 processing metadata (``ProcessingRecord``).
    package var processing: JSONValue?

    /// Validates a create body; `definition`: an imported definition (``IntegrationBulk``), which has no
    /// credentials (the names of its credential fields at most) and no webhook endpoint.
    package static func parse(_ body: JSONValue, definition: Bool = false) throws(PortalError) -> IntegrationInput {
        let errors = ValidationErrors()
        var r = JSONObjectReader(body, errors: errors)
        let name = r.string("name", required: true, minLength: 1, maxLength: 255)
        let type = r.enumeration("type", IntegrationType.self, required: true)
        let baseURL = IntegrationFields.baseURL(&r)
        let authMethod = r.enumeration("authMethod", AuthMethod.self, required: true)
        var credentials: [String: String]?
        if definition {
            _ = r.strings("credentialFields", maxLength: 100)
        } else {
            credentials = IntegrationFields.credentials(r.value("credentials", required: true), pointer: r.pointer("credentials"), errors: errors)
            if let authMethod, let given = credentials {
                IntegrationFields.checkRequired(given, for: authMethod, pointer: r.pointer("credentials"), errors: errors)
            }
        }
        if credentials == nil { credentials = [:] }
        let config = IntegrationFields.config(&r, whole: true)
        let rateLimits = r.nested("rateLimits") { IntegrationFields.rateLimits(&$0) }
        let webhook = definition ? nil : r.nested("webhookConfig") { IntegrationFields.webhookConfig(&$0, requireSecret: true) }
        let syncConfig = r.nested("syncConfig") { IntegrationFields.syncConfig(&$0) }
        let processing = r.nested("processing") { ProcessingRecord.read(&$0) }
        r.finish()
        try errors.throwIfAny()
        guard let name, let type, let baseURL, let authMethod, let credentials else {
            throw PortalError(.internal, "validation passed with a missing field")
        }
        return IntegrationInput(
            name: name, type: type, baseURL: baseURL, authMethod: authMethod, credentials: credentials,
            config: config ?? [:], rateLimits: rateLimits, webhookConfig: webhook?.config,
            webhookSecret: webhook?.secret, syncConfig: syncConfig, processing: processing
        )
    }
}

/// A change to one optional field of a PATCH body.
package enum FieldChange<Value: Sendable>: Sendable {
    case unchanged
    case set(Value)
    case remove
}

/// A validated PATCH body: only the fields given change.
///
/// `credentials` and `config` are JSON merge patches (RFC 7396): a member set to null is removed, an
/// absent member is kept, and a credential sent back masked (`••••…`) is kept unchanged.
package struct IntegrationPatch: Sendable {
    package var name: String?
    package var type: IntegrationType?
    package var baseURL: String?
    package var authMethod: AuthMethod?
    /// Credential members: a new value, `nil` to remove, or a masked value meaning unchanged.
    package var credentials: [String: String?]?
    package var config: JSONValue?
    package var rateLimits: FieldChange<JSONValue> = .unchanged
    package var webhookConfig: FieldChange<JSONValue> = .unchanged
    /// A new webhook secret (absent or masked: unchanged).
    package var webhookSecret: String?
    package var syncConfig: FieldChange<JSONValue> = .unchanged
    package var processing: FieldChange<JSONValue> = .unchanged
    package var status: IntegrationStatus?

    /// A patch that changes nothing (bulk operations set one field of it).
    package static var empty: IntegrationPatch { IntegrationPatch() }

    /// The names of the fields this patch touches, sorted.
    package var fieldNames: [String] {
        var names: [String] = []
        if name != nil { names.append("name") }
        if type != nil { names.append("type") }
        if baseURL != nil { names.append("baseUrl") }
        if authMethod != nil { names.append("authMethod") }
        if credentials != nil { names.append("credentials") }
        if config != nil { names.append("config") }
        if case .unchanged = rateLimits {} else { names.append("rateLimits") }
        if case .unchanged = webhookConfig {} else { names.append("webhookConfig") }
        if case .unchanged = syncConfig {} else { names.append("syncConfig") }
        if case .unchanged = processing {} else { names.append("processing") }
        if status != nil { names.append("status") }
        return names.sorted()
    }

    /// Validates a PATCH body.
    package static func parse(_ body: JSONValue) throws(PortalError) -> IntegrationPatch {
        let errors = ValidationErrors()
        var r = JSONObjectReader(body, errors: errors)
        var patch = IntegrationPatch()
        patch.name = r.string("name", minLength: 1, maxLength: 255)
        patch.type = r.enumeration("type", IntegrationType.self)
        if r.has("baseUrl") { patch.baseURL = IntegrationFields.baseURL(&r) }
        patch.authMethod = r.enumeration("authMethod", AuthMethod.self)
        if let value = r.value("credentials") {
            patch.credentials = IntegrationFields.credentialPatch(value, pointer: r.pointer("credentials"), errors: errors)
        }
        patch.config = IntegrationFields.config(&r, whole: false)
        if let value = r.value("rateLimits") {
            if value == .null {
                patch.rateLimits = .remove
            } else {
                var nested = JSONObjectReader(value, pointer: r.pointer("rateLimits"), errors: errors)
                if let limits = IntegrationFields.rateLimits(&nested) { patch.rateLimits = .set(limits) }
                nested.finish()
            }
        }
        if let value = r.value("webhookConfig") {
            if value == .null {
                patch.webhookConfig = .remove
            } else {
                var nested = JSONObjectReader(value, pointer: r.pointer("webhookConfig"), errors: errors)
                if let webhook = IntegrationFields.webhookConfig(&nested, requireSecret: false) {
                    patch.webhookConfig = .set(webhook.config)
                    if let secret = webhook.secret, !Masking.isMasked(secret) { patch.webhookSecret = secret }
                }
                nested.finish()
            }
        }
        if let value = r.value("syncConfig") {
            if value == .null {
                patch.syncConfig = .remove
            } else {
                var nested = JSONObjectReader(value, pointer: r.pointer("syncConfig"), errors: errors)
                if let sync = IntegrationFields.syncConfig(&nested) { patch.syncConfig = .set(sync) }
                nested.finish()
            }
        }
        if let value = r.value("processing") {
            if value == .null {
                patch.processing = .remove
            } else {
                var nested = JSONObjectReader(value, pointer: r.pointer("processing"), errors: errors)
                if let record = ProcessingRecord.read(&nested) { patch.processing = .set(record) }
                nested.finish()
            }
        }
        if let status = r.enumeration("status", SettableStatus.self) {
            patch.status = IntegrationStatus(rawValue: status.rawValue)
        }
        r.finish()
        try errors.throwIfAny()
        return patch
    }
}

/// Readers for the fields create and patch share.
enum IntegrationFields {
    static let maxCredentialLength = 16_384

    static func baseURL(_ r: inout JSONObjectReader) -> String? {
        guard let value = r.string("baseUrl", required: true, minLength: 1, maxLength: 500) else { return nil }
        guard let components = URLComponents(string: value),
              let scheme = components.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = components.host, !host.isEmpty
        else {
            r.reject("baseUrl", "must be an absolute http or https URL")
            return nil
        }
        if components.user != nil || components.password != nil {
            r.reject("baseUrl", "must not contain credentials: put them in credentials")
            return nil
        }
        if components.query != nil || components.fragment != nil {
            r.reject("baseUrl", "must not have a query or fragment")
            return nil
        }
        return value
    }

    /// `config` as given: the whole configuration (`whole`, checked member by member against
    /// ``IntegrationConfiguration``), or a merge patch (whose result the registry checks once merged).
    static func config(_ r: inout JSONObjectReader, whole: Bool) -> JSONValue? {
        guard let value = r.value("config") else { return nil }
        guard case .object(let members) = value else {
            r.reject("config", "must be an object, not \(value.kindName)")
            return nil
        }
        // Transforms first, so that a pointer over the limits is named even when it also makes the config too big.
        let before = r.errorList.all.count
        if let transforms = members["transforms"] {
            TransformFields.check(transforms, pointer: "\(r.pointer("config"))/transforms", errors: r.errorList)
        }
        let size = TransformLimits.jsonSize(value)
        if size > TransformLimits.maxConfigBytes {
            r.reject("config", "is \(size) bytes of JSON; a configuration is at most \(TransformLimits.maxConfigBytes) bytes")
        } else if whole {
            IntegrationConfiguration.check(value, pointer: r.pointer("config"), errors: r.errorList)
        }
        return r.errorList.all.count == before ? value : nil
    }

    static func credentials(_ value: JSONValue?, pointer: String, errors: ValidationErrors) -> [String: String]? {
        guard let value else { return nil }
        guard case .object(let members) = value else {
            errors.add(pointer, "must be an object, not \(value.kindName)")
            return nil
        }
        var result: [String: String] = [:]
        for (key, member) in members.sorted(by: { $0.key < $1.key }) {
            let p = "\(pointer)/\(jsonPointerEscape(key))"
            guard checkKey(key, pointer: p, errors: errors) else { continue }
            guard case .string(let s) = member else {
                errors.add(p, "must be a string, not \(member.kindName)")
                continue
            }
            guard !s.isEmpty, s.count <= maxCredentialLength else {
                errors.add(p, "must be 1 to \(maxCredentialLength) characters")
                continue
            }
            if Masking.isMasked(s) {
                errors.add(p, "is a masked value; send the secret itself")
                continue
            }
            if let problem = controlCharacterProblem(s, name: key) {
                errors.add(p, problem)
                continue
            }
            result[key] = s
        }
        return result
    }

    static func credentialPatch(_ value: JSONValue, pointer: String, errors: ValidationErrors) -> [String: String?]? {
        guard case .object(let members) = value else {
            errors.add(pointer, "must be an object, not \(value.kindName)")
            return nil
        }
        var result: [String: String?] = [:]
        for (key, member) in members {
            let p = "\(pointer)/\(jsonPointerEscape(key))"
            guard checkKey(key, pointer: p, errors: errors) else { continue }
            switch member {
            case .null:
                result[key] = .some(nil)
            case .string(let s) where !s.isEmpty && s.count <= maxCredentialLength:
                if let problem = controlCharacterProblem(s, name: key) {
                    errors.add(p, problem)
                } else {
                    result[key] = .some(s)
                }
            case .string:
                errors.add(p, "must be 1 to \(maxCredentialLength) characters")
            default:
                errors.add(p, "must be a string or null, not \(member.kindName)")
            }
        }
        return result
    }

    /// Why a credential value is refused for its control characters, or nil. A value sent in a header
    /// (keys, tokens, secrets) must be one line: a pasted key with a trailing newline would otherwise reach
    /// the HTTP client, whose error text quotes header values. PEM material (`privateKey`, `*Pem`,
    /// `*Certificate`) may hold line breaks and tabs, nothing else.
    static func controlCharacterProblem(_ value: String, name: String) -> String? {
        let multiLine = name == "privateKey" || name.hasSuffix("Pem") || name.hasSuffix("Certificate")
        for scalar in value.unicodeScalars where scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}" {
            if multiLine, scalar == "\n" || scalar == "\r" || scalar == "\t" { continue }
            return "must not contain control characters or line breaks (U+\(String(scalar.value, radix: 16, uppercase: true))); check for a trailing newline"
        }
        return nil
    }

    private static func checkKey(_ key: String, pointer: String, errors: ValidationErrors) -> Bool {
        guard !key.isEmpty, key.count <= 100, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else {
            errors.add(pointer, "a credential name is 1 to 100 ASCII letters, digits, '_' or '-'")
            return false
        }
        return true
    }

    static func checkRequired(_ credentials: [String: String], for method: AuthMethod, pointer: String, errors: ValidationErrors) {
        let (all, anyOf) = method.requiredCredentials
        for key in all where credentials[key] == nil {
            errors.add("\(pointer)/\(key)", "is required for authMethod '\(method.rawValue)'")
        }
        if !anyOf.isEmpty, !anyOf.contains(where: { credentials[$0] != nil }) {
            errors.add(pointer, "needs one of \(anyOf.joined(separator: ", ")) for authMethod '\(method.rawValue)'")
        }
        if method == .custom, credentials.isEmpty {
            errors.add(pointer, "needs at least one field for authMethod 'custom'")
        }
    }

    /// DESIGN section 7's `RateLimitConfig`: `{requestsPerSecond, requestsPerMinute, burst, endpoints}`.
    static func rateLimits(_ r: inout JSONObjectReader) -> JSONValue? {
        var result = limitFields(&r)
        if let endpoints = r.object("endpoints") {
            var out: [String: JSONValue] = [:]
            for (template, value) in endpoints.sorted(by: { $0.key < $1.key }) {
                let p = "\(r.pointer("endpoints"))/\(jsonPointerEscape(template))"
                guard template.hasPrefix("/"), template.count <= 500 else {
                    r.reject("endpoints", "keys are endpoint templates starting with '/' (\(template.prefix(40)))")
                    continue
                }
                var nested = JSONObjectReader(value, pointer: p, errors: errorsOf(r))
                out[template] = .object(limitFields(&nested))
                nested.finish()
            }
            result["endpoints"] = .object(out)
        }
        return .object(result)
    }

    private static func limitFields(_ r: inout JSONObjectReader) -> [String: JSONValue] {
        var result: [String: JSONValue] = [:]
        if let v = r.number("requestsPerSecond", in: 0.001...1_000_000) { result["requestsPerSecond"] = number(v) }
        if let v = r.number("requestsPerMinute", in: 0.001...60_000_000) { result["requestsPerMinute"] = number(v) }
        if let v = r.integer("burst", in: 1...1_000_000) { result["burst"] = .int(v) }
        return result
    }

    /// The seed's `WebhookConfig` (plus `scheme`); the secret is returned separately.
    static func webhookConfig(_ r: inout JSONObjectReader, requireSecret: Bool) -> (config: JSONValue, secret: String?)? {
        var result: [String: JSONValue] = [:]
        _ = r.string("integrationId", maxLength: 64)
        if let endpoint = r.string("endpoint", required: requireSecret, minLength: 1, maxLength: 200) {
            let name = endpoint.hasPrefix("/webhooks/") ? String(endpoint.dropFirst("/webhooks/".count)) : endpoint
            if name.isEmpty || name.count > 100 || !name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") }) {
                r.reject("endpoint", "must be /webhooks/<name> with a name of lowercase letters, digits, '-' or '_'")
            } else {
                result["endpoint"] = .string("/webhooks/" + name)
            }
        }
        if let events = r.strings("events", maxLength: 100) { result["events"] = .array(events.map(JSONValue.string)) }
        let secret = r.string("secret", required: requireSecret, minLength: 1, maxLength: 4096)
        if let header = r.string("signatureHeader", minLength: 1, maxLength: 100) { result["signatureHeader"] = .string(header) }
        if let method = r.enumeration("signatureMethod", SignatureMethod.self) { result["signatureMethod"] = .string(method.rawValue) }
        if let scheme = r.string("scheme", minLength: 1, maxLength: 50) { result["scheme"] = .string(scheme) }
        if let policy = r.nested("retryPolicy", WebhookRetryPolicyFields.read) { result["retryPolicy"] = policy }
        return (.object(result), secret)
    }

    /// The sync configuration; entity definitions are kept as given (the sync engine checks them).
    static func syncConfig(_ r: inout JSONObjectReader) -> JSONValue? {
        var result: [String: JSONValue] = [:]
        if let syncType = r.enumeration("syncType", SyncType.self) { result["syncType"] = .string(syncType.rawValue) }
        if let entities = r.value("entities") {
            switch entities {
            case .object, .array: result["entities"] = entities
            default: r.reject("entities", "must be an object or an array, not \(entities.kindName)")
            }
        }
        if let schedule = r.nested("schedule", { s -> JSONValue? in
            guard let seconds = s.integer("intervalSeconds", required: true, in: 60...31_536_000) else { return nil }
            return ["intervalSeconds": .int(seconds)]
        }) {
            result["schedule"] = schedule
        }
        if let resolution = r.nested("conflictResolution", { c -> JSONValue? in
            var out: [String: JSONValue] = [:]
            if let strategy = c.enumeration("strategy", ConflictStrategy.self, required: true) {
                out["strategy"] = .string(strategy.rawValue)
            }
            if let rules = c.value("rules") {
                guard case .array = rules else {
                    c.reject("rules", "must be an array, not \(rules.kindName)")
                    return .object(out)
                }
                out["rules"] = rules
            }
            return .object(out)
        }) {
            result["conflictResolution"] = resolution
        }
        return .object(result)
    }

    private static func number(_ d: Double) -> JSONValue {
        d.rounded() == d && abs(d) < 9e15 ? .int(Int64(d)) : .double(d)
    }

    private static func errorsOf(_ r: JSONObjectReader) -> ValidationErrors { r.errorList }
}

/// The seed's webhook `RetryPolicy` `{maxRetries, baseDelay, maxDelay}` (milliseconds), as the integration's
/// `webhookConfig` and the webhook endpoints read it.
package enum WebhookRetryPolicyFields {
    package static func read(_ p: inout JSONObjectReader) -> JSONValue? {
        var out: [String: JSONValue] = [:]
        if let v = p.integer("maxRetries", in: 0...100) { out["maxRetries"] = .int(v) }
        if let v = p.integer("baseDelay", in: 0...86_400_000) { out["baseDelay"] = .int(v) }
        if let v = p.integer("maxDelay", in: 0...86_400_000) { out["maxDelay"] = .int(v) }
        return .object(out)
    }
}

/// The caps on `config.transforms`: checked when a configuration is written, and the pointer
/// depth again by the gateway for configurations stored before the caps.
package enum TransformLimits {
    /// Reference tokens in one JSON Pointer (`/a/b/c` has 3).
    package static let maxPointerTokens = 32
    /// UTF-8 bytes in one JSON Pointer.
    package static let maxPointerBytes = 1_024
    /// Rules in one transforms configuration: header sets and removals, renames, sets, removals and picks.
    package static let maxRules = 200
    /// Bytes of `config.transforms` as JSON.
    package static let maxTransformsBytes = 65_536
    /// Bytes of a whole integration `config` as JSON.
    package static let maxConfigBytes = 262_144
    /// Characters in a header name a transform sets or removes.
    package static let maxHeaderNameLength = 100
    /// Characters in a header value a transform sets.
    package static let maxHeaderValueLength = 4_096

    /// The size of `value` as compact JSON, in bytes.
    package static func jsonSize(_ value: JSONValue) -> Int {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return (try? encoder.encode(value))?.count ?? 0
    }

    /// The number of reference tokens in `pointer`, counting no further than `limit + 1`.
    package static func tokenCount(_ pointer: String, limit: Int = maxPointerTokens) -> Int {
        var count = 0
        for byte in pointer.utf8 where byte == UInt8(ascii: "/") {
            count += 1
            if count > limit { break }
        }
        return count
    }

    /// Why `pointer` is not a usable RFC 6901 JSON Pointer within the caps, or nil. Never quotes the pointer.
    package static func pointerProblem(_ pointer: String) -> String? {
        let tokens = tokenCount(pointer)
        if tokens > maxPointerTokens {
            return "is a JSON Pointer of more than \(maxPointerTokens) tokens; at most \(maxPointerTokens) are allowed"
        }
        let bytes = pointer.utf8
        if bytes.count > maxPointerBytes {
            return "is a JSON Pointer of \(bytes.count) bytes; at most \(maxPointerBytes) are allowed"
        }
        if let first = bytes.first, first != UInt8(ascii: "/") {
            return "must be a JSON Pointer (RFC 6901): empty or starting with '/'"
        }
        var afterTilde = false
        for byte in bytes {
            if afterTilde {
                guard byte == UInt8(ascii: "0") || byte == UInt8(ascii: "1") else {
                    return "has a '~' not followed by 0 or 1 (write ~0 for '~' and ~1 for '/')"
                }
                afterTilde = false
            } else {
                afterTilde = byte == UInt8(ascii: "~")
            }
        }
        if afterTilde { return "ends with a '~' (write ~0 for '~' and ~1 for '/')" }
        return nil
    }
}

/// Validation of `config.transforms` (the shape the gateway's `Transforms` reads): known members only,
/// JSON Pointers within ``TransformLimits``, header names and values fit for HTTP, and bounded size.
///
/// Nulls are accepted wherever a member may be absent, so that the same check serves a create body and a
/// JSON merge patch (where null removes the member).
enum TransformFields {
    /// The most problems one check reports, so that a huge configuration cannot make a huge 422.
    static let maxReported = 50

    /// Adds to `errors` every problem of `value`, the `transforms` member at `pointer`.
    static func check(_ value: JSONValue, pointer: String, errors: ValidationErrors) {
        if value == .null { return }
        var check = Check(errors: errors)
        var reader = JSONObjectReader(value, pointer: pointer, errors: check.sink)
        guard case .object = value else { check.flush(); return }
        for side in ["request", "response"] {
            if let v = reader.value(side), v != .null { check.side(v, pointer: reader.pointer(side)) }
        }
        reader.finish()
        if check.rules > TransformLimits.maxRules {
            check.add(pointer, "has \(check.rules) rules; a transforms configuration has at most \(TransformLimits.maxRules)")
        }
        let size = TransformLimits.jsonSize(value)
        if size > TransformLimits.maxTransformsBytes {
            check.add(pointer, "is \(size) bytes of JSON; transforms are at most \(TransformLimits.maxTransformsBytes) bytes")
        }
        check.flush()
    }

    /// One check's state: the rule count and the problems found, passed on (up to ``maxReported``) by ``flush()``.
    private struct Check {
        let errors: ValidationErrors
        /// Where the nested readers write; copied to `errors` with the cap applied.
        let sink = ValidationErrors()
        var rules = 0

        init(errors: ValidationErrors) { self.errors = errors }

        func add(_ pointer: String, _ message: String) { sink.add(pointer, message) }

        /// Copies the problems found to the caller's list, at most ``TransformFields/maxReported`` of them.
        func flush() {
            for error in sink.all.prefix(TransformFields.maxReported) { errors.add(error.pointer, error.message) }
            if sink.all.count > TransformFields.maxReported {
                errors.add(sink.all[TransformFields.maxReported].pointer, "and \(sink.all.count - TransformFields.maxReported) more problems in the transforms, not listed")
            }
        }

        /// `request` or `response`: `{headers: {set, remove}, body: {rename, set, remove, pick}}`.
        mutating func side(_ value: JSONValue, pointer: String) {
            var r = JSONObjectReader(value, pointer: pointer, errors: sink)
            if let headers = r.value("headers"), headers != .null {
                var h = JSONObjectReader(headers, pointer: r.pointer("headers"), errors: sink)
                if let set = h.value("set"), set != .null {
                    members(set, pointer: h.pointer("set")) { name, member, p in
                        if let problem = Self.headerNameProblem(name) { return (p, problem) }
                        switch member {
                        case .null: return nil
                        case .string(let s) where s.count <= TransformLimits.maxHeaderValueLength:
                            let control = s.unicodeScalars.contains { $0.properties.generalCategory == .control && $0 != "\t" }
                            return control ? (p, "must not contain control characters or line breaks") : nil
                        case .string: return (p, "must be at most \(TransformLimits.maxHeaderValueLength) characters")
                        default: return (p, "must be a string or null, not \(member.kindName)")
                        }
                    }
                }
                if let remove = h.value("remove"), remove != .null {
                    items(remove, pointer: h.pointer("remove")) { Self.headerNameProblem($0) }
                }
                h.finish()
            }
            if let body = r.value("body"), body != .null {
                var b = JSONObjectReader(body, pointer: r.pointer("body"), errors: sink)
                if let rename = b.value("rename"), rename != .null {
                    members(rename, pointer: b.pointer("rename")) { from, to, p in
                        if let problem = TransformLimits.pointerProblem(from) { return (p, problem) }
                        switch to {
                        case .null: return nil
                        case .string(let target): return TransformLimits.pointerProblem(target).map { (p, $0) }
                        default: return (p, "must be a JSON Pointer string or null, not \(to.kindName)")
                        }
                    }
                }
                if let set = b.value("set"), set != .null {
                    members(set, pointer: b.pointer("set")) { target, _, p in TransformLimits.pointerProblem(target).map { (p, $0) } }
                }
                for key in ["remove", "pick"] {
                    if let list = b.value(key), list != .null { items(list, pointer: b.pointer(key)) { TransformLimits.pointerProblem($0) } }
                }
                b.finish()
            }
            r.finish()
        }

        /// Checks each member of the object `value` (one rule each). A member name too long to quote in a
        /// pointer is reported against the object itself.
        private mutating func members(_ value: JSONValue, pointer: String, _ problem: (String, JSONValue, String) -> (String, String)?) {
            guard case .object(let members) = value else {
                add(pointer, "must be an object, not \(value.kindName)")
                return
            }
            rules += members.count
            for (name, member) in members.sorted(by: { $0.key < $1.key }) {
                let quotable = name.utf8.count <= TransformLimits.maxPointerBytes
                let p = quotable ? "\(pointer)/\(jsonPointerEscape(name))" : pointer
                if let (at, message) = problem(name, member, p) {
                    add(at, quotable ? message : "a member name \(message)")
                }
            }
        }

        /// Checks each item of the array of strings `value` (one rule each).
        private mutating func items(_ value: JSONValue, pointer: String, _ problem: (String) -> String?) {
            guard case .array(let items) = value else {
                add(pointer, "must be an array of strings, not \(value.kindName)")
                return
            }
            rules += items.count
            for (i, item) in items.enumerated() {
                guard case .string(let s) = item else {
                    add("\(pointer)/\(i)", "must be a string, not \(item.kindName)")
                    continue
                }
                if let message = problem(s) { add("\(pointer)/\(i)", message) }
            }
        }

        /// Why `name` is not an HTTP header name (an RFC 9110 token of at most 100 characters), or nil.
        private static func headerNameProblem(_ name: String) -> String? {
            let token = name.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || ((byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A) || "!#$%&'*+-.^_`|~".utf8.contains(byte)
            }
            guard !name.isEmpty, name.utf8.count <= TransformLimits.maxHeaderNameLength, token else {
                return "must be a header name: 1 to \(TransformLimits.maxHeaderNameLength) letters, digits or !#$%&'*+-.^_`|~"
            }
            return nil
        }
    }
}
