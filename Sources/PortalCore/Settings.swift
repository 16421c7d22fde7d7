public import Foundation

/// Every setting of the service, with its `PORTAL_*` environment variable and default.
///
/// swift-argument-parser has no environment fallback, so the CLI resolves each value as: flag, then
/// environment variable, then default. The README's configuration table lists the same entries.
public struct PortalSettings: Sendable, Equatable {
    /// Address the HTTP listener binds to.
    public var host: String = "127.0.0.1"
    /// Port the HTTP listener binds to (0 picks a free one).
    public var port: Int = 8080
    /// `sqlite:///absolute/path`, `sqlite://relative/path` or `postgres://user:password@host:port/db`.
    public var databaseURL: String = "sqlite://var/portal.sqlite"
    /// Base64 of the 32-byte master key; takes precedence over the key file.
    public var masterKey: String?
    /// A file holding master keys, one base64 key per line; the first wraps new data keys.
    public var masterKeyFile: String?
    /// The URL the portal is reached at; its host names ledger origins and webhook URLs.
    public var publicURL: String?
    /// A directory to publish every signed checkpoint to (outside the database), if any.
    public var checkpointDir: String?
    /// Largest request body accepted by the API, in bytes.
    public var maxBodyBytes: Int = 1 << 20
    /// Outbound destinations allowed past the internal-address check (and to plain HTTP): comma-separated
    /// host names, addresses and CIDR ranges.
    public var outboundAllow: String = ""
    /// A provider catalog file (YAML) used instead of the built-in one.
    public var catalogPath: String?
    /// trace, debug, info, notice, warning, error or critical.
    public var logLevel: String = "info"
    /// `json` (one object per line) or `text`.
    public var logFormat: String = "json"
    /// The bearer token of the platform-wide `/metrics`; when unset, one is generated on first start,
    /// printed once, and kept as a SHA-256 digest.
    public var metricsToken: String?
    /// An alert rule file (YAML) used instead of the built-in rules.
    public var alertRulesPath: String?
    /// Seconds between periodic verifications of every ledger (default one hour).
    public var ledgerVerifyInterval: TimeInterval = 3600
    /// Whether calls, webhooks and syncs feed the metrics collector (off only to measure its cost).
    public var monitoring: Bool = true
    /// Seconds between retention runs (default one hour).
    public var retentionInterval: TimeInterval = 3600
    /// The folder of report templates and control mappings (`templates/`, `mappings/`).
    public var reportsDirectory: String = "reports"

    public init() {}

    /// The documented environment variables, in the order the README lists them.
    public static let environmentVariables: [(name: String, meaning: String)] = [
        ("PORTAL_HOST", "listener address (default 127.0.0.1)"),
        ("PORTAL_PORT", "listener port (default 8080)"),
        ("PORTAL_DATABASE_URL", "database URL (default sqlite://var/portal.sqlite)"),
        ("PORTAL_MASTER_KEY", "base64 of the 32-byte master key"),
        ("PORTAL_MASTER_KEY_FILE", "file of base64 master keys, newest first"),
        ("PORTAL_PUBLIC_URL", "public base URL (default http://localhost:PORT)"),
        ("PORTAL_CHECKPOINT_DIR", "directory to publish signed checkpoints to"),
        ("PORTAL_MAX_BODY_BYTES", "API body limit in bytes (default 1048576)"),
        ("PORTAL_OUTBOUND_ALLOW", "outbound hosts, addresses or CIDRs allowed although internal (and over plain HTTP)"),
        ("PORTAL_CATALOG", "provider catalog YAML file used instead of the built-in one"),
        ("PORTAL_LOG_LEVEL", "log level (default info)"),
        ("PORTAL_LOG_FORMAT", "json or text (default json)"),
        ("PORTAL_METRICS_TOKEN", "bearer token of /metrics (default: generated on first start and printed once)"),
        ("PORTAL_ALERT_RULES", "alert rule YAML file used instead of the built-in rules"),
        ("PORTAL_LEDGER_VERIFY_INTERVAL", "how often every ledger is verified (default 1h)"),
        ("PORTAL_MONITORING", "on or off: feed the metrics collector (default on)"),
        ("PORTAL_RETENTION_INTERVAL", "how often retention periods are applied (default 1h)"),
        ("PORTAL_REPORTS_DIR", "folder of report templates and control mappings (default reports)"),
    ]

