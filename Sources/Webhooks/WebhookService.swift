package import Foundation
import Crypto
package import Integrations
package import Ledger
package import Logging
package import PortalCore
package import Storage
import Synchronization

/// The seed's `WebhookService`: endpoints registered per integration, deliveries verified against
/// the raw bytes, stored durably (sealed) with their `webhook.received` entry before the 2xx, replays
/// acknowledged once, and a queue that `WebhookWorkers` drains through the registered handlers.
package final class WebhookService: Sendable {
    package struct Configuration: Sendable {
        /// Largest body accepted, in bytes (larger: 413).
        package var maxBodyBytes: Int
        /// How long an opened endpoint (with its secrets, in memory only) is reused (default 1 s).
        package var endpointCacheSeconds: TimeInterval

        package init(maxBodyBytes: Int = 1 << 20, endpointCacheSeconds: TimeInterval = 1) {
            self.maxBodyBytes = maxBodyBytes
            self.endpointCacheSeconds = endpointCacheSeconds
        }
    }

    let database: Database
    let vault: CredentialVault
    let audit: any AuditTrail
    let registry: IntegrationRegistry
    let clock: any WallClock
    let ids: IdentifierGenerator
    let logger: Logger
    let publicURL: String
    let configuration: Configuration
    /// Told of every receipt, rejection and queue outcome (monitoring).
    let observer: any ActivityObserver
    /// Takes refused deliveries, counted per endpoint, reason and minute; nil: one entry each.
    let rejections: (any WebhookRejectionRecorder)?
    /// Live receive paths (`slug/name`): an unknown path is a 404 without a database query.
    private let paths = Mutex(PathIndex())
    private let opened = Mutex<[String: (endpoint: OpenedEndpoint, at: Date)]>([:])
    private let counters = Mutex(Counters())
    /// Tells the workers that events are waiting.
    let queued: AsyncStream<Void>
    private let queuedContinuation: AsyncStream<Void>.Continuation

    /// Receipts and rejections since start (for monitoring).
    package struct Counters: Sendable, Equatable {
        package var received = 0
        /// Acknowledged and not stored: replays included.
        package var duplicates = 0
        /// Of the duplicates, those found by the body's digest under a new (unsigned) id or none: a captured
        /// delivery of a scheme without a signed timestamp sent again.
        package var replays = 0
        package var rejected: [String: Int] = [:]
    }

    package var counts: Counters { counters.withLock { $0 } }

    struct OpenedEndpoint: Sendable {
        var record: WebhookEndpointRecord
        var slug: String
        var secrets: [String]
        var options: SchemeOptions
        var scheme: WebhookScheme
        /// Where deliveries may come from (empty: anywhere).
        var allowedSources: [IPNetwork] = []
    }

    package init(
        database: Database, vault: CredentialVault, audit: any AuditTrail, registry: IntegrationRegistry, clock: any WallClock = SystemWallClock(),
        ids: IdentifierGenerator = .shared, logger: Logger, publicURL: String, configuration: Configuration = .init(),
        observer: any ActivityObserver = NoActivityObserver(), rejections: (any WebhookRejectionRecorder)? = nil
    ) {
        self.observer = observer
        self.rejections = rejections
        self.database = database
        self.vault = vault
        self.audit = audit
        self.registry = registry
        self.clock = clock
        self.ids = ids
        self.logger = logger
        self.publicURL = publicURL
        self.configuration = configuration
        (queued, queuedContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    // MARK: Endpoints

    /// Registers an endpoint on an integration of the caller's organization (201).
    package func register(integrationID: UUID, input: WebhookEndpointInput, by principal: Principal) async throws -> WebhookEndpointView {
        try principal.require(.manageIntegrations)
        _ = try await registry.get(id: integrationID, organizationID: principal.organizationID)
        guard let name = input.name, let secret = input.secret else { throw PortalError(.internal, "a create body without endpoint or secret passed validation") }
        let scheme = input.scheme ?? .hmac
        try Self.checkSecret(secret, scheme: scheme)
        let now = clock.now()
        let id = ids.next()
        let record = try await database.write { db in
            let sealed = try await vault.seal(try JSONEncoder().encode(EndpointSecrets(current: secret)), organizationID: principal.organizationID, context: VaultContext.webhookEndpoint(id), in: db)
            let record = WebhookEndpointRecord(
                id: id, organizationID: principal.organizationID, integrationID: integrationID, name: name, scheme: scheme.rawValue,
                events: input.events ?? [], config: .object(input.config), sealedSecret: sealed, createdBy: principal.tokenID, createdAt: now, updatedAt: now
            )
            do {
                try await WebhookEndpointStore(db).insert(record)
            } catch where Database.isUniqueViolation(error) {
                throw PortalError(.conflict, "the organization already has a webhook endpoint named '\(name)'")
            }
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .webhookRegistered, actor: principal.tokenID.uuidString.lowercased(), integrationID: integrationID,
                data: ["endpointId": .string(id.uuidString.lowercased()), "endpoint": .string(name), "scheme": .string(scheme.rawValue)], time: now
            ), in: db)
            return record
        }
        audit.wake()
        paths.withLock { $0.add("\(principal.organizationSlug)/\(name)") }
        return view(record, slug: principal.organizationSlug, secrets: EndpointSecrets(current: secret))
    }

    package func list(integrationID: UUID, by principal: Principal) async throws -> [WebhookEndpointView] {
        try principal.require(.readIntegrations)
        _ = try await registry.get(id: integrationID, organizationID: principal.organizationID)
        return try await database.read { db in
            try await WebhookEndpointStore(db).list(organizationID: principal.organizationID, integrationID: integrationID).map {
                view($0, slug: principal.organizationSlug, secrets: nil)
            }
        }
    }

    package func get(integrationID: UUID, endpointID: UUID, by principal: Principal) async throws -> WebhookEndpointView {
        try principal.require(.readIntegrations)
        let record = try await find(integrationID: integrationID, endpointID: endpointID, organizationID: principal.organizationID)
        return view(record, slug: principal.organizationSlug, secrets: nil)
    }

    /// Changes the given fields; a new `secret` replaces the old one at once unless `overlapSeconds` keeps
    /// the old one verifying for that long (a rotation).
    package func update(integrationID: UUID, endpointID: UUID, input: WebhookEndpointInput, overlapSeconds: Int?, by principal: Principal) async throws -> WebhookEndpointView {
        try principal.require(.manageIntegrations)
        let now = clock.now()
        let (record, secrets, oldName) = try await database.write { db -> (WebhookEndpointRecord, EndpointSecrets, String) in
            guard var record = try await WebhookEndpointStore(db).find(id: endpointID, organizationID: principal.organizationID), record.integrationID == integrationID else {
                throw PortalError.notFound("webhook endpoint")
            }
            let oldName = record.name
            var secrets = try await openSecrets(record, in: db)
            if let name = input.name { record.name = name }
            if let scheme = input.scheme { record.scheme = scheme.rawValue }
            if let events = input.events { record.events = events }
            record.config = JSONValue.object(record.config.objectValue ?? [:]).merging(patch: .object(input.config))
            if let secret = input.secret {
                try Self.checkSecret(secret, scheme: WebhookScheme(rawValue: record.scheme) ?? .hmac)
                if let overlapSeconds, overlapSeconds > 0 {
                    secrets.previous = secrets.current
                    secrets.previousUntil = now.addingTimeInterval(TimeInterval(overlapSeconds))
                } else {
                    secrets.previous = nil
                    secrets.previousUntil = nil
                }
                secrets.current = secret
                record.sealedSecret = try await vault.seal(try JSONEncoder().encode(secrets), organizationID: principal.organizationID, context: VaultContext.webhookEndpoint(record.id), in: db)
            }
            record.updatedAt = now
            do {
                try await WebhookEndpointStore(db).update(record)
            } catch where Database.isUniqueViolation(error) {
                throw PortalError(.conflict, "the organization already has a webhook endpoint named '\(record.name)'")
            }
            var data: [String: JSONValue] = ["endpointId": .string(record.id.uuidString.lowercased()), "endpoint": .string(record.name)]
            if input.secret != nil {
                data["secretRotated"] = 1
                if let until = secrets.previousUntil { data["overlapUntil"] = .string(Timestamp.rfc3339(until)) }
            }
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .webhookUpdated, actor: principal.tokenID.uuidString.lowercased(), integrationID: integrationID,
                data: .object(data), time: now
            ), in: db)
            return (record, secrets, oldName)
        }
        audit.wake()
        paths.withLock {
            $0.remove("\(principal.organizationSlug)/\(oldName)")
            $0.add("\(principal.organizationSlug)/\(record.name)")
        }
        forget(slug: principal.organizationSlug, names: [oldName, record.name])
        return view(record, slug: principal.organizationSlug, secrets: secrets)
    }

    package func delete(integrationID: UUID, endpointID: UUID, by principal: Principal) async throws {
        try principal.require(.manageIntegrations)
        let now = clock.now()
        let record = try await database.write { db -> WebhookEndpointRecord in
            guard var record = try await WebhookEndpointStore(db).find(id: endpointID, organizationID: principal.organizationID), record.integrationID == integrationID else {
                throw PortalError.notFound("webhook endpoint")
            }
            record.deletedAt = now
            record.updatedAt = now
            try await WebhookEndpointStore(db).update(record)
            try await audit.record(AuditEvent(
                organizationID: principal.organizationID, type: .webhookDeleted, actor: principal.tokenID.uuidString.lowercased(), integrationID: integrationID,
                data: ["endpointId": .string(record.id.uuidString.lowercased()), "endpoint": .string(record.name)], time: now
            ), in: db)
            return record
        }
        audit.wake()
        paths.withLock { $0.remove("\(principal.organizationSlug)/\(record.name)") }
        forget(slug: principal.organizationSlug, names: [record.name])
    }

    /// Reloads the live receive paths (at start, and periodically for endpoints other instances register).
    package func refreshPaths() async throws {
        let epoch = paths.withLock { $0.beginRefresh() }
        let live = try await database.read { db in try await WebhookEndpointStore(db).livePaths() }
        paths.withLock { $0.finishRefresh(epoch: epoch, live: live) }
    }

    func find(integrationID: UUID, endpointID: UUID, organizationID: UUID) async throws -> WebhookEndpointRecord {
        guard let record = try await database.read({ db in try await WebhookEndpointStore(db).find(id: endpointID, organizationID: organizationID) }),
              record.integrationID == integrationID
        else { throw PortalError.notFound("webhook endpoint") }
        return record
    }

    func openSecrets(_ record: WebhookEndpointRecord, in db: Transaction) async throws -> EndpointSecrets {
        let plaintext = try await vault.open(record.sealedSecret, organizationID: record.organizationID, context: VaultContext.webhookEndpoint(record.id), in: db)
        guard let secrets = try? JSONDecoder().decode(EndpointSecrets.self, from: plaintext) else { throw PortalError(.crypto, "the endpoint's secret does not decode") }
        return secrets
    }

    /// Public keys must parse when the scheme verifies with one.
    static func checkSecret(_ secret: String, scheme: WebhookScheme) throws(PortalError) {
        func refuse(_ message: String) -> PortalError { PortalError.validation([.init(pointer: "/secret", message: message)]) }
        switch scheme {
        case .standardWebhooks:
            let key = secret.hasPrefix("whsec_") ? String(secret.dropFirst(6)) : secret.hasPrefix("whpk_") ? String(secret.dropFirst(5)) : secret
            guard Data(base64Encoded: key) != nil else { throw refuse("a Standard Webhooks secret is whsec_ or whpk_ followed by base64") }
        case .sendgrid:
            let parsed = secret.contains("-----BEGIN") ? (try? P256.Signing.PublicKey(pemRepresentation: secret)) != nil
                : Data(base64Encoded: secret).map { (try? P256.Signing.PublicKey(derRepresentation: $0)) != nil } ?? false
            guard parsed else { throw refuse("SendGrid's verification key is a P-256 public key (base64 DER or PEM)") }
        default:
            break
        }
    }

    func view(_ r: WebhookEndpointRecord, slug: String, secrets: EndpointSecrets?) -> WebhookEndpointView {
        let config = r.config.objectValue ?? [:]
        let tolerance: Int = if case .int(let t)? = config["toleranceSeconds"] { Int(t) } else { 300 }
        return WebhookEndpointView(
            id: r.id.uuidString.lowercased(), integrationId: r.integrationID.uuidString.lowercased(), endpoint: "/webhooks/\(r.name)",
            path: "/webhooks/\(slug)/\(r.name)", url: "\(publicURL)/webhooks/\(slug)/\(r.name)", scheme: r.scheme, events: r.events,
            signatureHeader: config["signatureHeader"]?.stringValue, signatureMethod: config["signatureMethod"]?.stringValue, toleranceSeconds: tolerance,
            retryPolicy: RetryPolicy(config["retryPolicy"]),
            allowedSources: (config["allowedSources"]?.arrayValue ?? []).compactMap(\.stringValue),
            secretRotation: secrets?.previousUntil.map { "the previous secret verifies until \(Timestamp.rfc3339($0))" },
            createdAt: Timestamp.rfc3339(r.createdAt), updatedAt: Timestamp.rfc3339(r.updatedAt)
        )
    }

    // MARK: Receiving

    /// What the receiver answers.
    package struct Answer: Sendable {
        package var status: Int
        package var contentType: String
        package var body: [UInt8]
        /// A refusal, for a problem document.
        package var rejection: WebhookRejection?

        static func json(_ value: JSONValue, status: Int = 200) -> Answer {
            Answer(status: status, contentType: "application/json", body: Array(JSONValue.encodeText(value).utf8))
        }
    }

    /// Runs a sample event, signed with the endpoint's current secret as its provider would, through the
    /// same verification and ingest as a real delivery (the event filter aside): it is stored, recorded and
    /// processed like any other, as type `webhook.test`.
    package func test(integrationID: UUID, endpointID: UUID, by principal: Principal) async throws -> TestResult {
        try principal.require(.manageIntegrations)
        let record = try await find(integrationID: integrationID, endpointID: endpointID, organizationID: principal.organizationID)
        let slug = principal.organizationSlug
        guard let endpoint = try await endpoint(slug: slug, name: record.name), let secret = endpoint.secrets.first else { throw PortalError.notFound("webhook endpoint") }
        let now = clock.now()
        let eventID = "evt_portal_test_" + ids.next().uuidString.lowercased()
        let sample: JSONValue = endpoint.options.secretField == "clientState"
            ? ["value": [["clientState": .string(secret), "changeType": "webhook.test", "resource": "portal/test", "subscriptionId": .string(eventID)]]]
            : ["id": .string(eventID), "type": "webhook.test", "created": .string(Timestamp.rfc3339(now)), "data": ["message": "a test event sent by the portal"]]
        let body = Array(JSONValue.encodeText(sample).utf8)
        var url = "\(publicURL)/webhooks/\(slug)/\(record.name)"
        if endpoint.scheme == .twilio { url += "?bodySHA256=" + Hex.encode(SHA256.hash(data: body)) }
        guard let signed = WebhookSigner.headers(
            scheme: endpoint.scheme, secret: secret, options: endpoint.options, method: "POST", url: url, body: body, eventID: eventID, now: now
        ) else {
            return TestResult(
                success: false, message: "the portal holds only the public key of this endpoint and cannot sign a test event; send one from the provider",
                details: ["scheme": .string(endpoint.scheme.rawValue)]
            )
        }
        let request = InboundWebhook(method: "POST", url: url, headers: signed + [("Content-Type", "application/json")], body: body)
        let answer = try await receive(slug: slug, name: record.name, request, test: true)
        let success = (200..<300).contains(answer.status)
        return TestResult(
            success: success,
            message: success ? "the signed sample event was verified, stored and queued" : "the sample event was refused: \(answer.rejection?.message ?? "HTTP \(answer.status)")",
            details: ["status": .int(Int64(answer.status)), "scheme": .string(endpoint.scheme.rawValue), "providerEventId": .string(eventID)]
        )
    }

    /// Tells this instance's workers that events are waiting.
    package func wakeWorkers() { queuedContinuation.yield() }

    /// Whether `slug/name` is a live endpoint (no database query).
    package func knows(slug: String, name: String) -> Bool { paths.withLock { $0.live.contains("\(slug)/\(name)") } }

    /// Receives one delivery at `/webhooks/{slug}/{name}`: handshake, verification, dedup, durable store.
    package func receive(slug: String, name: String, _ request: InboundWebhook) async throws -> Answer {
        try await receive(slug: slug, name: name, request, test: false)
    }

    /// Whether `slug/name` is a live endpoint. A path this instance does not know may have been registered
    /// on another instance since its last refresh: the database is asked, each unknown path at most once a
    /// second and at most ``PathIndex/lookupsPerSecond`` of them a second, so made-up paths cannot turn into
    /// a query each; a path found is known from then on.
    package func resolves(slug: String, name: String) async throws -> Bool {
        if knows(slug: slug, name: name) { return true }
        let path = "\(slug)/\(name)"
        let now = clock.now()
        guard paths.withLock({ $0.shouldAsk(path, now: now) }) else { return false }
        // Only a lookup that found nothing makes the next second's deliveries 404 without asking: a delivery
        // beside one whose lookup is still running asks too, and a lookup that failed (the database
        // restarting) is thrown (503) and remembered for nothing.
        guard try await endpoint(slug: slug, name: name) != nil else {
            paths.withLock { $0.notFound(path, now: now) }
            return false
        }
        paths.withLock { $0.add(path) }
        return true
    }

    func receive(slug: String, name: String, _ request: InboundWebhook, test: Bool) async throws -> Answer {
        guard try await resolves(slug: slug, name: name), let endpoint = try await endpoint(slug: slug, name: name) else {
            throw PortalError.notFound("webhook endpoint")
        }
        let now = clock.now()
        // The endpoint's allow-list first: a source it does not name gets nothing, not even a handshake.
        if !test, !endpoint.allowedSources.isEmpty,
           !(request.source.flatMap(IPAddress.init).map { address in endpoint.allowedSources.contains { $0.contains(address) } } ?? false) {
            return try await reject(WebhookRejection(.sourceNotAllowed, "the delivery's source address is not on the endpoint's allow-list"), endpoint: endpoint, request: request, at: now)
        }
        if let answer = Self.handshake(request, endpoint: endpoint) { return answer }
        guard request.body.count <= configuration.maxBodyBytes else {
            return try await reject(WebhookRejection(.tooLarge, "the body is larger than \(configuration.maxBodyBytes) bytes"), endpoint: endpoint, request: request, at: now)
        }
        let verified: VerifiedWebhook
        do {
            verified = try WebhookVerifier.verify(request, scheme: endpoint.scheme, secrets: endpoint.secrets, options: endpoint.options, now: now)
        } catch {
            return try await reject(error, endpoint: endpoint, request: request, at: now)
        }
        let json = try? JSONValue.parse(Data(request.body))
        // Slack's URL check is signed like any event and answered with its challenge.
        if endpoint.scheme == .slack, json?.objectValue?["type"] == "url_verification", let challenge = json?.objectValue?["challenge"]?.stringValue {
            return .json(["challenge": .string(challenge)])
        }
        let eventType = verified.eventType ?? Self.eventType(json) ?? "unknown"
        // Whether the signature covers where the type came from: an unsigned header (GitHub's, Shopify's)
        // or a body no signature covers (a shared secret) does not.
        let typeSigned = verified.eventType != nil ? verified.eventTypeSigned : endpoint.scheme.signsBody
        if !test, !endpoint.record.events.isEmpty, !endpoint.record.events.contains(where: { Self.matches(pattern: $0, eventType) }) {
            return try await reject(WebhookRejection(.filteredEvent, "the endpoint does not take events of type '\(eventType.prefix(100))'"), endpoint: endpoint, request: request, at: now)
        }
        let digest = Hex.encode(SHA256.hash(data: request.body))
        let id = ids.next()
        let dedupKey: String
        // Without a signed timestamp a captured delivery verifies forever, under any new id: the body's
        // digest is unique per endpoint (the insert declines a copy, with or without an id).
        let replayDigest = endpoint.scheme.replayable ? digest : nil
        if let eventID = verified.eventID, !eventID.isEmpty {
            // A replay is found when the event is inserted (the sequencer's batch declines it), not by a
            // read per delivery.
            dedupKey = "id:" + String(eventID.prefix(200))
        } else if replayDigest != nil {
            dedupKey = "sha256:\(digest):\(id.uuidString.lowercased())"
        } else {
            // No event id: the same body within the tolerance window is a replay.
            let since = now.addingTimeInterval(-endpoint.options.tolerance)
            let seen = try await database.read { db in
                try await WebhookEventStore(db).hasBody(endpointID: endpoint.record.id, digest: digest, since: since)
            }
            if seen {
                counters.withLock { $0.duplicates += 1 }
                observe(endpoint, .duplicate)
                return .json(["received": true, "duplicate": true])
            }
            dedupKey = "sha256:\(digest):\(id.uuidString.lowercased())"
        }
        let keep = Set(["content-type", "user-agent"] + Self.signatureHeaders(endpoint))
        let headers = JSONValue.object(Dictionary(
            request.headers.filter { keep.contains($0.name.lowercased()) }.map { ($0.name.lowercased(), JSONValue.string(String($0.value.prefix(1000)))) },
            uniquingKeysWith: { first, _ in first }
        ))
        let record = WebhookEventRecord(
            id: id, organizationID: endpoint.record.organizationID, integrationID: endpoint.record.integrationID, endpointID: endpoint.record.id,
            eventType: String(eventType.prefix(100)), payload: [:], signature: Self.signature(request, endpoint).map { String($0.prefix(255)) },
            createdAt: now, providerEventID: verified.eventID.map { String($0.prefix(255)) }, dedupKey: dedupKey, headers: headers, bodyDigest: digest,
            availableAt: now, replayDigest: replayDigest
        )
        var data: [String: JSONValue] = [
            "endpoint": .string(endpoint.record.name), "scheme": .string(endpoint.scheme.rawValue), "eventId": .string(id.uuidString.lowercased()),
            "eventType": .string(String(eventType.prefix(100))), "bodyDigest": .string(digest),
        ]
        if let providerID = verified.eventID {
            data["providerEventId"] = .string(String(providerID.prefix(200)))
            data["eventIdSigned"] = verified.eventIDSigned ? 1 : 0
        }
        // Ledger entries hold no booleans: 1 signed, 0 not.
        data["typeSigned"] = typeSigned ? 1 : 0
        let event = AuditEvent(
            organizationID: endpoint.record.organizationID, type: .webhookReceived, actor: "provider:\(endpoint.record.name)",
            integrationID: endpoint.record.integrationID, data: .object(data), time: now
        )
        // Sealing here, in parallel with other deliveries, keeps the work out of the sequencer's transaction.
        var row = WebhookEventRow(record: record, body: request.body, vault: vault)
        if let sealed = vault.sealWithKnownKey(Data(request.body), organizationID: record.organizationID, context: VaultContext.webhookEvent(id)) {
            row.record.payload = sealed
            row.body = nil
        }
        guard try await audit.append([event], with: row) else {
            // The acknowledgement names the event already stored, so a provider's retry of a delivery whose
            // first answer it never got maps to the same event.
            let original = try await declined(endpoint, dedupKey: dedupKey, replayDigest: replayDigest, providerEventID: verified.eventID)
            var answer: [String: JSONValue] = ["received": true, "duplicate": true]
            if let original { answer["id"] = .string(original.uuidString.lowercased()) }
            return .json(.object(answer))
        }
        counters.withLock { $0.received += 1 }
        observe(endpoint, .received)
        if (verified.eventID != nil && !verified.eventIDSigned) || (verified.eventType != nil && !verified.eventTypeSigned) {
            var metadata: Logger.Metadata = [
                "portal.organization": "\(endpoint.slug)", "portal.endpoint": "\(endpoint.record.name)", "portal.scheme": "\(endpoint.scheme.rawValue)",
                "portal.event": "\(id.uuidString.lowercased())",
            ]
            var unsigned: [String] = []
            if let providerID = verified.eventID, !verified.eventIDSigned {
                unsigned.append("eventId")
                metadata["portal.provider_event_id"] = "\(Self.printable(providerID))"
            }
            if verified.eventType != nil, !verified.eventTypeSigned {
                unsigned.append("eventType")
                metadata["portal.event_type"] = "\(Self.printable(eventType))"
            }
            metadata["portal.unsigned"] = "\(unsigned.joined(separator: ","))"
            logger.info("webhook event stored with an id or type from a header its signature does not cover", metadata: metadata)
        }
        wakeWorkers()
        return .json(["received": true, "id": .string(id.uuidString.lowercased())])
    }

    /// Counts and logs a delivery the insert declined: the same event id again (a provider's retry), or,
    /// for a scheme without a signed timestamp, the same body under a new or no id (a replay).
    /// Counts and logs a declined delivery; returns the stored event it duplicates (when still stored).
    private func declined(_ endpoint: OpenedEndpoint, dedupKey: String, replayDigest: String?, providerEventID: String?) async throws -> UUID? {
        var original: (id: UUID, dedupKey: String)?
        if let replayDigest {
            original = try await database.read { db in try await WebhookEventStore(db).replayed(endpointID: endpoint.record.id, replayDigest: replayDigest) }
        }
        var duplicated = original?.id
        if duplicated == nil {
            duplicated = try await database.read { db in try await WebhookEventStore(db).duplicated(endpointID: endpoint.record.id, dedupKey: dedupKey) }
        }
        counters.withLock {
            $0.duplicates += 1
            if let original, original.dedupKey != dedupKey { $0.replays += 1 }
        }
        observe(endpoint, .duplicate)
        guard let original, original.dedupKey != dedupKey, let replayDigest else { return duplicated }
        var metadata: Logger.Metadata = [
            "portal.organization": "\(endpoint.slug)", "portal.endpoint": "\(endpoint.record.name)", "portal.scheme": "\(endpoint.scheme.rawValue)",
            "portal.body_digest": "\(replayDigest)", "portal.original_event": "\(original.id.uuidString.lowercased())",
        ]
        if let providerEventID { metadata["portal.provider_event_id"] = "\(Self.printable(providerEventID))" }
        logger.warning("webhook replay acknowledged and not stored: the endpoint received this body before", metadata: metadata)
        return duplicated
    }

    /// An unsigned value for a log line: at most 100 characters, control characters replaced.
    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.prefix(100).map { $0.properties.generalCategory == .control ? "?" : $0 }))
    }

    private func observe(_ endpoint: OpenedEndpoint, _ status: Activity.WebhookStatus) {
        observer.observe(.webhook(organizationID: endpoint.record.organizationID, integrationID: endpoint.record.integrationID, status: status))
    }

    private func reject(_ rejection: WebhookRejection, endpoint: OpenedEndpoint, request: InboundWebhook, at now: Date) async throws -> Answer {
        counters.withLock { $0.rejected[rejection.kind.rawValue, default: 0] += 1 }
        observe(endpoint, .rejected)
        let event = AuditEvent(
            organizationID: endpoint.record.organizationID, type: .webhookRejected, actor: "provider:\(endpoint.record.name)",
            integrationID: endpoint.record.integrationID,
            data: [
                "endpoint": .string(endpoint.record.name), "scheme": .string(endpoint.scheme.rawValue), "reason": .string(rejection.kind.rawValue),
                "status": .int(Int64(rejection.status)), "bodyBytes": .int(Int64(request.body.count)),
            ],
            time: now
        )
        // Unauthenticated traffic: counted per endpoint, reason and minute when a recorder is given (300
        // forged deliveries are a few entries, not 300).
        if let rejections {
            try await rejections.rejected(event)
        } else {
            try await audit.append([event])
        }
        var answer = Answer.json(["error": .string(rejection.kind.rawValue)], status: rejection.status)
        answer.rejection = rejection
        return answer
    }

    /// The endpoint behind a path, opened (secrets in memory) and kept for `endpointCacheSeconds`.
    func endpoint(slug: String, name: String) async throws -> OpenedEndpoint? {
        let key = "\(slug)/\(name)"
        let now = clock.now()
        if let cached = opened.withLock({ $0[key] }), now.timeIntervalSince(cached.at) < configuration.endpointCacheSeconds, now >= cached.at {
            return cached.endpoint
        }
        let found = try await database.read { db -> OpenedEndpoint? in
            guard let record = try await WebhookEndpointStore(db).find(slug: slug, name: name) else { return nil }
            let secrets = try await openSecrets(record, in: db)
            // So that deliveries can be sealed before they reach the sequencer's transaction.
            try await vault.learnNewestKey(organizationID: record.organizationID, in: db)
            var list = [secrets.current]
            if let previous = secrets.previous, let until = secrets.previousUntil, until > now { list.append(previous) }
            let config = record.config.objectValue ?? [:]
            let tolerance: TimeInterval = if case .int(let t)? = config["toleranceSeconds"] { TimeInterval(t) } else { 300 }
            let options = SchemeOptions(
                signatureHeader: config["signatureHeader"]?.stringValue, signatureMethod: config["signatureMethod"]?.stringValue, tolerance: tolerance,
                eventIDHeader: config["eventIdHeader"]?.stringValue, eventIDPointer: config["eventIdPointer"]?.stringValue,
                secretField: config["secretField"]?.stringValue
            )
            return OpenedEndpoint(
                record: record, slug: slug, secrets: list, options: options, scheme: WebhookScheme(rawValue: record.scheme) ?? .hmac,
                allowedSources: (config["allowedSources"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(IPNetwork.init) }
            )
        }
        if let found, configuration.endpointCacheSeconds > 0 {
            opened.withLock { cache in
                if cache.count >= 10_000 { cache.removeAll() }
                cache[key] = (found, now)
            }
        }
        return found
    }

    private func forget(slug: String, names: [String]) {
        opened.withLock { cache in for name in names { cache["\(slug)/\(name)"] = nil } }
    }

    /// Endpoint handshakes that carry no signature: Okta's one-time verification (GET with
    /// `X-Okta-Verification-Challenge`) and Microsoft Graph's `validationToken`, for `shared-secret` endpoints.
    static func handshake(_ request: InboundWebhook, endpoint: OpenedEndpoint) -> Answer? {
        guard endpoint.scheme == .sharedSecret else { return nil }
        if request.method == "GET", let challenge = request.header("X-Okta-Verification-Challenge") {
            return .json(["verification": .string(challenge)])
        }
        if let token = URLComponents(string: request.url)?.queryItems?.first(where: { $0.name == "validationToken" })?.value, request.body.isEmpty {
            return Answer(status: 200, contentType: "text/plain; charset=utf-8", body: Array(token.utf8))
        }
        return nil
    }

    /// The event type from the body: `type`, `event_type`, `eventType`, `event` (a string), or Slack's `event.type`.
    static func eventType(_ json: JSONValue?) -> String? {
        guard let m = json?.objectValue else {
            if case .array(let items)? = json { return items.first?.objectValue.flatMap { eventType(.object($0)) } }
            return nil
        }
        for key in ["type", "event_type", "eventType", "subscriptionType"] { if let value = m[key]?.stringValue { return value } }
        if let value = m["event"]?.stringValue { return value }
        return m["event"]?.objectValue?["type"]?.stringValue
    }

    /// `user.*` matches `user.created`; anything else matches exactly.
    static func matches(pattern: String, _ type: String) -> Bool {
        pattern == "*" || pattern == type || (pattern.hasSuffix(".*") && type.hasPrefix(String(pattern.dropLast(1))))
    }

    static func signatureHeaders(_ endpoint: OpenedEndpoint) -> [String] {
        switch endpoint.scheme {
        case .standardWebhooks: ["webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp", "svix-signature"]
        case .stripe: ["stripe-signature"]
        case .github: ["x-hub-signature-256", "x-hub-signature", "x-github-delivery", "x-github-event"]
        case .slack: ["x-slack-request-timestamp", "x-slack-signature"]
        case .shopify: ["x-shopify-hmac-sha256", "x-shopify-webhook-id", "x-shopify-topic"]
        case .twilio: ["x-twilio-signature", "i-twilio-idempotency-token"]
        case .sendgrid: ["x-twilio-email-event-webhook-signature", "x-twilio-email-event-webhook-timestamp"]
        case .hubspot: ["x-hubspot-signature-v3", "x-hubspot-request-timestamp"]
        case .hmac: [(endpoint.options.signatureHeader ?? "X-Webhook-Signature").lowercased()] + [endpoint.options.eventIDHeader?.lowercased()].compactMap { $0 }
        case .sharedSecret: [endpoint.options.eventIDHeader?.lowercased()].compactMap { $0 }
        }
    }

    /// The signature as presented (the seed's `signature` column); never a shared secret.
    static func signature(_ request: InboundWebhook, _ endpoint: OpenedEndpoint) -> String? {
        guard endpoint.scheme != .sharedSecret else { return nil }
        let headers = signatureHeaders(endpoint).filter { $0.contains("signature") || $0.contains("hmac") }
        return headers.lazy.compactMap { request.header($0) }.first
    }
}

