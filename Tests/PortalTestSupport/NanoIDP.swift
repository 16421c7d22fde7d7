import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// A real OAuth 2.0 / OIDC provider for tests: PyPI `nanoidp` (installed in the project venv by `make
/// venv`), started on a free 127.0.0.1 port with a fresh configuration and stopped afterwards.
package struct NanoIDP: Sendable {
    package let port: Int
    package var baseURL: String { "http://127.0.0.1:\(port)" }
    package var tokenURL: String { baseURL + "/token" }
    /// The configured confidential client.
    package static let clientID = "portal-client"
    package static let clientSecret = "portal-secret-123456"
    /// A second confidential client, registered for client_secret_post.
    package static let postClientID = "portal-post-client"
    package static let postClientSecret = "portal-post-secret-654321"

    /// The `nanoidp` executable of the project venv, found from this file's location.
    static var executable: String? {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        let path = url.appendingPathComponent(".venv/bin/nanoidp").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    /// Runs `body` with a running provider.
    package static func with<T: Sendable>(_ body: @Sendable (NanoIDP) async throws -> T) async throws -> T {
        guard let executable else {
            throw TestSupportError("nanoidp is not installed: run 'make venv' (it is in requirements-test.txt)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nanoidp-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: directory) }
        try run(executable, ["init", directory.path])
        let settingsPath = directory.appendingPathComponent("settings.yaml").path
        let template = try String(contentsOfFile: settingsPath, encoding: .utf8)
        // A free port can be taken by another test before nanoidp binds it: nanoidp then exits, and it is
        // started again on another port (three tries) rather than waited for until the timeout.
        for attempt in 1...3 {
            let port = try freePort()
            var settings = template
            settings = settings.replacingOccurrences(of: "port: 8000", with: "port: \(port)")
            settings = settings.replacingOccurrences(of: "issuer: \"http://localhost:8000\"", with: "issuer: \"http://127.0.0.1:\(port)\"")
        settings = settings.replacingOccurrences(of: "client_id: \"demo-client\"", with: "client_id: \"\(clientID)\"")
        settings = settings.replacingOccurrences(of: "client_secret: \"demo-secret\"", with: """
            client_secret: "\(clientSecret)"
                - client_id: "\(postClientID)"
                  client_secret: "\(postClientSecret)"
                  token_endpoint_auth_method: "client_secret_post"
            """)
            try settings.write(toFile: settingsPath, atomically: true, encoding: .utf8)

            // posix_spawn and waitpid, not Foundation's Process: its waitUntilExit spun a core for ever here.
            // In its own folder: nanoidp writes its signing keys (an RSA private key among them) to ./keys.
            let log = directory.appendingPathComponent("nanoidp.log").path
            let pid = try ChildProcess.spawn(executable, ["--config", directory.path, "--host", "127.0.0.1", "--port", String(port)], output: log, directory: directory.path)
            let idp = NanoIDP(port: port)
            // Ready when its discovery document answers (Python starts slowly on a busy machine).
            var exited = false
            let ready = try await eventually(every: .milliseconds(100)) {
                if ChildProcess.hasExited(pid) {
                    exited = true
                    return true
                }
                let probe = HTTPClientRequest(url: idp.baseURL + "/.well-known/openid-configuration")
                let response = try? await HTTPClient.shared.execute(probe, timeout: .seconds(5))
                return response?.status == .ok
            }
            if exited {
                if attempt < 3 { continue }
                let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                throw TestSupportError("nanoidp exited at start three times; last on port \(port): \(output.suffix(500))")
            }
            defer { ChildProcess.stop(pid) }
            guard ready else { throw TestSupportError("nanoidp did not start on port \(port)") }
            return try await body(idp)
        }
        throw TestSupportError("nanoidp did not start")
    }

    /// A refresh token for the configured test user (resource-owner password grant), for refresh tests.
    package func refreshToken() async throws -> String {
        let object = try await postForm("/token", "grant_type=password&username=testuser&password=test123&scope=openid%20offline_access")
        guard let token = object["refresh_token"] as? String else { throw TestSupportError("nanoidp gave no refresh token: \(object)") }
        return token
    }

    /// Whether the provider still considers `token` active (RFC 7662 introspection).
    package func introspect(_ token: String) async throws -> Bool {
        try await postForm("/introspect", "token=\(token)")["active"] as? Bool ?? false
    }

    /// POSTs a form with the test client's Basic credentials and returns the JSON object answered.
    private func postForm(_ path: String, _ form: String) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Authorization", value: "Basic " + Data("\(Self.clientID):\(Self.clientSecret)".utf8).base64EncodedString())
        request.body = .bytes(ByteBuffer(string: form))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let data = Data(try await response.body.collect(upTo: 1 << 20).readableBytesView)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TestSupportError("nanoidp answered \(path) with no JSON object: \(String(decoding: data, as: UTF8.self))")
        }
        return object
    }

    /// Plays the browser: opens `authorizationURL`, logs in as the test user, and returns the `code` and
    /// `state` of the redirect back.
    package func login(authorizationURL: String) async throws -> (code: String, state: String) {
        let page = try await HTTPClient.shared.execute(HTTPClientRequest(url: authorizationURL), timeout: .seconds(10))
        let cookies = page.headers["set-cookie"].map { $0.split(separator: ";").first.map(String.init) ?? "" }.joined(separator: "; ")
        let html = String(buffer: try await page.body.collect(upTo: 1 << 20))
        guard let marker = html.range(of: #"name="transaction_id" value=""#),
              let end = html[marker.upperBound...].firstIndex(of: "\"")
        else { throw TestSupportError("nanoidp's login page has no transaction_id") }
        let transaction = String(html[marker.upperBound..<end])
        var post = HTTPClientRequest(url: authorizationURL)
        post.method = .POST
        post.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        if !cookies.isEmpty { post.headers.add(name: "Cookie", value: cookies) }
        post.body = .bytes(ByteBuffer(string: "transaction_id=\(transaction)&username=testuser&password=test123"))
        // The redirect goes to the portal's callback, which the test calls itself: do not follow it.
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))
        let answer: HTTPClientResponse
        do {
            answer = try await client.execute(post, timeout: .seconds(10))
            try await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
        guard let location = answer.headers.first(name: "location"), let url = URLComponents(string: location),
              let code = url.queryItems?.first(where: { $0.name == "code" })?.value, let state = url.queryItems?.first(where: { $0.name == "state" })?.value
        else { throw TestSupportError("nanoidp did not redirect with a code (HTTP \(answer.status.code))") }
        return (code, state)
    }

    static func run(_ executable: String, _ arguments: [String]) throws {
        let pid = try ChildProcess.spawn(executable, arguments, directory: FileManager.default.temporaryDirectory.path)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        guard status == 0 else { throw TestSupportError("nanoidp \(arguments.first ?? "") failed") }
    }

    /// A port no one listens on right now (bind to 0, read it, close).
    package static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw TestSupportError("bind failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A test environment problem (a missing tool, a peer that did not start).
package struct TestSupportError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}
