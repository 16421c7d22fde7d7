import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTLS
import Logging
import NIOSSL
import PortalCore
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The listener's TLS (issue 21): TLS 1.2 and 1.3 only, the hybrid post-quantum group X25519MLKEM768 offered
/// first, the certificate chain and key read from PEM files and read again on SIGHUP (each handshake takes
/// the pair in force; a pair that does not load is refused and the previous one keeps serving).
final class InboundTLS: Sendable {
    struct Pair: Sendable {
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    let certificatePath: String
    let keyPath: String
    private let current: Mutex<Pair>
    let logger: Logger

    /// Groups offered, preferred first.
    static let groups: [NIOTLSCurve] = [.x25519_MLKEM768, .x25519, .secp256r1, .secp384r1]

    init(certificate: String, key: String, logger: Logger) throws(PortalError) {
        certificatePath = certificate
        keyPath = key
        self.logger = logger
        current = Mutex(try Self.load(certificate: certificate, key: key))
    }

    /// Reads and checks a pair: the chain's leaf and the key must belong together.
    static func load(certificate: String, key: String) throws(PortalError) -> Pair {
        do {
            let chain = try NIOSSLCertificate.fromPEMFile(certificate)
            guard !chain.isEmpty else { throw PortalError(.configuration, "\(certificate) holds no PEM certificate") }
            let privateKey = try NIOSSLPrivateKey(file: key, format: .pem)
            // A context made of them fails when the key is not the leaf certificate's.
            _ = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey)))
            return Pair(chain: chain, key: privateKey)
        } catch let error as PortalError {
            throw error
        } catch {
            throw PortalError(.configuration, "the TLS certificate \(certificate) and key \(key) do not load: \(error)")
        }
    }

    /// Reads the files again; keeps the pair in force when the new one does not load.
    func reload() {
        do {
            let pair = try Self.load(certificate: certificatePath, key: keyPath)
            current.withLock { $0 = pair }
            logger.notice("TLS certificate reloaded", metadata: ["portal.tls_certificate": "\(certificatePath)"])
        } catch {
            logger.error("TLS certificate not reloaded; the previous one keeps serving", metadata: ["portal.error": "\(error.message)"])
        }
    }

    /// The server configuration: versions, groups, and the pair in force at each handshake.
    var configuration: TLSConfiguration {
        let pair = current.withLock { $0 }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: pair.chain.map { .certificate($0) }, privateKey: .privateKey(pair.key))
        tls.minimumTLSVersion = .tlsv12
        tls.maximumTLSVersion = .tlsv13
        tls.curves = Self.groups
        tls.sslContextCallback = { [self] _, promise in
            let pair = self.current.withLock { $0 }
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = pair.chain.map { .certificate($0) }
            override.privateKey = .privateKey(pair.key)
            promise.succeed(override)
        }
        return tls
    }
}

/// Reloads the certificate on SIGHUP, for as long as the service runs.
struct TLSReloadService: Service {
    let tls: InboundTLS

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            tls.reload()
        }
    }
}

/// `Strict-Transport-Security` on every answer of an HTTPS listener (the console's pages and the API's).
struct HSTSMiddleware: RouterMiddleware {
    typealias Context = PortalRequestContext
    static let header = HTTPField.Name("Strict-Transport-Security")!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            var response = try await next(request, context)
            response.headers[Self.header] = "max-age=31536000"
            return response
        } catch let error as any HTTPResponseError {
            var response = try error.response(from: request, context: context)
            response.headers[Self.header] = "max-age=31536000"
            return response
        }
    }
}
