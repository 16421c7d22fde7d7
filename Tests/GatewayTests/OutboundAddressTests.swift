import AsyncHTTPClient
import Crypto
import Foundation
@testable import Gateway
import Integrations
import Ledger
import NIOCore
import NIOPosix
import NIOSSL
import PortalCore
import PortalTestSupport
import Storage
import Synchronization
import Testing

/// Issue 16 item 14: the gateway connects to the address its outbound policy vetted (no DNS rebinding
/// between the check and the connection), refuses IPv6 forms that wrap internal IPv4 addresses, and never
/// echoes a DNS answer in a refusal. No test resolves a name or contacts anything but 127.0.0.1: names are
/// answered by ``ScriptedResolver``.
@Suite("Outbound addresses and DNS rebinding")
struct OutboundAddressTests {
    @Test("IPv6 forms wrapping or reaching internal addresses are internal; global ones wrapping public IPv4 are not")
    func ipv6Classification() throws {
        let inside = [
            // IPv4-compatible ::/96 (all of it), IPv4-mapped and IPv4-translated forms.
            "::127.0.0.1", "::10.0.0.1", "::169.254.169.254", "::8.8.8.8", "::", "::1",
            "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:0:127.0.0.1", "::ffff:0:8.8.8.8",
            // Site-local fec0::/10, link-local, unique-local, multicast, discard-only.
            "fec0::1", "fec0:0:0:ffff::1", "feff::1", "fe80::1", "fd00::1", "ff02::1", "100::1",
            // 6to4 2002::/16 wrapping internal IPv4 (127.0.0.1, 10.0.0.1, 169.254.169.254, 192.168.1.1).
            "2002:7f00:1::1", "2002:a00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101:1::1",
            // NAT64 64:ff9b::/96 wrapping internal IPv4, and the local-use NAT64 prefix.
            "64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::10.1.2.3", "64:ff9b:1::8.8.8.8",
            // Teredo 2001::/32 (all of it) and documentation 2001:db8::/32.
            "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:db8::1",
        ]
        for text in inside {
            let address = try #require(IPAddress(text), "\(text)")
            #expect(address.isInternal, "\(text) should be internal")
        }
        let external = ["2606:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:80b::200e", "2002:808:808::1", "64:ff9b::8.8.8.8", "::ffff:8.8.8.8"]
        for text in external {
            let address = try #require(IPAddress(text), "\(text)")
            #expect(!address.isInternal, "\(text) should be external")
        }
    }

