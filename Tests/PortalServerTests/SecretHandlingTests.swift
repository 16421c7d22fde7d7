import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// Secrets are encrypted at rest, never returned and never logged (DESIGN section 6).
@Suite("Secret handling")
struct SecretHandlingTests {
    static let secrets = ["CLIENTSECRET-8f1e2d3c4b5a", "WEBHOOKSECRET-77aa88bb99", "APIKEY-0f0e0d0c0b0a0908", "ROTATED-SECRET-5544332211"]

    @Test("no plaintext secret in the database files, the tables, the API or the logs", arguments: Backend.available)
    func noPlaintext(backend: Backend) async throws {
        let logs = LogCapture()
        try await withPortal(backend, logs: logs) { portal in
            let admin = portal.token("acme.admin")
            let created = try await portal.call(.post, "/portal/integrations", token: admin, json: """
                {"name":"Secretive","type":"security","baseUrl":"https://siem.example.com","authMethod":"oauth2",
                 "credentials":{"clientId":"public-client-id","clientSecret":"\(Self.secrets[0])","apiKey":"\(Self.secrets[2])"},
                 "webhookConfig":{"endpoint":"/webhooks/siem","events":["alert.created"],"secret":"\(Self.secrets[1])"}}
                """)
            #expect(created.status == .created)
            let id = try #require(created.json.objectValue?["id"]?.stringValue)
            let patched = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: """
                {"credentials":{"clientSecret":"\(Self.secrets[3])"}}
                """)
            #expect(patched.status == .ok)
            // Failed requests carrying secrets are not logged either.
            _ = try await portal.call(.post, "/portal/integrations", token: admin, json: #"{"credentials":{"x":"\#(Self.secrets[3])"}, "bad": 1}"#)

            var responses = created.body.string + patched.body.string
            responses += try await portal.call(.get, "/portal/integrations", token: admin).body.string
            responses += try await portal.call(.get, "/portal/integrations/\(id)", token: admin).body.string
            for secret in Self.secrets {
                #expect(!responses.contains(secret), "the API returned \(secret)")
                #expect(!logs.text.contains(secret), "the logs contain \(secret)")
            }
            #expect(patched.json.objectValue?["credentials"]?.objectValue?["clientSecret"] == "••••2211")
            #expect(!logs.text.isEmpty, "the capture saw the request logs")

            switch backend {
            case .sqlite:
                let path = try #require(portal.test.sqlitePath)
                var scanned = 0
                for suffix in ["", "-wal", "-shm"] {
                    guard let bytes = FileManager.default.contents(atPath: path + suffix) else { continue }
                    scanned += bytes.count
                    for secret in Self.secrets {
                        #expect(bytes.range(of: Data(secret.utf8)) == nil, "\(secret) is in \(path + suffix)")
                    }
                    // The integration's non-secret name is there: the scan reads the real data.
                    if suffix == "-wal" { #expect(bytes.range(of: Data("Secretive".utf8)) != nil) }
                }
                #expect(scanned > 0)
            case .postgres:
                let dump = try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
                    try await db.read { sql -> String in
                        var text = ""
                        for table in ["integrations", "data_keys", "data_key_wraps", "api_tokens", "organizations"] {
                            for row in try await sql.raw("SELECT CAST(t.* AS TEXT) AS row FROM \(unsafeRaw: table) t").all() {
                                text += try row.decode(column: "row", as: String.self) + "\n"
                            }
                        }
                        return text
                    }
                }
                #expect(dump.contains("Secretive"))
                for secret in Self.secrets { #expect(!dump.contains(secret), "\(secret) is in a PostgreSQL table") }
            }
            // API tokens are stored only as hashes.
            let tokenDump = try await Database.withDatabase(url: portal.test.url, logger: quietLogger) { db in
                try await db.read { sql in
                    try await sql.raw("SELECT token_hash FROM api_tokens").all().map { try $0.decode(column: "token_hash", as: String.self) }
                }
            }
            #expect(!tokenDump.contains(admin))
            #expect(tokenDump.contains(APITokenHash.of(admin)))
        }
    }
}

import PortalServer

enum APITokenHash {
    static func of(_ token: String) -> String { APITokenAuthority.hash(token) }
}
