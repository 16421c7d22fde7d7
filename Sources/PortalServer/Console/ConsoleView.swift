import Foundation
import Hummingbird
import Mustache
import PortalCore

/// The console's templates and static files, read once from the resources of `PortalServer`
/// (`Resources/console/templates/*.mustache`, `Resources/console/static/`). Mustache escapes every value;
/// the pages carry no inline script or style, so the CSP can forbid both.
struct ConsoleView: Sendable {
    private let library: MustacheLibrary
    private let assets: [String: (bytes: [UInt8], type: String)]

    init() throws(PortalError) {
        guard let root = Bundle.module.resourceURL?.appendingPathComponent("console") else {
            throw PortalError(.internal, "the console's resources are missing from the build")
        }
        var library = MustacheLibrary()
        var assets: [String: (bytes: [UInt8], type: String)] = [:]
        let files = FileManager.default
        let templates = root.appendingPathComponent("templates")
        for name in (try? files.contentsOfDirectory(atPath: templates.path)) ?? [] where name.hasSuffix(".mustache") {
            guard let data = files.contents(atPath: templates.appendingPathComponent(name).path) else { continue }
            do {
                try library.register(String(decoding: data, as: UTF8.self), named: String(name.dropLast(".mustache".count)))
            } catch {
                throw PortalError(.internal, "the console template \(name) does not parse")
            }
        }
        let statics = root.appendingPathComponent("static")
        for name in (try? files.contentsOfDirectory(atPath: statics.path)) ?? [] {
            guard let data = files.contents(atPath: statics.appendingPathComponent(name).path) else { continue }
            let type =
                name.hasSuffix(".css") ? "text/css; charset=utf-8"
                : name.hasSuffix(".js") ? "text/javascript; charset=utf-8"
                : name.hasSuffix(".svg") ? "image/svg+xml" : "application/octet-stream"
            assets[name] = (Array(data), type)
        }
        guard library.getTemplate(named: "layout") != nil, assets["console.css"] != nil else {
            throw PortalError(.internal, "the console's resources are incomplete")
        }
        self.library = library
        self.assets = assets
    }

    /// The page `template` rendered with `values`.
    func render(_ template: String, _ values: [String: Any]) throws(PortalError) -> String {
        guard let html = library.render(values, withTemplate: template) else {
            throw PortalError(.internal, "no console template named \(template)")
        }
        return html
    }

    /// A static file by name, with its content type.
    func asset(_ name: String) -> (bytes: [UInt8], type: String)? { assets[name] }
}

/// Turns API answers into what templates show.
enum Show {
    /// A JSON value as Mustache context: objects and arrays as Swift collections, null left out.
    static func context(_ value: JSONValue) -> Any? {
        switch value {
        case .null: nil
        case .bool(let b): b
        case .int(let i): i
        case .double(let d): d
        case .string(let s): s
        case .array(let items): items.compactMap(context)
        case .object(let members): members.compactMapValues(context)
        }
    }

    /// A number, for display.
    static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .int(let i)?: Double(i)
        case .double(let d)?: d
        default: nil
        }
    }

    /// A share (0 to 1) as a percentage with one decimal; an em dash when there is none.
    static func percent(_ value: JSONValue?) -> String {
        guard let v = number(value) else { return "—" }
        return String(format: "%.1f%%", v * 100)
    }

    /// Milliseconds with at most one decimal; an em dash when there is none.
    static func milliseconds(_ value: JSONValue?) -> String {
        guard let v = number(value) else { return "—" }
        return v >= 100 ? String(format: "%.0f ms", v) : String(format: "%.1f ms", v)
    }

    /// An integer with thousands separators.
    static func count(_ value: JSONValue?) -> String {
        guard let v = number(value) else { return "0" }
        let digits = String(Int64(v))
        var out = ""
        for (i, c) in digits.reversed().enumerated() {
            if i > 0, i % 3 == 0, c != "-" { out.append(",") }
            out.append(c)
        }
        return String(out.reversed())
    }

    /// An RFC 3339 time as `2026-12-05 08:45 UTC`.
    static func time(_ value: JSONValue?) -> String? {
        guard let text = value?.stringValue, let date = Timestamp.parse(text) else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        return String(format: "%04d-%02d-%02d %02d:%02d UTC", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0, c.minute ?? 0)
    }

    /// JSON indented two spaces, members sorted, for reading.
    static func prettyJSON(_ value: JSONValue) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: context(value) ?? NSNull(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed]) else {
            return value.sortedText
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// A status or health word as a badge class: `ok`, `warn`, `bad` or `idle`.
    static func badge(_ word: String?) -> String {
        switch word {
        case "active", "healthy", "completed", "processed", "resolved", "ok": "ok"
        case "degraded", "pending", "running", "paused", "firing", "retrying": "warn"
        case "error", "failing", "failed", "unhealthy", "revoked", "dead_lettered", "disabled": "bad"
        default: "idle"
        }
    }
}