    @Test("URLs naming those IPv6 forms are refused by the policy, and an allow-listed literal is not pinned")
    func ipv6LiteralsRefused() async throws {
        let policy = OutboundPolicy(resolver: ScriptedResolver().resolve)
        for host in ["[::127.0.0.1]", "[::ffff:127.0.0.1]", "[fec0::1]", "[2002:7f00:1::1]", "[64:ff9b::7f00:1]", "[2001::1]", "[::ffff:0:7f00:1]"] {
            let error = await #expect(throws: PortalError.self, "\(host)") { try await policy.check(try #require(URL(string: "https://\(host)/x"))) }
            #expect(error?.code == .refused, "\(host)")
        }
        let allowed = try OutboundPolicy(allowList: "127.0.0.1")
        let literal = try await allowed.check(try #require(URL(string: "http://127.0.0.1:9/x")))
        #expect(literal.address == nil && literal.host == "127.0.0.1")
    }

    @Test("a refusal names the host the caller gave, never an address a DNS answer gave")
    func refusalEchoesNoAnswer() async throws {
        let answers = ["10.11.12.13", "fd12:3456::7", "::ffff:10.9.8.7", "2002:a0b:c0d::1", "::172.16.5.4"]
        for answer in answers {
            let resolver = ScriptedResolver(["intranet.example.test": [[answer]]])
            let policy = OutboundPolicy(resolver: resolver.resolve)
            let error = await #expect(throws: PortalError.self) { try await policy.check(try #require(URL(string: "https://intranet.example.test/x"))) }
            let message = try #require(error?.message)
            #expect(error?.code == .refused)
            #expect(message.contains("intranet.example.test"), "\(message)")
            for text in [answer, try #require(IPAddress(answer)).description, "10.11.12.13", "10.9.8.7", "172.16.5.4"] {
                #expect(!message.contains(text), "\(message) shows \(text)")
            }
        }
        // A name that does not resolve names only the host, too.
        let error = await #expect(throws: PortalError.self) { try await OutboundPolicy(resolver: ScriptedResolver().resolve).check(try #require(URL(string: "https://gone.example.test/x"))) }
        #expect(error?.message == "the destination host gone.example.test does not resolve")
    }

    @Test("rebinding at the seam: the first (public) answer is what the connection is pinned to; the next (loopback) one is never used for it")
    func rebindingPinsFirstAnswer() async throws {
        // Addresses only as data: nothing connects here.
        let resolver = ScriptedResolver(["rebind.example.test": [["8.8.4.4"], ["127.0.0.1"]]])
        let policy = OutboundPolicy(resolver: resolver.resolve)
        let url = try #require(URL(string: "https://rebind.example.test/v1/x"))
        let destination = try await policy.check(url)
        #expect(destination.address == IPAddress("8.8.4.4") && destination.host == "rebind.example.test")
        #expect(resolver.calls == 1)
        // The pinned client connects to the vetted address whenever the URL names the host: no second lookup.
        let request = try HTTPClient.Request(url: url)
        let pinned = OutboundClients.pinned(Gateway.clientConfiguration(), host: request.host, to: try #require(destination.address))
        #expect(pinned.dnsOverride == ["rebind.example.test": "8.8.4.4"])
        #expect(Gateway.clientConfiguration().dnsOverride.isEmpty)
        // A destination vetted for one host does not cover another.
        let elsewhere = try #require(URL(string: "https://other.example.test/v1/x"))
        #expect(destination.covers(url) && !destination.covers(elsewhere))
        // The next check sees the rebound (loopback) answer and refuses without naming it.
        let error = await #expect(throws: PortalError.self) { try await policy.check(url) }
        #expect(error?.code == .refused && error?.message.contains("127.0.0.1") == false)
        #expect(resolver.calls == 2)
    }

    @Test("rebinding through the gateway: the call reaches the vetted 127.0.0.1 with the name as Host; the rebound answer is refused and never stored", arguments: Backend.available)
    func rebindingThroughGateway(backend: Backend) async throws {
        let upstream = try await RecordingServer.start()
        defer { upstream.stop() }
        try await TestDatabase.with(backend) { _, db in
            let org = Organization(id: IdentifierGenerator.shared.next(), slug: "acme", name: "Acme", createdAt: Date())
            try await db.write { try await OrganizationStore($0).insert(org) }
            let sequencer = LedgerSequencer(database: db, logger: quietLogger)
            let vault = CredentialVault(ring: try MasterKeyRing.load(masterKey: MasterKeyRing.generateBase64(), keyFile: nil))
            let registry = IntegrationRegistry(database: db, vault: vault, audit: sequencer, defaultPolicy: OrganizationPolicy(approvals: .off))
            // The made-up name answers 127.0.0.1 first, then 127.0.0.2 (where nothing listens), then 127.0.0.1.
            let resolver = ScriptedResolver(["api.rebind.test": [["127.0.0.1"], ["127.0.0.2"], ["127.0.0.1"]]])
            let gateway = Gateway(
                database: db, vault: vault, registry: registry, audit: sequencer, logger: quietLogger,
                configuration: .init(policy: try OutboundPolicy(allowList: "127.0.0.1", resolver: resolver.resolve)), sleep: { _ in }
            )
            let admin = Principal(tokenID: UUID(), organizationID: org.id, organizationSlug: "acme", role: .admin, owner: "admin@acme")
            try await GatewayEnvironment.running(sequencer, gateway) {
                let base = "http://api.rebind.test:\(upstream.port)"
                let view = try await registry.register(
                    try IntegrationInput.parse([
                        "name": "Rebinding", "type": "analytics", "baseUrl": .string(base), "authMethod": "api_key",
                        "credentials": ["apiKey": "k-rebind-123456"],
                    ]),
                    by: admin
                )
                let id = try #require(UUID(uuidString: view.id))
                let first = try await gateway.execute(APIRequest(method: "GET", endpoint: "/echo/pinned"), integrationID: id, by: admin)
                #expect(first.status == 200 && first.body == "ok")
                // It reached the server on 127.0.0.1, named by the host the caller gave.
                #expect(upstream.log.requests == ["GET /echo/pinned"])
                #expect(upstream.log.hosts == ["api.rebind.test:\(upstream.port)"])
                // One resolution for the call: the second answer was not consulted to connect.
                #expect(resolver.calls == 1)

                // The name now answers 127.0.0.2: refused before any connection, without the answer.
                let error = await #expect(throws: PortalError.self) {
                    try await gateway.execute(APIRequest(method: "GET", endpoint: "/echo/rebound"), integrationID: id, by: admin)
                }
                #expect(error?.code == .refused)
                #expect(error?.message.contains("api.rebind.test") == true && error?.message.contains("127.0.0.2") == false)
                #expect(upstream.log.requests.count == 1)
                #expect(resolver.calls == 2)

                // Back on 127.0.0.1: served again through the pinned client.
                let third = try await gateway.execute(APIRequest(method: "GET", endpoint: "/echo/again"), integrationID: id, by: admin)
                #expect(third.status == 200 && upstream.log.requests.last == "GET /echo/again")
                #expect(resolver.calls == 3)

                // Nothing stored names an address a DNS answer gave.
                let stored = try await db.read { tx in
                    let entries = try await LedgerStore(tx).entries(org.id, from: 0, limit: 10_000).map { String(decoding: $0.bytes, as: UTF8.self) }
                    let rows = try await IntegrationRequestStore(tx).list(organizationID: org.id, integrationID: id, limit: 100)
                    return (entries + rows.map { "\($0.endpoint) \($0.errorMessage ?? "")" }).joined(separator: "\n")
                }
                #expect(stored.contains("the outbound policy refused the destination"))
                #expect(!stored.contains("127.0.0.2"))
            }
        }
    }

    @Test("TLS to a pinned address: SNI and certificate verification use the URL's name, not the address connected to")
    func pinnedTLSVerifiesName() async throws {
        // Valid for the name only: verified against 127.0.0.1 (what an address-literal URL would do), it fails.
        let certificate = try SelfSignedCertificate(name: "api.rebind.test")
        let server = try await RecordingServer.start(tls: certificate)
        var configuration = Gateway.clientConfiguration()
        var tls = try #require(configuration.tlsConfiguration)
        tls.trustRoots = .certificates([certificate.certificate])
        configuration.tlsConfiguration = tls
        let clients = OutboundClients(configuration: configuration)
        let policy = try OutboundPolicy(
            allowList: "127.0.0.1", resolver: ScriptedResolver(["api.rebind.test": [["127.0.0.1"]], "other.rebind.test": [["127.0.0.1"]]]).resolve
        )
        do {
            // The name the certificate holds: verified, sent as SNI and Host, connected to 127.0.0.1.
            let url = try #require(URL(string: "https://api.rebind.test:\(server.port)/tls"))
            let request = try HTTPClient.Request(url: url)
            let destination = try await policy.check(url)
            let response = try await clients.with(request, to: destination) { try await $0.execute(request: request, deadline: .now() + .seconds(10)).get() }
            #expect(response.body.map { String(buffer: $0) } == "ok")
            #expect(server.log.requests == ["GET /tls"])
            #expect(server.log.serverNames == ["api.rebind.test"])
            #expect(server.log.hosts == ["api.rebind.test:\(server.port)"])
            #expect(clients.pinnedCount == 1)

            // Another name pinned to the same address: the certificate is not valid for it, and the handshake
            // fails before any request is sent.
            let otherURL = try #require(URL(string: "https://other.rebind.test:\(server.port)/tls"))
            let other = try HTTPClient.Request(url: otherURL)
            let otherDestination = try await policy.check(otherURL)
            await #expect(throws: (any Error).self) {
                _ = try await clients.with(other, to: otherDestination) { try await $0.execute(request: other, deadline: .now() + .seconds(10)).get() }
            }
            #expect(server.log.hosts.count == 1)
            #expect(server.log.serverNames.last == "other.rebind.test")

            // A request whose host is not the vetted one is refused before any connection.
            await #expect(throws: PortalError.self) {
                _ = try await clients.with(other, to: destination) { try await $0.execute(request: other, deadline: .now() + .seconds(10)).get() }
            }
        } catch {
            try await clients.shutdown()
            server.stop()
            throw error
        }
        try await clients.shutdown()
        server.stop()
    }
}

