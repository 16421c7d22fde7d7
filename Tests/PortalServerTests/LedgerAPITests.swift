import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ledger
import PortalCore
import PortalServer
import PortalTestSupport
import SQLKit
import Storage
import Testing

/// The ledger as the HTTP API shows it: what changes record, and the auditor's read side.
@Suite("Ledger over HTTP")
struct LedgerAPITests {
    /// Waits until the ledger of acme has at least `count` entries, then returns them.
    func entries(_ portal: Portal, token: String, atLeast count: Int) async throws -> [JSONValue] {
        var all: [JSONValue] = []
        _ = try await eventually {
            let page = try await portal.call(.get, "/ledger/acme/entries?from=0&limit=1000", token: token)
            all = page.json.objectValue?["entries"]?.arrayValues ?? []
            return all.count >= count
        }
        return all
    }

    func types(_ entries: [JSONValue]) -> [String] {
        entries.compactMap { $0.objectValue?["entry"]?.objectValue?["type"]?.stringValue }
    }

    @Test("changes, token events and denials are in the chain, without secrets", arguments: Backend.available)
    func evidence(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let admin = portal.token("acme.admin")
            let before = try await entries(portal, token: admin, atLeast: 0).count
            let id = try await portal.createIntegration(name: "Ledgered", credentials: #"{"clientId":"client-id-123456","clientSecret":"SECRET-in-no-entry-42"}"#)
            _ = try await portal.call(.patch, "/portal/integrations/\(id)", token: admin, json: #"{"name":"Ledgered 2","credentials":{"clientSecret":"SECRET-rotated-99"}}"#)
            _ = try await portal.call(.delete, "/portal/integrations/\(id)", token: admin)
            let issued = try await portal.call(.post, "/portal/tokens", token: admin, json: #"{"role":"auditor","owner":"auditor@example.com"}"#)
            let tokenID = try #require(issued.json.objectValue?["id"]?.stringValue)
            _ = try await portal.call(.delete, "/portal/tokens/\(tokenID)", token: admin)
            _ = try await portal.call(.delete, "/portal/integrations/\(id)", token: portal.token("acme.auditor"))          // 403
            let globexIntegration = try await portal.createIntegration(name: "Theirs", token: portal.token("globex.admin"))
            _ = try await portal.call(.get, "/portal/integrations/\(globexIntegration)", token: admin)                    // 404 across organizations
            _ = try await portal.call(.get, "/portal/integrations/\(UUID().uuidString)", token: admin)                    // plain 404: not ledgered
            _ = try await portal.call(.get, "/portal/whoami", token: portal.token("acme.expired"))                       // 401, used_expired

            let all = try await entries(portal, token: admin, atLeast: before + 8)
            let new = Array(all.dropFirst(before))
            #expect(types(new) == [
                "integration.created", "integration.updated", "integration.deleted", "apitoken.created", "apitoken.revoked",
                "access.denied", "access.denied", "apitoken.used_expired",
            ])
            let body = new.map { JSONValue.encodeText($0) }.joined()
            #expect(!body.contains("SECRET-"))
            let updated = try #require(new[1].objectValue?["entry"]?.objectValue)
            #expect(updated["data"]?.objectValue?["changed"] == ["credentials", "name"])
            #expect(updated["integration"] == .string(id))
            #expect(updated["data"]?.objectValue?["before"] != updated["data"]?.objectValue?["after"])
            let denied = new[6].objectValue?["entry"]?.objectValue?["data"]?.objectValue
            #expect(denied?["status"] == 404 && denied?["route"] == "/portal/integrations/{id}")
            #expect(new[5].objectValue?["entry"]?.objectValue?["data"]?.objectValue?["status"] == 403)
            // Each entry links to the previous one.
            for (a, b) in zip(all, all.dropFirst()) {
                #expect(b.objectValue?["entry"]?.objectValue?["prev"] == a.objectValue?["hash"])
            }
        }
    }