/// Where the receiver's refusals go instead of one `webhook.rejected` entry each (the portal aggregates
/// them per endpoint, reason and minute, with a count).
package protocol WebhookRejectionRecorder: Sendable {
    /// Records the refused delivery described by `event` (a `webhook.rejected` entry of one delivery).
    func rejected(_ event: AuditEvent) async throws
}

/// An event's row, written with its `webhook.received` entry in the sequencer's batch; the raw body is
/// sealed there, one data-key lookup per organization and batch.
struct WebhookEventRow: CompanionRow {
    /// The event, its payload sealed already unless `body` is set.
    var record: WebhookEventRecord
    /// The raw body still to seal in the batch (when the receiver did not know the data key).
    var body: [UInt8]?
    var vault: CredentialVault

    /// Seals the bodies and inserts the events; a replay (its endpoint and dedup key already stored, by an
    /// earlier batch, another instance or an earlier row of this batch) is declined.
    static func insert(_ rows: [WebhookEventRow], in db: Transaction) async throws -> Set<Int> {
        var records = rows.map(\.record)
        // Most bodies were sealed by the receiver already (outside the batch's transaction).
        let unsealed = rows.indices.filter { rows[$0].body != nil }
        for (organizationID, positions) in Dictionary(grouping: unsealed, by: { rows[$0].record.organizationID }) {
            let vault = rows[positions[0]].vault
            let sealed = try await vault.seal(
                positions.map { (Data(rows[$0].body ?? []), VaultContext.webhookEvent(rows[$0].record.id)) }, organizationID: organizationID, in: db
            )
            for (position, payload) in zip(positions, sealed) { records[position].payload = payload }
        }
        let inserted = try await WebhookEventStore(db).insert(records)
        return Set(records.indices.filter { !inserted.contains(records[$0].id) })
    }
}

