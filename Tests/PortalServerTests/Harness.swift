import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Integrations
import Ledger
import Logging
import PortalCore
import PortalServer
import PortalTestSupport
import SQLKit
import Storage
import Synchronization
import Testing

/// A running portal on a fresh database with two organizations and a token for every role.
struct Portal: Sendable {
    let test: TestDatabase
    let settings: PortalSettings
    let acme: Organization
    let globex: Organization
    /// Tokens by "<org>.<role>", plus "acme.expired" and "acme.revoked".
    let tokens: [String: String]
    let client: any TestClientProtocol
    /// A real HTTP server on 127.0.0.1 (allow-listed for the gateway) standing in for providers.
    let upstream: TestUpstream
    /// The application's services (the alert evaluator, the metrics flusher).
    let services: PortalServices

    func token(_ key: String) -> String { tokens[key]! }

    /// Sends a request with `token` (if any) and a JSON body (if any).
    @discardableResult
    func call(
        _ method: HTTPRequest.Method, _ uri: String, token: String?, json: String? = nil,
        contentType: String? = "application/json", headers extra: HTTPFields = [:]
    ) async throws -> TestResponse {
        var headers = extra
        if let token { headers[.authorization] = "Bearer \(token)" }
        if json != nil, let contentType { headers[.contentType] = contentType }
        return try await client.execute(uri: uri, method: method, headers: headers, body: json.map { ByteBuffer(string: $0) })
    }

    /// Creates an integration as acme's admin (or `token`) and returns its id.
    func createIntegration(name: String = "CRM \(UUID().uuidString.prefix(8))", token: String? = nil, credentials: String = #"{"clientId":"client-id-123456","clientSecret":"client-secret-abcdef"}"#) async throws -> String {
        let response = try await call(.post, "/portal/integrations", token: token ?? self.token("acme.admin"), json: """
            {"name":"\(name)","type":"enterprise","baseUrl":"https://api.example.com","authMethod":"oauth2","credentials":\(credentials)}
            """)
        #expect(response.status == .created, "creating an integration: \(response.body.string)")
        return try #require(response.json.objectValue?["id"]?.stringValue)
    }