/// A test's DNS: per host name, the answers of successive lookups (the last repeats); counts lookups.
final class ScriptedResolver: Sendable {
    private let answers: Mutex<[String: [[String]]]>
    private let count = Mutex(0)

    init(_ answers: [String: [[String]]] = [:]) { self.answers = Mutex(answers) }

    /// How many lookups were made.
    var calls: Int { count.withLock { $0 } }

    /// The next answer for `host` (nothing for an unknown host).
    @Sendable func resolve(_ host: String) async -> [IPAddress] {
        count.withLock { $0 += 1 }
        let next = answers.withLock { answers -> [String] in
            guard var queue = answers[host], let first = queue.first else { return [] }
            if queue.count > 1 { queue.removeFirst() }
            answers[host] = queue
            return first
        }
        return next.compactMap(IPAddress.init)
    }
}

/// A P-256 certificate made at test time: self-signed, for one DNS name (its only subject alternative name).
struct SelfSignedCertificate {
    let certificate: NIOSSLCertificate
    let privateKey: NIOSSLPrivateKey

    init(name: String) throws {
        let key = P256.Signing.PrivateKey()
        /// One DER element: tag, definite length, content.
        func tlv(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
            let n = content.count
            let length: [UInt8] = n < 0x80 ? [UInt8(n)] : n < 0x100 ? [0x81, UInt8(n)] : [0x82, UInt8(n >> 8), UInt8(n & 0xFF)]
            return [tag] + length + content
        }
        let ecdsaWithSHA256: [UInt8] = tlv(0x30, [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02])
        let subject = tlv(0x30, tlv(0x31, tlv(0x30, [0x06, 0x03, 0x55, 0x04, 0x03] + tlv(0x0C, Array(name.utf8)))))
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyMMddHHmmss'Z'"
        let validity = tlv(0x30, tlv(0x17, Array(formatter.string(from: Date().addingTimeInterval(-3600)).utf8)) + tlv(0x17, Array(formatter.string(from: Date().addingTimeInterval(86_400)).utf8)))
        let alternativeNames = tlv(0x30, tlv(0x82, Array(name.utf8)))
        let extensions = tlv(0xA3, tlv(0x30, tlv(0x30, [0x06, 0x03, 0x55, 0x1D, 0x11] + tlv(0x04, alternativeNames))))
        let tbs = tlv(
            0x30,
            tlv(0xA0, [0x02, 0x01, 0x02]) + [0x02, 0x01, 0x01] + ecdsaWithSHA256 + subject + validity + subject + Array(key.publicKey.derRepresentation) + extensions
        )
        let signature = try key.signature(for: tbs).derRepresentation
        let der = tlv(0x30, tbs + ecdsaWithSHA256 + tlv(0x03, [0x00] + Array(signature)))
        certificate = try NIOSSLCertificate(bytes: der, format: .der)
        privateKey = try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem)
    }
}