/// The receiver's index of live paths. A refresh reads the database while this instance may register or
/// delete endpoints: changes made here after the refresh began are kept over its (older) snapshot.
struct PathIndex {
    private(set) var live = Set<String>()
    private var epoch = 0
    private var applied = 0
    private var changes: [String: (added: Bool, epoch: Int)] = [:]
    /// Unknown paths looked up in the database, and when; and this second's lookups.
    private var asked: [String: Date] = [:]
    private var second: Int64 = 0
    private var askedThisSecond = 0
    /// Unknown paths looked up in the database per second, at most.
    static let lookupsPerSecond = 20

    /// Whether to look `path` (unknown here) up in the database now: not if a lookup found nothing less
    /// than a second ago, nor past this second's budget.
    mutating func shouldAsk(_ path: String, now: Date) -> Bool {
        let current = Int64(now.timeIntervalSince1970.rounded(.down))
        if current != second { (second, askedThisSecond) = (current, 0) }
        if let last = asked[path], now >= last, now.timeIntervalSince(last) < 1 { return false }
        guard askedThisSecond < Self.lookupsPerSecond else { return false }
        askedThisSecond += 1
        return true
    }

    /// A lookup of `path` found no endpoint at `now`.
    mutating func notFound(_ path: String, now: Date) {
        if asked.count >= 10_000 { asked.removeAll() }
        asked[path] = now
    }

    mutating func add(_ path: String) {
        live.insert(path)
        changes[path] = (true, epoch)
    }

    mutating func remove(_ path: String) {
        live.remove(path)
        changes[path] = (false, epoch)
    }

    mutating func beginRefresh() -> Int {
        epoch += 1
        return epoch
    }

    mutating func finishRefresh(epoch started: Int, live snapshot: Set<String>) {
        // A refresh that began before one already applied holds an older snapshot.
        guard started > applied else { return }
        applied = started
        var next = snapshot
        // A change recorded at the refresh's epoch or later may have committed after the snapshot was read.
        for (path, change) in changes where change.epoch >= started {
            if change.added { next.insert(path) } else { next.remove(path) }
        }
        live = next
        changes = changes.filter { $0.value.epoch >= started }
    }
}
