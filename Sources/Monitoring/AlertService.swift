package import Foundation
package import Integrations
package import Ledger
package import PortalCore
package import Storage

/// A receiver as the API shows it: its secrets masked.
package struct AlertReceiverView: Sendable, Encodable {
    package var id: String
    package var name: String
    package var kind: String
    /// Masked: Slack and Teams URLs are secrets in themselves.
    package var url: String?
    /// Whether deliveries are signed (Standard Webhooks).
    package var signed: Bool
    package var apiKey: String?
    package var to: [String]?
    package var from: String?
    package var createdAt: String
}

/// An alert as `GET /portal/alerts` shows it.
package struct AlertView: Sendable, Encodable {
    package var fingerprint: String
    package var rule: String
    package var state: String
    package var labels: [String: String]
    package var annotations: [String: String]
    package var value: Double?
    package var activeAt: String
    package var firedAt: String?
    package var resolvedAt: String?
    package var lastNotifiedAt: String?
    /// Whether an active silence matches it (its notifications are held back).
    package var silenced: Bool
}

package struct SilenceView: Sendable, Encodable {
    package var id: String
    package var matchers: JSONValue
    package var startsAt: String
    package var endsAt: String
    package var comment: String
    package var createdBy: String
    package var createdAt: String
}

package struct AlertNotificationView: Sendable, Encodable {
    package var id: String
    package var receiverId: String
    package var fingerprints: [String]
    package var status: String
    package var attempts: Int
    package var delivered: Bool
    package var httpStatus: Int?
    package var error: String?
    package var createdAt: String
}