    @Test("checkpoint, keys, tiles and proofs verify; another organization's ledger is 404", arguments: Backend.available)
    func readSide(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            let auditor = portal.token("acme.auditor")
            let before = try await entries(portal, token: auditor, atLeast: 0).count
            for i in 0..<3 { _ = try await portal.createIntegration(name: "P\(i)") }
            let all = try await entries(portal, token: auditor, atLeast: before + 3)
            #expect(all.count >= before + 3, "the three creations are chained")
            let cut = try await portal.call(.post, "/ledger/acme/checkpoints", token: auditor)
            #expect(cut.status == .created)
            let response = try await portal.call(.get, "/ledger/acme/checkpoint", token: auditor)
            #expect(response.headers[.contentType] == "text/plain; charset=utf-8")
            #expect(response.headers[.cacheControl] == "no-store")
            let keysText = try await portal.call(.get, "/ledger/acme/keys", token: auditor).body.string
            let keys = try keysText.split(separator: "\n").map { try SignedNote.VerifierKey(text: String($0)) }
            #expect(keys.map(\.algorithm) == [.ed25519, .mlDSA65])
            let checkpoint = try Checkpoint(text: try SignedNote.verify(response.body.string, keys: keys))
            #expect(checkpoint.origin == "localhost/ledger/acme")
            #expect(checkpoint.size >= Int64(all.count))

            // The level-0 tile is the entries' leaf hashes.
            let width = Int(min(checkpoint.size, 256))
            let tile = try await portal.call(.get, "/ledger/acme/tile/0/000" + (width < 256 ? ".p/\(width)" : ""), token: auditor)
            #expect(tile.headers[.contentType] == "application/octet-stream")
            #expect(tile.body.readableBytes == width * 32)
            let leaves = Array(tile.body.readableBytesView)
            let bundle = try await portal.call(.get, "/ledger/acme/tile/entries/000" + (width < 256 ? ".p/\(width)" : ""), token: auditor)
            var bytes = Array(bundle.body.readableBytesView)
            var index = 0
            while !bytes.isEmpty {
                let length = Int(bytes[0]) << 8 | Int(bytes[1])
                let entry = Array(bytes[2..<2 + length])
                #expect(Merkle.leafHash(entry) == Array(leaves[index * 32..<index * 32 + 32]))
                bytes.removeFirst(2 + length)
                index += 1
            }
            #expect(index == width)

            let seq = Int64(width / 2)
            let proven = try await portal.call(.get, "/ledger/acme/entries/\(seq)", token: auditor).json.objectValue!
            let proof = proven["inclusionProof"]?.arrayValues.compactMap { $0.stringValue.flatMap { Data(base64Encoded: $0) }.map(Array.init) } ?? []
            let hash = Hex.decode(proven["hash"]?.stringValue ?? "") ?? []
            let provenSize: Int64 = if case .int(let n)? = proven["treeSize"] { n } else { 0 }
            let provenRoot = try Checkpoint(text: try SignedNote.verify(proven["checkpoint"]?.stringValue ?? "", keys: keys)).root
            #expect(Merkle.verifyInclusion(index: seq, size: provenSize, leafHash: hash, proof: proof, root: provenRoot))

            let consistency = try await portal.call(.get, "/ledger/acme/proofs/consistency?from=3&to=\(checkpoint.size)", token: auditor).json.objectValue!
            let cproof = consistency["proof"]?.arrayValues.compactMap { $0.stringValue.flatMap { Data(base64Encoded: $0) }.map(Array.init) } ?? []
            var small = CompactRange()
            for i in 0..<3 { small.append(Array(leaves[i * 32..<i * 32 + 32])) }
            #expect(Merkle.verifyConsistency(size1: 3, size2: checkpoint.size, root1: small.root, root2: checkpoint.root, proof: cproof))

            expectProblem(try await portal.call(.get, "/ledger/acme/tile/0/1", token: auditor), .notFound)
            expectProblem(try await portal.call(.get, "/ledger/acme/tile/9/000", token: auditor), .notFound)
            expectProblem(try await portal.call(.get, "/ledger/acme/entries/999999", token: auditor), .notFound)
            expectProblem(try await portal.call(.get, "/ledger/acme/proofs/consistency?from=5&to=2", token: auditor), .unprocessableContent)
            expectProblem(try await portal.call(.get, "/ledger/acme/checkpoint", token: portal.token("globex.admin")), .notFound)
            expectProblem(try await portal.call(.get, "/ledger/_platform/checkpoint", token: portal.token("acme.admin")), .notFound)
            expectProblem(try await portal.call(.get, "/ledger/nobody/checkpoint", token: portal.token("acme.admin")), .notFound)
        }
    }
}