/// Charts drawn on the server as SVG (no script, no style attribute: the CSP allows neither inline).
enum Chart {
    /// Bars of requests per step with their failed part, from a series' points.
    static func requests(_ points: [JSONValue], label: String) -> String {
        let values = points.map { (Show.number($0.objectValue?["requests"]) ?? 0, Show.number($0.objectValue?["errors"]) ?? 0) }
        let top = max(1, values.map(\.0).max() ?? 1)
        let width = 600.0, height = 120.0, slot = width / Double(max(1, values.count))
        var bars = ""
        for (i, (total, errors)) in values.enumerated() where total > 0 {
            let x = Double(i) * slot
            let h = total / top * height
            let e = errors / top * height
            bars += rect(x, height - h, max(1, slot - 1), h, fill: "#3b6ea5")
            if e > 0 { bars += rect(x, height - e, max(1, slot - 1), e, fill: "#b42318") }
        }
        return frame(label: label, caption: "requests per step (most \(Show.count(.int(Int64(top))))); failed in red", body: bars, width: width, height: height)
    }

    /// Lines of p50, p95 and p99 latency per step.
    static func latency(_ points: [JSONValue], label: String) -> String {
        let keys = [("p50", "#3b6ea5"), ("p95", "#b26b00"), ("p99", "#b42318")]
        let top = max(1, points.flatMap { p in keys.compactMap { Show.number(p.objectValue?[$0.0]) } }.max() ?? 1)
        let width = 600.0, height = 120.0, slot = width / Double(max(1, points.count))
        var lines = ""
        for (key, color) in keys {
            var path = ""
            for (i, point) in points.enumerated() {
                guard let v = Show.number(point.objectValue?[key]) else { continue }
                let x = (Double(i) + 0.5) * slot, y = height - v / top * height
                path += (path.isEmpty ? "M" : " L") + String(format: "%.1f %.1f", x, y)
                lines += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%@\"/>", x, y, color)
            }
            if !path.isEmpty { lines += "<path d=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>" }
        }
        return frame(label: label, caption: "p50 (blue), p95 (orange), p99 (red), up to \(Show.milliseconds(.double(top)))", body: lines, width: width, height: height)
    }

    /// A line of requests per minute over the last hour, small enough for a table row.
    static func sparkline(_ counts: [JSONValue]) -> String {
        let values = counts.map { Show.number($0) ?? 0 }
        let top = max(1, values.max() ?? 1)
        let total = values.reduce(0, +)
        var path = ""
        for (i, v) in values.enumerated() {
            path += (i == 0 ? "M" : "L") + String(format: "%d %.0f", i, 15 - v / top * 14)
        }
        let label = escape("requests per minute over the last hour: \(Int(total)) in all, at most \(Int(values.max() ?? 0)) a minute")
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 60 16\" width=\"90\" height=\"20\" class=\"spark\" role=\"img\" aria-label=\"\(label)\">"
            + "<title>\(label)</title><path d=\"\(path)\" fill=\"none\" stroke=\"#3b6ea5\" stroke-width=\"1.2\"/></svg>"
    }

    private static func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, fill: String) -> String {
        String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%@\"/>", x, y, w, h, fill)
    }

    private static func frame(label: String, caption: String, body: String, width: Double, height: Double) -> String {
        let text = escape(label + ": " + caption)
        return "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height) + 18)\" class=\"chart\" role=\"img\" aria-label=\"\(text)\">"
            + "<title>\(text)</title><rect x=\"0\" y=\"0\" width=\"\(Int(width))\" height=\"\(Int(height))\" fill=\"#f6f7f9\"/>\(body)"
            + "<text x=\"0\" y=\"\(Int(height) + 14)\" font-size=\"11\" fill=\"#505a66\">\(escape(caption))</text></svg>"
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}