    /// Settings from `PORTAL_*` variables over the defaults.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws(PortalError) -> PortalSettings {
        var s = PortalSettings()
        if let v = env["PORTAL_HOST"], !v.isEmpty { s.host = v }
        if let v = env["PORTAL_PORT"], !v.isEmpty {
            guard let p = Int(v), (0...65535).contains(p) else {
                throw PortalError(.configuration, "PORTAL_PORT must be a port number")
            }
            s.port = p
        }
        if let v = env["PORTAL_DATABASE_URL"], !v.isEmpty { s.databaseURL = v }
        if let v = env["PORTAL_MASTER_KEY"], !v.isEmpty { s.masterKey = v }
        if let v = env["PORTAL_MASTER_KEY_FILE"], !v.isEmpty { s.masterKeyFile = v }
        if let v = env["PORTAL_PUBLIC_URL"], !v.isEmpty { s.publicURL = v }
        if let v = env["PORTAL_CHECKPOINT_DIR"], !v.isEmpty { s.checkpointDir = v }
        if let v = env["PORTAL_MAX_BODY_BYTES"], !v.isEmpty {
            guard let n = Int(v), n > 0 else {
                throw PortalError(.configuration, "PORTAL_MAX_BODY_BYTES must be a positive integer")
            }
            s.maxBodyBytes = n
        }
        if let v = env["PORTAL_OUTBOUND_ALLOW"], !v.isEmpty { s.outboundAllow = v }
        if let v = env["PORTAL_CATALOG"], !v.isEmpty { s.catalogPath = v }
        if let v = env["PORTAL_LOG_LEVEL"], !v.isEmpty { s.logLevel = v }
        if let v = env["PORTAL_LOG_FORMAT"], !v.isEmpty { s.logFormat = v }
        if let v = env["PORTAL_METRICS_TOKEN"], !v.isEmpty {
            guard v.count >= 16 else { throw PortalError(.configuration, "PORTAL_METRICS_TOKEN must be at least 16 characters") }
            s.metricsToken = v
        }
        if let v = env["PORTAL_ALERT_RULES"], !v.isEmpty { s.alertRulesPath = v }
        if let v = env["PORTAL_LEDGER_VERIFY_INTERVAL"], !v.isEmpty {
            guard let seconds = try? DurationText.seconds(v, field: "PORTAL_LEDGER_VERIFY_INTERVAL"), seconds >= 60 else {
                throw PortalError(.configuration, "PORTAL_LEDGER_VERIFY_INTERVAL must be a duration of at least 1m (for example 1h)")
            }
            s.ledgerVerifyInterval = seconds
        }
        if let v = env["PORTAL_REPORTS_DIR"], !v.isEmpty { s.reportsDirectory = v }
        if let v = env["PORTAL_RETENTION_INTERVAL"], !v.isEmpty {
            guard let seconds = try? DurationText.seconds(v, field: "PORTAL_RETENTION_INTERVAL"), seconds >= 60 else {
                throw PortalError(.configuration, "PORTAL_RETENTION_INTERVAL must be a duration of at least 1m (for example 1h)")
            }
            s.retentionInterval = seconds
        }
        if let v = env["PORTAL_MONITORING"], !v.isEmpty {
            guard ["on", "off"].contains(v) else { throw PortalError(.configuration, "PORTAL_MONITORING must be on or off") }
            s.monitoring = v == "on"
        }
        return s
    }

    /// The public URL, defaulting to `http://localhost:<port>`, without a trailing slash.
    public var effectivePublicURL: String {
        var url = publicURL ?? "http://localhost:\(port)"
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }
}
