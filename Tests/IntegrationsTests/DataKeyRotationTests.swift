import Crypto
import Foundation
import Integrations
import PortalCore
import PortalTestSupport
import SQLKit
import Storage
import Testing

@Suite("Data key rotation")
struct DataKeyRotationTests {
    let ids = IdentifierGenerator()

    func makeOrg(_ db: Database, _ slug: String) async throws -> UUID {
        let id = ids.next()
        try await db.write { try await OrganizationStore($0).insert(Organization(id: id, slug: slug, name: slug, createdAt: Date())) }
        return id
    }

    /// The data key id (`kid`) of a sealed envelope.
    func kid(_ sealed: JSONValue) -> String? { sealed.objectValue?["kid"]?.stringValue }

    /// The organization's data keys, oldest first, with their stored seal counts.
    func keys(_ db: Database, _ org: UUID) async throws -> [(id: String, sealed: Int64?)] {
        try await db.read { tx in
            try await tx.raw("SELECT id, sealed_count FROM data_keys WHERE organization_id = \(bind: org) ORDER BY id").all().map {
                (try $0.decode(column: "id", as: UUID.self).uuidString.lowercased(), try $0.decodeNil(column: "sealed_count") ? nil : try $0.decode(column: "sealed_count", as: Int64.self))
            }
        }
    }

    func ring() throws -> MasterKeyRing { try MasterKeyRing(keys: [.init(base64: MasterKeyRing.generateBase64())]) }

    @Test("the rotation policy: a key seals until it is too old or has sealed its count; an unknown count is due")
    func policy() throws {
        let standard = DataKeyRotation.standard
        #expect(standard.maxAge == 90 * 86_400 && standard.maxSeals == 1 << 24)
        #expect(standard.unrecordedLimit == 4096)
        let made = Date(timeIntervalSince1970: 1_800_000_000)
        let policy = try DataKeyRotation(maxAge: 100, maxSeals: 10)
        #expect(policy.unrecordedLimit == 1)
        #expect(policy.allows(createdAt: made, sealed: 0, more: 10, at: made))
        #expect(policy.allows(createdAt: made, sealed: 9, more: 1, at: made.addingTimeInterval(99)))
        #expect(!policy.allows(createdAt: made, sealed: 10, more: 1, at: made), "the count is reached")
        #expect(!policy.allows(createdAt: made, sealed: 0, more: 1, at: made.addingTimeInterval(100)), "the age is reached")
        #expect(!policy.allows(createdAt: made, sealed: nil, more: 1, at: made), "a key of unknown count is due")
        #expect(!policy.allows(createdAt: made, sealed: .max, more: 1, at: made), "no overflow")
        #expect(throws: PortalError.self) { try DataKeyRotation(maxAge: 0, maxSeals: 10) }
        #expect(throws: PortalError.self) { try DataKeyRotation(maxAge: .infinity, maxSeals: 10) }
        #expect(throws: PortalError.self) { try DataKeyRotation(maxAge: 10, maxSeals: 0) }
    }