/// Receivers per organization (secrets sealed by the vault), silences, and the alert listings. Every
/// change is ledgered: `alert.receiver_added`, `alert.receiver_removed`, `alert.silenced`, `alert.unsilenced`.
package struct AlertReceivers: Sendable {
    let database: Database
    let vault: CredentialVault
    let audit: any AuditTrail
    let clock: any WallClock
    let ids: IdentifierGenerator

    package init(database: Database, vault: CredentialVault, audit: any AuditTrail, clock: any WallClock, ids: IdentifierGenerator) {
        self.database = database
        self.vault = vault
        self.audit = audit
        self.clock = clock
        self.ids = ids
    }

    static func context(_ id: UUID) -> String { "alert-receiver:\(id.uuidString.lowercased())" }

    // MARK: Receivers

    /// Creates a receiver from `{name, kind, url, secret, apiKey, to, from}` (201).
    package func create(_ json: JSONValue, by principal: Principal) async throws -> AlertReceiverView {
        try principal.require(.manageIntegrations)
        let input = try Self.parse(json)
        let id = ids.next()
        let now = clock.now()
        var secrets: [String: JSONValue] = ["url": .string(input.url)]
        if let secret = input.signingSecret { secrets["secret"] = .string(secret) }
        if let key = input.apiKey { secrets["apiKey"] = .string(key) }
        var config: [String: JSONValue] = [:]
        if !input.to.isEmpty { config["to"] = .array(input.to.map(JSONValue.string)) }
        if let from = input.from { config["from"] = .string(from) }
        let plain = Data(JSONValue.object(secrets).sortedText.utf8)
        let record = try await database.write { db in
            let sealed = try await vault.seal(plain, organizationID: principal.organizationID, context: Self.context(id), in: db)
            let record = AlertReceiverRecord(
                id: id, organizationID: principal.organizationID, name: input.name, kind: input.kind.rawValue, config: .object(config), sealedSecrets: sealed,
                createdAt: now, updatedAt: now
            )
            do {
                try await AlertStore(db).insert(record)
            } catch where Database.isUniqueViolation(error) {
                throw PortalError(.conflict, "the organization already has a receiver named '\(input.name)'")
            }
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .alertReceiverAdded, actor: principal.tokenID.uuidString.lowercased(),
                data: ["receiverId": .string(id.uuidString.lowercased()), "name": .string(input.name), "kind": .string(input.kind.rawValue), "signed": input.signingSecret != nil ? 1 : 0],
                time: now
            ), in: db)
            return record
        }
        audit.wake()
        return Self.view(record, receiver: input)
    }

    package func list(by principal: Principal) async throws -> [AlertReceiverView] {
        try principal.require(.readIntegrations)
        let records = try await database.read { db in try await AlertStore(db).receivers(organizationID: principal.organizationID) }
        var views: [AlertReceiverView] = []
        for record in records { views.append(Self.view(record, receiver: try await open(record))) }
        return views
    }

    package func delete(id: UUID, by principal: Principal) async throws {
        try principal.require(.manageIntegrations)
        let now = clock.now()
        try await database.write { db in
            guard try await AlertStore(db).deleteReceiver(id: id, organizationID: principal.organizationID) else { throw PortalError.notFound("receiver") }
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .alertReceiverRemoved, actor: principal.tokenID.uuidString.lowercased(),
                data: ["receiverId": .string(id.uuidString.lowercased())], time: now
            ), in: db)
        }
        audit.wake()
    }

    /// The organization's receivers with their secrets opened (for the notifier only).
    package func opened(organizationID: UUID) async throws -> [AlertReceiver] {
        let records = try await database.read { db in try await AlertStore(db).receivers(organizationID: organizationID) }
        var out: [AlertReceiver] = []
        for record in records { out.append(try await open(record)) }
        return out
    }

    func open(_ record: AlertReceiverRecord) async throws -> AlertReceiver {
        let plain = try await database.read { db in
            try await vault.open(record.sealedSecrets, organizationID: record.organizationID, context: Self.context(record.id), in: db)
        }
        let secrets = (try JSONValue.parse(plain)).objectValue ?? [:]
        let config = record.config.objectValue ?? [:]
        return AlertReceiver(
            id: record.id, organizationID: record.organizationID, name: record.name, kind: AlertReceiver.Kind(rawValue: record.kind) ?? .webhook,
            url: secrets["url"]?.stringValue ?? "", signingSecret: secrets["secret"]?.stringValue, apiKey: secrets["apiKey"]?.stringValue,
            to: config["to"]?.arrayValue?.compactMap(\.stringValue) ?? [], from: config["from"]?.stringValue
        )
    }

    static func view(_ record: AlertReceiverRecord, receiver: AlertReceiver) -> AlertReceiverView {
        AlertReceiverView(
            id: record.id.uuidString.lowercased(), name: record.name, kind: record.kind, url: receiver.url.isEmpty ? nil : Masking.mask(receiver.url),
            signed: receiver.signingSecret != nil, apiKey: receiver.apiKey.map(Masking.mask), to: receiver.to.isEmpty ? nil : receiver.to, from: receiver.from,
            createdAt: Timestamp.rfc3339(record.createdAt)
        )
    }

    /// Checks a receiver body; every problem is named by its pointer.
    static func parse(_ json: JSONValue) throws(PortalError) -> AlertReceiver {
        guard case .object(let m) = json else { throw PortalError.validation([.init(pointer: "", message: "must be an object")]) }
        var errors: [PortalError.FieldError] = []
        for key in m.keys.sorted() where !["name", "kind", "url", "secret", "apiKey", "to", "from"].contains(key) {
            errors.append(.init(pointer: "/\(key)", message: "unknown field"))
        }
        let name = m["name"]?.stringValue ?? ""
        if name.isEmpty || name.count > 100 || !name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) {
            errors.append(.init(pointer: "/name", message: "must be 1 to 100 letters, digits, '-', '_' or '.'"))
        }
        let kind = m["kind"]?.stringValue.flatMap(AlertReceiver.Kind.init(rawValue:))
        if kind == nil { errors.append(.init(pointer: "/kind", message: "must be one of webhook, slack, teams, sendgrid")) }
        func string(_ key: String) -> String? {
            guard let value = m[key] else { return nil }
            guard let s = value.stringValue, !s.isEmpty else {
                errors.append(.init(pointer: "/\(key)", message: "must be a non-empty string"))
                return nil
            }
            return s
        }
        let url = string("url")
        if let url {
            if let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme?.lowercased() ?? ""), parsed.host != nil {} else {
                errors.append(.init(pointer: "/url", message: "must be an absolute http or https URL"))
            }
        } else if kind != nil, kind != .sendgrid {
            errors.append(.init(pointer: "/url", message: "is required for this kind"))
        }
        let secret = string("secret")
        if let secret {
            if kind != .webhook { errors.append(.init(pointer: "/secret", message: "only webhook receivers sign their deliveries")) }
            if !secret.hasPrefix("whsec_") || Data(base64Encoded: String(secret.dropFirst(6))).map({ $0.count >= 16 }) != true {
                errors.append(.init(pointer: "/secret", message: "must be a Standard Webhooks secret: whsec_ and at least 16 bytes in base64"))
            }
        }
        let apiKey = string("apiKey")
        let from = string("from")
        var to: [String] = []
        if let value = m["to"] {
            if case .array(let items) = value, !items.isEmpty, items.allSatisfy({ $0.stringValue?.contains("@") == true }) {
                to = items.compactMap(\.stringValue)
            } else {
                errors.append(.init(pointer: "/to", message: "must be a non-empty list of email addresses"))
            }
        }
        if kind == .sendgrid {
            if apiKey == nil { errors.append(.init(pointer: "/apiKey", message: "is required for sendgrid")) }
            if to.isEmpty, m["to"] == nil { errors.append(.init(pointer: "/to", message: "is required for sendgrid")) }
            if from?.contains("@") != true { errors.append(.init(pointer: "/from", message: "is required for sendgrid: an email address")) }
        } else {
            if apiKey != nil { errors.append(.init(pointer: "/apiKey", message: "only sendgrid receivers take an API key")) }
            if m["to"] != nil || m["from"] != nil { errors.append(.init(pointer: m["to"] != nil ? "/to" : "/from", message: "only sendgrid receivers send email")) }
        }
        guard errors.isEmpty, let kind else { throw PortalError.validation(errors) }
        return AlertReceiver(id: UUID(), organizationID: UUID(), name: name, kind: kind, url: url ?? "", signingSecret: secret, apiKey: apiKey, to: to, from: from)
    }

    // MARK: Silences

    /// Creates a silence from `{matchers, endsAt | duration, startsAt?, comment}` (201). Capped by `limits`:
    /// matchers per silence and their length (422 naming the field), active silences per organization (422).
    package func silence(_ json: JSONValue, by principal: Principal, limits: SilenceLimits = .standard) async throws -> SilenceView {
        try principal.require(.manageIntegrations)
        guard case .object(let m) = json else { throw PortalError.validation([.init(pointer: "", message: "must be an object")]) }
        var errors: [PortalError.FieldError] = []
        for key in m.keys.sorted() where !["matchers", "startsAt", "endsAt", "duration", "comment"].contains(key) {
            errors.append(.init(pointer: "/\(key)", message: "unknown field"))
        }
        let now = clock.now()
        var matchers: [SilenceMatcher] = []
        switch SilenceMatcher.parse(m["matchers"] ?? .null, limits: limits) {
        case .success(let parsed): matchers = parsed
        case .failure(let error): errors += error.fieldErrors
        }
        var startsAt = now
        if let text = m["startsAt"] {
            if let date = text.stringValue.flatMap(Timestamp.parse) { startsAt = date } else { errors.append(.init(pointer: "/startsAt", message: "must be an RFC 3339 time")) }
        }
        var endsAt: Date?
        if let text = m["endsAt"] {
            if let date = text.stringValue.flatMap(Timestamp.parse) { endsAt = date } else { errors.append(.init(pointer: "/endsAt", message: "must be an RFC 3339 time")) }
        }
        if let text = m["duration"] {
            if let seconds = text.stringValue.flatMap({ try? DurationText.seconds($0, field: "/duration") }) { endsAt = startsAt.addingTimeInterval(seconds) } else {
                errors.append(.init(pointer: "/duration", message: "must be a duration such as 30m, 2h or 1d"))
            }
        }
        if endsAt == nil, m["endsAt"] == nil, m["duration"] == nil { errors.append(.init(pointer: "/endsAt", message: "give endsAt or duration")) }
        if let endsAt, endsAt <= max(now, startsAt) { errors.append(.init(pointer: "/endsAt", message: "must be after the start and in the future")) }
        let comment = m["comment"]?.stringValue ?? ""
        if comment.isEmpty || comment.count > 500 { errors.append(.init(pointer: "/comment", message: "say why, in 1 to 500 characters")) }
        guard errors.isEmpty, let endsAt else { throw PortalError.validation(errors) }
        let matcherJSON: JSONValue = .array(matchers.map { ["name": .string($0.name), "value": .string($0.value), "isRegex": .bool($0.isRegex), "isEqual": .bool($0.isEqual)] })
        let record = AlertSilenceRecord(
            id: ids.next(), organizationID: principal.organizationID, matchers: matcherJSON, startsAt: startsAt, endsAt: endsAt, comment: comment,
            createdBy: principal.tokenID.uuidString.lowercased(), createdAt: now
        )
        try await database.write { db in
            let store = AlertStore(db)
            try await store.lockSilences(organizationID: principal.organizationID)
            let active = try await store.activeSilenceCount(organizationID: principal.organizationID, at: now)
            guard active < limits.activeSilences else {
                throw PortalError.validation([.init(
                    pointer: "", message: "too many silences: the organization has \(active) active, the most allowed is \(limits.activeSilences); end one (DELETE /portal/alerts/silences/{id}) first"
                )])
            }
            try await store.insert(record)
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .alertSilenced, actor: principal.tokenID.uuidString.lowercased(),
                data: [
                    "silenceId": .string(record.id.uuidString.lowercased()), "matchers": .string(matcherJSON.sortedText),
                    "startsAt": .string(Timestamp.rfc3339(startsAt)), "endsAt": .string(Timestamp.rfc3339(endsAt)),
                ],
                time: now
            ), in: db)
        }
        audit.wake()
        return Self.view(record)
    }

    package func silences(by principal: Principal) async throws -> [SilenceView] {
        try principal.require(.readIntegrations)
        return try await database.read { db in try await AlertStore(db).silences(organizationID: principal.organizationID, activeAt: clock.now()) }.map(Self.view)
    }

    /// Ends a silence now.
    package func expire(silenceID: UUID, by principal: Principal) async throws {
        try principal.require(.manageIntegrations)
        let now = clock.now()
        try await database.write { db in
            guard try await AlertStore(db).expireSilence(id: silenceID, organizationID: principal.organizationID, at: now) else { throw PortalError.notFound("silence") }
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .alertUnsilenced, actor: principal.tokenID.uuidString.lowercased(),
                data: ["silenceId": .string(silenceID.uuidString.lowercased())], time: now
            ), in: db)
        }
        audit.wake()
    }

    static func view(_ s: AlertSilenceRecord) -> SilenceView {
        SilenceView(
            id: s.id.uuidString.lowercased(), matchers: s.matchers, startsAt: Timestamp.rfc3339(s.startsAt), endsAt: Timestamp.rfc3339(s.endsAt),
            comment: s.comment, createdBy: s.createdBy, createdAt: Timestamp.rfc3339(s.createdAt)
        )
    }

    // MARK: Listing

    /// Active alerts (pending and firing) and those resolved in the last `recentHours` hours.
    package func alerts(by principal: Principal, recentHours: Int = 24) async throws -> (active: [AlertView], recent: [AlertView]) {
        try principal.require(.readIntegrations)
        let now = clock.now()
        let (states, silences) = try await database.read { db in
            (
                try await AlertStore(db).states(organizationID: principal.organizationID, resolvedSince: now.addingTimeInterval(-Double(recentHours) * 3600)),
                try await AlertStore(db).silences(organizationID: principal.organizationID, activeAt: now)
            )
        }
        let matchers = silences.filter { $0.startsAt <= now }.compactMap { try? SilenceMatcher.parse($0.matchers, limits: nil).get() }
        let views = states.map { s in
            AlertView(
                fingerprint: s.fingerprint, rule: s.rule, state: s.state, labels: s.labels, annotations: s.annotations, value: s.value,
                activeAt: Timestamp.rfc3339(s.activeAt), firedAt: s.firedAt.map(Timestamp.rfc3339), resolvedAt: s.resolvedAt.map(Timestamp.rfc3339),
                lastNotifiedAt: s.lastNotifiedAt.map(Timestamp.rfc3339), silenced: matchers.contains { $0.allSatisfy { $0.matches(s.labels) } }
            )
        }
        return (views.filter { $0.state != "resolved" }, views.filter { $0.state == "resolved" })
    }

    package func notifications(by principal: Principal, limit: Int) async throws -> [AlertNotificationView] {
        try principal.require(.readIntegrations)
        return try await database.read { db in try await AlertStore(db).notifications(organizationID: principal.organizationID, limit: limit) }.map { n in
            AlertNotificationView(
                id: n.id.uuidString.lowercased(), receiverId: n.receiverID.uuidString.lowercased(), fingerprints: n.fingerprint.split(separator: ",").map(String.init),
                status: n.status, attempts: n.attempts, delivered: n.delivered, httpStatus: n.httpStatus, error: n.error, createdAt: Timestamp.rfc3339(n.createdAt)
            )
        }
    }
}