    /// Requests today's SOC 2 bundle as acme's compliance officer, waits until it is built, and writes the
    /// downloaded `.tar.zst` into `folder`; returns its path.
    func todaysSOC2Bundle(into folder: URL, kind: String = "soc2") async throws -> URL {
        let today = String(Timestamp.rfc3339(Date()).prefix(10))
        let created = try await call(.post, "/portal/reports", token: token("acme.compliance"), json: #"{"kind":"\#(kind)","from":"\#(today)","to":"\#(today)"}"#)
        #expect(created.status == .accepted, "\(created.body.string)")
        let id = try #require(created.json.objectValue?["id"]?.stringValue)
        var status: JSONValue?
        _ = try await eventually {
            status = try await call(.get, "/portal/reports/\(id)", token: token("acme.auditor")).json.objectValue?["status"]
            return status == "completed" || status == "failed"
        }
        #expect(status == "completed")
        let file = folder.appendingPathComponent("\(kind).tar.zst")
        let download = try await call(.get, "/portal/reports/\(id)/download", token: token("acme.auditor"))
        try Data(download.body.readableBytesView).write(to: file)
        return file
    }

    /// Row counts of the tables a request could write, read directly from the database.
    func rowCounts() async throws -> [String: Int] {
        try await Database.withDatabase(url: test.url, logger: quietLogger) { db in
            try await db.read { sql in
                var counts: [String: Int] = [:]
                for table in ["organizations", "api_tokens", "integrations", "integration_requests", "integration_tokens"] {
                    counts[table] = try await sql.raw("SELECT COUNT(*) AS n FROM \(unsafeRaw: table)").first()?.decode(column: "n", as: Int.self)
                }
                // The tenants' data keys: the platform's is made by the checkpointer in the background, whenever
                // it first signs.
                let platform = Organization.platformID
                counts["data_keys"] = try await sql.raw("SELECT COUNT(*) AS n FROM data_keys WHERE organization_id <> \(bind: platform)")
                    .first()?.decode(column: "n", as: Int.self)
                counts["data_key_wraps"] = try await sql.raw("""
                    SELECT COUNT(*) AS n FROM data_key_wraps WHERE data_key_id IN (SELECT id FROM data_keys WHERE organization_id <> \(bind: platform))
                    """).first()?.decode(column: "n", as: Int.self)
                return counts
            }
        }
    }
}

extension TestResponse {
    /// The body parsed as JSON (`null` when it is not JSON).
    var json: JSONValue { (try? JSONValue.parse(Data(body.readableBytesView))) ?? .null }
}

extension ByteBuffer {
    var string: String { String(buffer: self) }
}

/// Runs `body` against a portal on `backend`, seeded with organizations acme and globex and tokens.
func withPortal(
    _ backend: Backend, logs: LogCapture? = nil, maxBodyBytes: Int = 1 << 20, clock: any WallClock = SystemWallClock(),
    live: Bool = false, configure: @Sendable (inout PortalSettings) -> Void = { _ in },
    _ body: @Sendable (Portal) async throws -> Void
) async throws {
    try await TestUpstream.with { upstream in
        let test = try await TestDatabase.create(backend)
        var settings = PortalSettings()
        settings.outboundAllow = "127.0.0.1"
        settings.databaseURL = test.url
        settings.masterKey = MasterKeyRing.generateBase64()
        settings.port = 0
        settings.maxBodyBytes = maxBodyBytes
        // Most tests call out through integrations they just made: approvals are off unless a test turns them on.
        settings.defaultPolicy.approvals = .off
        configure(&settings)
        let ids = IdentifierGenerator()
        let now = Date()
        let seeded = try await Database.withDatabase(url: test.url, logger: quietLogger) { db in
            try await Migrator(database: db, logger: quietLogger).migrate()
            let ledger = LedgerSequencer(database: db, logger: quietLogger)
            let authority = APITokenAuthority(database: db, audit: ledger)
            return try await db.write { tx -> (Organization, Organization, [String: String]) in
                let acme = Organization(id: ids.next(), slug: "acme", name: "Acme", createdAt: now)
                let globex = Organization(id: ids.next(), slug: "globex", name: "Globex", createdAt: now)
                try await OrganizationStore(tx).insert(acme)
                try await OrganizationStore(tx).insert(globex)
                var tokens: [String: String] = [:]
                for role in Role.allCases {
                    tokens["acme.\(role.rawValue)"] = try await authority.issue(organizationID: acme.id, role: role, owner: "\(role.rawValue)@acme", actor: "system:test", in: tx).token
                    tokens["globex.\(role.rawValue)"] = try await authority.issue(organizationID: globex.id, role: role, owner: "\(role.rawValue)@globex", actor: "system:test", in: tx).token
                }
                tokens["acme.expired"] = try await authority.issue(organizationID: acme.id, role: .admin, owner: "late", expiresAt: now - 60, actor: "system:test", in: tx).token
                let revoked = try await authority.issue(organizationID: acme.id, role: .admin, owner: "gone", actor: "system:test", in: tx)
                _ = try await APITokenStore(tx).revoke(id: revoked.record.id, organizationID: acme.id, at: now)
                tokens["acme.revoked"] = revoked.token
                return (acme, globex, tokens)
            }
        }
        // The seeding's token events are chained now, so every test starts with entries in acme's ledger.
        _ = try await Database.withDatabase(url: test.url, logger: quietLogger) { db in
            try await LedgerSequencer(database: db, logger: quietLogger).drainAll()
        }
        let settingsUsed = settings
        let logger = logs?.logger() ?? quietLogger
        let built = Mutex<PortalServices?>(nil)
        var configuration = ServerConfiguration(settings: settings, clock: clock, logger: logger, bootstrap: false)
        configuration.onServices = { services in built.withLock { $0 = services } }
        let app = try buildApplication(configuration)
        let services = try #require(built.withLock { $0 })
        do {
            // Live: a real listener on 127.0.0.1, so requests have a peer address (allow-lists, proxies).
            try await app.test(live ? .live : .router) { client in
                try await body(Portal(
                    test: test, settings: settingsUsed, acme: seeded.0, globex: seeded.1, tokens: seeded.2, client: client, upstream: upstream, services: services
                ))
            }
        } catch {
            await test.drop()
            throw error
        }
        await test.drop()
    }
}

/// Checks that `response` is an RFC 9457 problem with `status`, and returns its body.
@discardableResult
func expectProblem(_ response: TestResponse, _ status: HTTPResponse.Status, sourceLocation: SourceLocation = #_sourceLocation) -> [String: JSONValue] {
    #expect(response.status == status, "body: \(response.body.string)", sourceLocation: sourceLocation)
    #expect(response.headers[.contentType] == "application/problem+json", sourceLocation: sourceLocation)
    let body = response.json.objectValue ?? [:]
    #expect(body["status"] == .int(Int64(status.code)), sourceLocation: sourceLocation)
    #expect(body["type"]?.stringValue?.hasPrefix("urn:portal:problem:") == true, sourceLocation: sourceLocation)
    #expect(body["detail"]?.stringValue?.isEmpty == false, sourceLocation: sourceLocation)
    return body
}