/// A server on 127.0.0.1 (TLS when given a certificate) that answers every request `200 ok` and notes the
/// request lines, Host headers and SNI names it got.
struct RecordingServer {
    /// What the server saw.
    final class Log: Sendable {
        private let state = Mutex<(names: [String], hosts: [String], requests: [String])>(([], [], []))
        var serverNames: [String] { state.withLock { $0.names } }
        var hosts: [String] { state.withLock { $0.hosts } }
        var requests: [String] { state.withLock { $0.requests } }
        /// Notes a TLS client hello's SNI name.
        func sawName(_ name: String?) { state.withLock { $0.names.append(name ?? "") } }
        /// Notes a request line and its Host header.
        func saw(request: String, host: String) { state.withLock { $0.requests.append(request); $0.hosts.append(host) } }
    }

    let channel: any Channel
    let port: Int
    let log: Log

    /// Starts the server; with `certificate`, over TLS.
    static func start(tls certificate: SelfSignedCertificate? = nil) async throws -> RecordingServer {
        let log = Log()
        let context = try certificate.map { certificate in
            var tls = TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(certificate.certificate)], privateKey: .privateKey(certificate.privateKey))
            tls.sslContextCallback = { values, promise in
                log.sawName(values.serverHostname)
                promise.succeed(.noChanges)
            }
            return try NIOSSLContext(configuration: tls)
        }
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) }
                    try channel.pipeline.syncOperations.addHandler(Responder(log: log))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return RecordingServer(channel: channel, port: try #require(channel.localAddress?.port), log: log)
    }

    /// Closes the listening socket.
    func stop() { channel.close(promise: nil) }

    /// Reads one request head, notes it, answers and closes.
    final class Responder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let log: Log
        var received = ""

        init(log: Log) { self.log = log }

        /// Collects the request head; once complete, notes it and answers.
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += String(buffer: unwrapInboundIn(data))
            guard received.contains("\r\n\r\n") else { return }
            let lines = received.components(separatedBy: "\r\n")
            let requestLine = lines[0].split(separator: " ").prefix(2).joined(separator: " ")
            let host = lines.first { $0.lowercased().hasPrefix("host:") }.map { $0.dropFirst(5).trimmingCharacters(in: .whitespaces) }
            log.saw(request: requestLine, host: host ?? "")
            received = ""
            let answer = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer)), promise: nil)
            context.close(promise: nil)
        }
    }
}