    @Test("after 10 seals a new data key is made: new values use its id, values under the old key still open", arguments: Backend.available)
    func rotatesByCount(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let ring = try ring()
            let vault = CredentialVault(ring: ring, rotation: try DataKeyRotation(maxAge: 86_400, maxSeals: 10))
            let org = try await makeOrg(db, "a")
            var sealed: [(JSONValue, String)] = []
            for i in 0..<10 {
                let value = try await db.write { try await vault.seal(Data("secret-\(i)".utf8), organizationID: org, context: "row:\(i)", in: $0) }
                sealed.append((value, "row:\(i)"))
            }
            let first = try #require(kid(sealed[0].0))
            #expect(sealed.allSatisfy { kid($0.0) == first }, "the first 10 values share one key")
            #expect(try await keys(db, org).map(\.sealed) == [10], "the count is stored with the seals")

            let eleventh = try await db.write { try await vault.seal(Data("secret-10".utf8), organizationID: org, context: "row:10", in: $0) }
            let second = try #require(kid(eleventh))
            #expect(second != first, "the 11th value is sealed under a new key")
            #expect(try await keys(db, org).map(\.id) == [first, second], "the old key is kept")
            #expect(try await keys(db, org).map(\.sealed) == [10, 1])

            // A batch of 5 fits the new key (1 + 5 <= 10); the next batch of 5 does not, and starts a third key.
            let batch = try await db.write { tx in
                try await vault.seal((11..<16).map { (Data("secret-\($0)".utf8), "row:\($0)") }, organizationID: org, in: tx)
            }
            #expect(batch.allSatisfy { kid($0) == second })
            let next = try await db.write { tx in
                try await vault.seal((16..<21).map { (Data("secret-\($0)".utf8), "row:\($0)") }, organizationID: org, in: tx)
            }
            let third = try #require(kid(next[0]))
            #expect(third != second && next.allSatisfy { kid($0) == third })
            #expect(try await keys(db, org).map(\.sealed) == [10, 6, 5])

            // Every value opens, in a process that has not seen any key yet.
            let fresh = CredentialVault(ring: ring)
            sealed.append((eleventh, "row:10"))
            sealed += zip(batch + next, (11..<21).map { "row:\($0)" }).map { ($0, $1) }
            for (index, (value, context)) in sealed.enumerated() {
                #expect(try await db.read { try await fresh.open(value, organizationID: org, context: context, in: $0) } == Data("secret-\(index)".utf8))
            }
        }
    }

    @Test("a data key older than its age limit is replaced, with an injected clock; the query-free path stops using it", arguments: Backend.available)
    func rotatesByAge(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let clock = ManualWallClock()
            let ring = try ring()
            let vault = CredentialVault(ring: ring, clock: clock)
            let org = try await makeOrg(db, "a")
            let old = try await db.write { try await vault.seal(Data("old".utf8), organizationID: org, context: "c:old", in: $0) }
            clock.advance(by: 89 * 86_400)
            let young = try await db.write { try await vault.seal(Data("young".utf8), organizationID: org, context: "c:young", in: $0) }
            #expect(kid(young) == kid(old), "89 days old: still the newest key")
            try await db.read { try await vault.learnNewestKey(organizationID: org, in: $0) }
            let known = try #require(vault.sealWithKnownKey(Data("body".utf8), organizationID: org, context: "c:body"))
            #expect(kid(known) == kid(old))

            clock.advance(by: 86_400 + 1)
            #expect(vault.sealWithKnownKey(Data("body".utf8), organizationID: org, context: "c:late") == nil, "a key past its age is not used without a query")
            let renewed = try await db.write { try await vault.seal(Data("new".utf8), organizationID: org, context: "c:new", in: $0) }
            #expect(kid(renewed) != kid(old), "90 days old: a new key")
            #expect(try await keys(db, org).count == 2)
            #expect(try await keys(db, org).map(\.sealed) == [3, 1], "the query-free seal was recorded with the next seal")

            // A value is re-sealed under the newest key when next written; the old one still opens meanwhile.
            let reader = CredentialVault(ring: ring, clock: clock)
            #expect(try await db.read { try await reader.open(old, organizationID: org, context: "c:old", in: $0) } == Data("old".utf8))
            #expect(try await db.read { try await reader.open(known, organizationID: org, context: "c:body", in: $0) } == Data("body".utf8))
            let rewritten = try await db.write { try await vault.seal(Data("old".utf8), organizationID: org, context: "c:old", in: $0) }
            #expect(kid(rewritten) == kid(renewed))
        }
    }

    @Test("seals made without a query are limited and recorded by the next seal in a transaction", arguments: Backend.available)
    func queryFreeSealsAreCounted(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let vault = CredentialVault(ring: try ring(), rotation: try DataKeyRotation(maxAge: 86_400, maxSeals: 1024))
            let org = try await makeOrg(db, "a")
            let first = try await db.write { try await vault.seal(Data("x".utf8), organizationID: org, context: "c", in: $0) }
            try await db.read { try await vault.learnNewestKey(organizationID: org, in: $0) }
            // 1024 / 256 = 4 unrecorded seals at most.
            for i in 0..<4 {
                let sealed = try #require(vault.sealWithKnownKey(Data("b".utf8), organizationID: org, context: "b:\(i)"))
                #expect(kid(sealed) == kid(first))
            }
            #expect(vault.sealWithKnownKey(Data("b".utf8), organizationID: org, context: "b:4") == nil, "4 seals not recorded yet: storage is needed")
            #expect(try await keys(db, org).map(\.sealed) == [1])
            _ = try await db.write { try await vault.seal([(Data("b".utf8), "b:4")], organizationID: org, in: $0) }
            #expect(try await keys(db, org).map(\.sealed) == [6], "1 + 4 without a query + 1 in the batch")
            #expect(vault.sealWithKnownKey(Data("b".utf8), organizationID: org, context: "b:5") != nil, "recorded: the query-free path resumes")
        }
    }

    @Test("a key's count reaches the limit through the query-free path as well", arguments: Backend.available)
    func queryFreeSealsRotate(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let vault = CredentialVault(ring: try ring(), rotation: try DataKeyRotation(maxAge: 86_400, maxSeals: 3))
            let org = try await makeOrg(db, "a")
            let first = try await db.write { try await vault.seal(Data("x".utf8), organizationID: org, context: "c", in: $0) }
            try await db.read { try await vault.learnNewestKey(organizationID: org, in: $0) }
            #expect(vault.sealWithKnownKey(Data("b".utf8), organizationID: org, context: "b").map(kid) == kid(first))
            #expect(vault.sealWithKnownKey(Data("b".utf8), organizationID: org, context: "b") == nil, "1 unrecorded seal at most")
            _ = try await db.write { tx in try await vault.seal([(Data("b".utf8), "b")], organizationID: org, in: tx) }
            #expect(try await keys(db, org).map(\.sealed) == [3], "1 + 1 without a query + 1")

            try await db.read { try await vault.learnNewestKey(organizationID: org, in: $0) }
            #expect(vault.sealWithKnownKey(Data("b".utf8), organizationID: org, context: "b") == nil, "the learnt key has sealed its count")
            let second = try await db.write { tx in try await vault.seal([(Data("b".utf8), "b")], organizationID: org, in: tx) }
            #expect(kid(second[0]) != kid(first))
            try await db.read { try await vault.learnNewestKey(organizationID: org, in: $0) }
            #expect(vault.sealWithKnownKey(Data("b".utf8), organizationID: org, context: "b").map(kid) == kid(second[0]))
            _ = try await db.write { tx in try await vault.seal([(Data("b".utf8), "b")], organizationID: org, in: tx) }
            #expect(try await keys(db, org).map(\.sealed) == [3, 3])
        }
    }

    @Test("a data key stored before seals were counted (unknown count) is replaced on the next write and still opens", arguments: Backend.available)
    func unknownCountIsDue(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let ring = try ring()
            let vault = CredentialVault(ring: ring)
            let org = try await makeOrg(db, "a")
            let old = try await db.write { try await vault.seal(Data("old".utf8), organizationID: org, context: "c", in: $0) }
            try await db.write { try await $0.raw("UPDATE data_keys SET sealed_count = NULL").run() }
            let upgraded = CredentialVault(ring: ring)
            let new = try await db.write { try await upgraded.seal(Data("new".utf8), organizationID: org, context: "d", in: $0) }
            #expect(kid(new) != kid(old))
            #expect(try await keys(db, org).map(\.sealed) == [nil, 1])
            #expect(try await db.read { try await upgraded.open(old, organizationID: org, context: "c", in: $0) } == Data("old".utf8))
        }
    }

    @Test("the purpose key and credentials open after data keys rotated and after a master-key rotation with the old key retired", arguments: Backend.available)
    func purposeKeyAcrossRotations(backend: Backend) async throws {
        try await TestDatabase.with(backend) { (_: TestDatabase, db: Database) async throws in
            let oldMaster = try MasterKeyRing.Key(base64: MasterKeyRing.generateBase64())
            let rotation = try DataKeyRotation(maxAge: 86_400, maxSeals: 2)
            let vault = CredentialVault(ring: try MasterKeyRing(keys: [oldMaster]), rotation: rotation)
            let org = try await makeOrg(db, "a")
            let purpose = try await db.write { try await vault.purposeKey("subject-lookup", in: $0) }
            let purposeBytes = purpose.withUnsafeBytes { Data($0) }
            var credentials: [(JSONValue, String, Data)] = []
            func sealCredential(_ vault: CredentialVault, _ i: Int) async throws {
                let plain = Data("credential-\(i)".utf8)
                credentials.append((try await db.write { try await vault.seal(plain, organizationID: org, context: "integration:\(i)", in: $0) }, "integration:\(i)", plain))
            }
            // Both organizations' data keys rotate: the platform's (which seals the purpose key) and org's.
            for i in 0..<5 {
                try await sealCredential(vault, i)
                _ = try await db.write { try await vault.seal(Data("filler".utf8), organizationID: Organization.platformID, context: "filler:\(i)", in: $0) }
            }
            #expect(try await keys(db, Organization.platformID).count >= 3, "the platform's data key rotated")
            #expect(Set(credentials.compactMap { kid($0.0) }).count == 3, "org's credentials span three data keys")

            func expectAllOpen(_ ring: MasterKeyRing, _ note: Comment) async throws {
                let fresh = CredentialVault(ring: ring, rotation: rotation)
                let reopened = try await db.write { try await fresh.purposeKey("subject-lookup", in: $0) }
                #expect(reopened.withUnsafeBytes { Data($0) } == purposeBytes, note)
                for (sealed, context, plain) in credentials {
                    #expect(try await db.read { try await fresh.open(sealed, organizationID: org, context: context, in: $0) } == plain, note)
                }
            }
            try await expectAllOpen(try MasterKeyRing(keys: [oldMaster]), "after data-key rotation")

            // `portal keys rotate-master`: every data key (old ones included) wrapped under the new master key.
            let newMaster = try MasterKeyRing.Key(base64: MasterKeyRing.generateBase64())
            let both = CredentialVault(ring: try MasterKeyRing(keys: [newMaster, oldMaster]), rotation: rotation)
            let wrapped = try await db.write { try await both.rewrapAll(under: newMaster, in: $0) }
            #expect(wrapped == (try await db.read { try await DataKeyStore($0).allIDs() }.count))
            // Keys made after the rotation are wrapped by the new master key.
            for i in 5..<8 { try await sealCredential(both, i) }
            _ = try await db.write { try await both.retire(masterKeyID: oldMaster.id, in: $0) }
            try await expectAllOpen(try MasterKeyRing(keys: [newMaster]), "after the master key rotated and the old one was retired")
            await #expect(throws: PortalError.self, "the retired master key opens nothing") {
                try await db.read { try await CredentialVault(ring: try MasterKeyRing(keys: [oldMaster])).open(credentials[0].0, organizationID: org, context: credentials[0].1, in: $0) }
            }
        }
    }

    @Test("on PostgreSQL a sealing transaction never waits for another that holds the key's count; the count is recorded later")
    func concurrentSealersDoNotWait() async throws {
        guard Backend.available.contains(.postgres) else { return }
        try await TestDatabase.with(.postgres) { (_: TestDatabase, db: Database) async throws in
            let vault = CredentialVault(ring: try ring())
            let org = try await makeOrg(db, "a")
            _ = try await db.write { try await vault.seal(Data("first".utf8), organizationID: org, context: "c:0", in: $0) }
            // The outer transaction holds the key's row (it recorded a seal) while an inner one seals and commits:
            // were the inner one to wait for the row, neither would finish.
            try await db.write { outer in
                _ = try await vault.seal(Data("outer".utf8), organizationID: org, context: "c:1", in: outer)
                _ = try await db.write { inner in try await vault.seal(Data("inner".utf8), organizationID: org, context: "c:2", in: inner) }
            }
            #expect(try await keys(db, org).map(\.sealed) == [2], "the inner seal is not recorded yet")
            _ = try await db.write { try await vault.seal(Data("later".utf8), organizationID: org, context: "c:3", in: $0) }
            #expect(try await keys(db, org).map(\.sealed) == [4], "recorded with the next seal")
        }
    }
}
