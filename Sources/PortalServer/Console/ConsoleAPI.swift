import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PortalCore
import Synchronization

/// The console's way to the data: it calls the API's own routes in process, as the session's caller. The
/// route table, the role checks, the organization scoping, the validation and its messages are the API's,
/// so a page can only show what the same token could fetch, and a refused action is refused by the route
/// that would refuse the API call (and ledgered the same way).
final class ConsoleAPI: Sendable {
    /// What a route answered.
    struct Answer: Sendable {
        var status: HTTPResponse.Status
        var json: JSONValue
        var headers: HTTPFields

        var ok: Bool { (200..<300).contains(status.code) }
        /// The problem's detail, for an error answer.
        var detail: String { json.objectValue?["detail"]?.stringValue ?? "the request failed (\(status.code))" }
        /// The problem's messages by JSON pointer (`/name`, `/auth/type`), for a 422.
        var fieldErrors: [String: String] {
            var errors: [String: String] = [:]
            for item in json.objectValue?["errors"]?.arrayValue ?? [] {
                if let pointer = item.objectValue?["pointer"]?.stringValue, let message = item.objectValue?["message"]?.stringValue {
                    errors[pointer, default: ""] += errors[pointer] == nil ? message : "; " + message
                }
            }
            return errors
        }
    }

    /// The most bytes of an answer the console reads (a page shows lists, never bulk data).
    static let answerLimit = 8 << 20

    private let responder = Mutex<RouterResponder<PortalRequestContext>?>(nil)

    init() {}

    /// Set once the router is complete.
    func attach(_ responder: RouterResponder<PortalRequestContext>) {
        self.responder.withLock { $0 = responder }
    }

    /// Calls `method path` (path with its query) as `principal`, with `body` as JSON when given.
    func call(
        _ method: HTTPRequest.Method, _ path: String, body: JSONValue? = nil, as principal: Principal, context: PortalRequestContext
    ) async throws -> Answer {
        try await Self.answer(try await respond(method, path, body: body, as: principal, context: context))
    }

    /// The route's response to `method path` as `principal`.
    private func respond(
        _ method: HTTPRequest.Method, _ path: String, body: JSONValue?, as principal: Principal, context: PortalRequestContext
    ) async throws -> Response {
        guard let responder = responder.withLock({ $0 }) else { throw PortalError(.unavailable, "the console is starting") }
        var fields: HTTPFields = [.accept: "application/json"]
        var buffer = ByteBuffer()
        if let body {
            buffer = ByteBuffer(bytes: JSONOutput.encode(body))
            fields[.contentType] = "application/json"
            fields[.contentLength] = String(buffer.readableBytes)
        }
        let head = HTTPRequest(method: method, scheme: "http", authority: "console", path: path, headerFields: fields)
        var inner = context
        inner.principal = principal
        return try await responder.respond(to: Request(head: head, body: RequestBody(buffer: buffer)), context: inner)
    }

    /// A response read whole (up to ``answerLimit``), its body as JSON (or text when it is not JSON).
    private static func answer(_ response: Response) async throws -> Answer {
        let collector = Collector(limit: answerLimit)
        try await response.body.write(CollectingWriter(collector: collector))
        let bytes = try collector.bytes()
        let json: JSONValue = bytes.isEmpty ? .null : (try? JSONValue.parse(bytes)) ?? .string(String(decoding: bytes, as: UTF8.self))
        return Answer(status: response.status, json: json, headers: response.headers)
    }

    /// A download (an evidence bundle, a ledger export): the route's response as it is, streamed, with the
    /// console's security headers; an error answer becomes the page's error.
    func forward(_ path: String, as principal: Principal, context: PortalRequestContext) async throws -> Response {
        let response = try await respond(.get, path, body: nil, as: principal, context: context)
        guard (200..<300).contains(response.status.code) else { throw ConsolePageError(try await Self.answer(response)) }
        var headers = response.headers
        headers[.requestID] = nil
        return ConsoleSecurity.secured(Response(status: response.status, headers: headers, body: response.body))
    }

    /// Like ``call(_:_:body:as:context:)`` for a page's data: an error answer becomes the error it stands for.
    func fetch(_ path: String, as principal: Principal, context: PortalRequestContext) async throws -> JSONValue {
        let answer = try await call(.get, path, as: principal, context: context)
        guard answer.ok else { throw ConsolePageError(answer) }
        return answer.json
    }
}

/// An API answer that stops a page: shown as the page's error with the API's status and detail.
struct ConsolePageError: Error {
    var answer: ConsoleAPI.Answer
    init(_ answer: ConsoleAPI.Answer) { self.answer = answer }
}

private final class Collector: Sendable {
    private let state = Mutex<(bytes: [UInt8], overflow: Bool)>(([], false))
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func append(_ buffer: ByteBuffer) {
        state.withLock { state in
            if state.bytes.count + buffer.readableBytes > limit { state.overflow = true } else { state.bytes += buffer.readableBytesView }
        }
    }

    func bytes() throws(PortalError) -> [UInt8] {
        let (bytes, overflow) = state.withLock { ($0.bytes, $0.overflow) }
        if overflow { throw PortalError(.payloadTooLarge, "the answer is larger than a console page shows") }
        return bytes
    }
}

private struct CollectingWriter: ResponseBodyWriter {
    let collector: Collector

    mutating func write(_ buffer: ByteBuffer) async throws { collector.append(buffer) }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
