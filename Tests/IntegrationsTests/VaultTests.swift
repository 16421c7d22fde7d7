import Foundation
import Integrations
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Testing

@Suite("Credential vault")
struct VaultTests {
    let ids = IdentifierGenerator()

    func makeOrg(_ db: Database, _ slug: String) async throws -> UUID {
        let id = ids.next()
        try await db.write { try await OrganizationStore($0).insert(Organization(id: id, slug: slug, name: slug, createdAt: Date())) }
        return id
    }

    @Test("sealed values open only for their organization and row", arguments: Backend.available)
    func sealAndOpen(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let ring = try MasterKeyRing(keys: [.init(base64: MasterKeyRing.generateBase64())])
            let vault = CredentialVault(ring: ring)
            let a = try await makeOrg(db, "a"), b = try await makeOrg(db, "b")
            let secret = Data("client-secret-value-123".utf8)
            let sealed = try await db.write { try await vault.seal(secret, organizationID: a, context: "integration:1", in: $0) }
            #expect(JSONValue.encodeText(sealed).contains("client-secret") == false)
            #expect(try await db.read { try await vault.open(sealed, organizationID: a, context: "integration:1", in: $0) } == secret)
            await #expect(throws: PortalError.self) {
                try await db.read { try await vault.open(sealed, organizationID: a, context: "integration:2", in: $0) }
            }
            await #expect(throws: PortalError.self) {
                try await db.read { try await vault.open(sealed, organizationID: b, context: "integration:1", in: $0) }
            }
            // One flipped ciphertext byte fails authentication.
            guard case .object(var fields) = sealed, let ct = fields["ct"]?.stringValue, var bytes = Data(base64Encoded: ct) else {
                Issue.record("not an envelope")
                return
            }
            bytes[bytes.count / 2] ^= 0x01
            fields["ct"] = .string(bytes.base64EncodedString())
            await #expect(throws: PortalError.self) {
                try await db.read { try await vault.open(.object(fields), organizationID: a, context: "integration:1", in: $0) }
            }
            // One data key per organization, reused.
            _ = try await db.write { try await vault.seal(Data("x".utf8), organizationID: a, context: "integration:3", in: $0) }
            let keys = try await db.read { try await $0.raw("SELECT COUNT(*) AS n FROM data_keys WHERE organization_id = \(bind: a)").first()?.decode(column: "n", as: Int.self) }
            #expect(keys == 1)
        }
    }

    @Test("sealing without a query uses the key read within the last minute, for its organization only", arguments: Backend.available)
    func sealWithKnownKey(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let clock = ManualWallClock()
            let vault = CredentialVault(ring: try MasterKeyRing(keys: [.init(base64: MasterKeyRing.generateBase64())]), clock: clock)
            let a = try await makeOrg(db, "a"), b = try await makeOrg(db, "b")
            let body = Data(#"{"type":"user.created"}"#.utf8)
            #expect(vault.sealWithKnownKey(body, organizationID: a, context: "webhook-event:1") == nil, "no key read yet")
            _ = try await db.write { try await vault.seal(Data("first".utf8), organizationID: a, context: "webhook-event:0", in: $0) }
            #expect(vault.sealWithKnownKey(body, organizationID: a, context: "webhook-event:1") == nil, "a key created in a write transaction is not learnt")
            try await db.read { try await vault.learnNewestKey(organizationID: a, in: $0) }
            let sealed = try #require(vault.sealWithKnownKey(body, organizationID: a, context: "webhook-event:1"))
            #expect(try await db.read { try await vault.open(sealed, organizationID: a, context: "webhook-event:1", in: $0) } == body)
            await #expect(throws: PortalError.self) {
                try await db.read { try await vault.open(sealed, organizationID: a, context: "webhook-event:2", in: $0) }
            }
            #expect(vault.sealWithKnownKey(body, organizationID: b, context: "webhook-event:1") == nil, "another organization's key is never used")
            try await db.read { try await vault.learnNewestKey(organizationID: b, in: $0) }
            #expect(vault.sealWithKnownKey(body, organizationID: b, context: "webhook-event:1") == nil, "an organization without a key has none to learn")
            clock.advance(by: 61)
            #expect(vault.sealWithKnownKey(body, organizationID: a, context: "webhook-event:1") == nil, "after a minute storage is asked again")
        }
    }

    @Test("a vault with another master key cannot open anything", arguments: Backend.available)
    func wrongMasterKey(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let org = try await makeOrg(db, "a")
            let first = CredentialVault(ring: try MasterKeyRing(keys: [.init(base64: MasterKeyRing.generateBase64())]))
            let sealed = try await db.write { try await first.seal(Data("s".utf8), organizationID: org, context: "c", in: $0) }
            let other = CredentialVault(ring: try MasterKeyRing(keys: [.init(base64: MasterKeyRing.generateBase64())]))
            await #expect(throws: PortalError.self) {
                try await db.read { try await other.open(sealed, organizationID: org, context: "c", in: $0) }
            }
        }
    }

    @Test("master key rotation re-wraps, keeps old readers working, and retires safely", arguments: Backend.available)
    func rotation(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let oldKey = try MasterKeyRing.Key(base64: MasterKeyRing.generateBase64())
            let newKey = try MasterKeyRing.Key(base64: MasterKeyRing.generateBase64())
            let old = CredentialVault(ring: try MasterKeyRing(keys: [oldKey]))
            let org = try await makeOrg(db, "a")
            let sealed = try await db.write { try await old.seal(Data("s3cret".utf8), organizationID: org, context: "c", in: $0) }

            // Retiring the only key is refused: the data key would become unreadable.
            await #expect(throws: PortalError.self) { try await db.write { try await old.retire(masterKeyID: oldKey.id, in: $0) } }

            #expect(try await db.write { try await old.rewrapAll(under: newKey, in: $0) } == 1)
            // A fresh process that knows only the old key still reads (no downtime for readers) ...
            let oldReader = CredentialVault(ring: try MasterKeyRing(keys: [oldKey]))
            #expect(try await db.read { try await oldReader.open(sealed, organizationID: org, context: "c", in: $0) } == Data("s3cret".utf8))
            // ... and so does one that knows only the new key.
            let newReader = CredentialVault(ring: try MasterKeyRing(keys: [newKey]))
            #expect(try await db.read { try await newReader.open(sealed, organizationID: org, context: "c", in: $0) } == Data("s3cret".utf8))

            #expect(try await db.write { try await newReader.retire(masterKeyID: oldKey.id, in: $0) } == 1)
            let afterRetire = CredentialVault(ring: try MasterKeyRing(keys: [oldKey]))
            await #expect(throws: PortalError.self) {
                try await db.read { try await afterRetire.open(sealed, organizationID: org, context: "c", in: $0) }
            }
            #expect(try await db.read { try await CredentialVault(ring: try MasterKeyRing(keys: [newKey])).open(sealed, organizationID: org, context: "c", in: $0) } == Data("s3cret".utf8))
        }
    }

    @Test("master keys load from the variable or a key file, and bad keys are refused")
    func keyLoading() throws {
        let key = MasterKeyRing.generateBase64()
        let keyID = try MasterKeyRing.Key(base64: key).id
        #expect(try MasterKeyRing.load(masterKey: key, keyFile: nil).active.id == keyID)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(UUID().uuidString)").path
        let second = MasterKeyRing.generateBase64()
        try MasterKeyRing.writeKeyFile(path, keys: [second, key])
        let ring = try MasterKeyRing.load(masterKey: nil, keyFile: path)
        let secondID = try MasterKeyRing.Key(base64: second).id
        #expect(ring.keys.count == 2)
        #expect(ring.active.id == secondID)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        try? FileManager.default.removeItem(atPath: path)
        #expect(throws: PortalError.self) { try MasterKeyRing.Key(base64: "c2hvcnQ=") }
        #expect(throws: PortalError.self) { try MasterKeyRing.load(masterKey: nil, keyFile: nil) }
        #expect(throws: PortalError.self) { try MasterKeyRing.load(masterKey: nil, keyFile: "/nonexistent/key") }
    }

    @Test("masking shows the last four characters only of long values")
    func masking() {
        #expect(Masking.mask("short") == "••••")
        #expect(Masking.mask("elevenchars") == "••••")
        #expect(Masking.mask("twelve-chars") == "••••ars".replacingOccurrences(of: "ars", with: "hars"))
        #expect(Masking.mask("sk_live_1234567890abcd") == "••••abcd")
        #expect(Masking.isMasked("••••abcd"))
        #expect(!Masking.isMasked("abcd"))
    }
}