@Suite("Authentication failures")
struct AuthFailureTests {
    @Test("verify now: a sound ledger passes and the verdict is ledgered; a tampered one fails naming the entry; another organization's is 404", arguments: Backend.available)
    func verifyNow(backend: Backend) async throws {
        try await withPortal(backend) { portal in
            _ = try await portal.createIntegration()
            let passed = try await portal.call(.post, "/ledger/acme/verifications", token: portal.token("acme.auditor"))
            let verdict = passed.json.objectValue ?? [:]
            #expect(passed.status == .ok && verdict["passed"] == true && verdict["failure"] == nil, "\(passed.body.string)")
            if case .int(let size)? = verdict["size"] { #expect(size > 0) } else { Issue.record("size: \(passed.body.string)") }
            try await portal.services.ledger.drainAll()
            let entries = try await portal.call(.get, "/ledger/acme/entries?limit=1000", token: portal.token("acme.admin"))
            let types = (entries.json.objectValue?["entries"]?.arrayValue ?? []).compactMap { $0.objectValue?["entry"]?.objectValue?["type"]?.stringValue }
            #expect(types.last == "ledger.verified", "\(types.suffix(3))")
            expectProblem(try await portal.call(.post, "/ledger/acme/verifications", token: portal.token("globex.auditor")), .notFound)
            try await portal.services.database.write { tx in
                try await tx.raw("UPDATE ledger_entries SET hash = \(bind: Data(repeating: 0, count: 32)) WHERE organization_id = \(bind: portal.acme.id) AND seq = 1").run()
            }
            let failed = try await portal.call(.post, "/ledger/acme/verifications", token: portal.token("acme.auditor"))
            #expect(failed.status == .ok && failed.json.objectValue?["passed"] == false, "\(failed.body.string)")
            #expect(failed.json.objectValue?["failure"]?.objectValue?["seq"] == 1, "\(failed.body.string)")
        }
    }

    @Test("401s are aggregated per minute into one platform-ledger entry with hashed sources", arguments: [Backend.sqlite])
    func aggregated(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let clock = ManualWallClock(Date(timeIntervalSince1970: 1_795_000_020))
            let sequencer = LedgerSequencer(database: db, logger: quietLogger)
            let recorder = AuthFailureRecorder(audit: sequencer, key: .init(size: .bits256), clock: clock)
            recorder.note(route: "/portal/integrations", address: "203.0.113.7")
            recorder.note(route: "/portal/integrations", address: "203.0.113.7")
            recorder.note(route: "/portal/tokens", address: "198.51.100.2")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await sequencer.run() }
                try await recorder.flush()                     // the minute has not ended: nothing yet
                clock.advance(by: 60)
                try await recorder.flush()
                group.cancelAll()
            }
            let rows = try await LedgerReader(database: db).entries(Organization.platformID, from: 0, limit: 10)
            #expect(rows.count == 1)
            let entry = try LedgerEntry(canonical: try #require(rows.first).bytes)
            #expect(entry.type == "auth.failures" && entry.org == "_platform")
            #expect(entry.data.objectValue?["count"] == 3)
            #expect(entry.data.objectValue?["routes"] == ["/portal/integrations", "/portal/tokens"])
            let sources = entry.data.objectValue?["sources"]?.arrayValues ?? []
            #expect(sources.count == 2)
            #expect(!String(decoding: rows[0].bytes, as: UTF8.self).contains("203.0.113.7"))
        }
    }
}
