package import Foundation

/// Every setting of the service, with its `PORTAL_*` environment variable and default.
///
/// swift-argument-parser has no environment fallback, so the CLI resolves each value as: flag, then
/// environment variable, then default. The README's configuration table lists the same entries.
package struct PortalSettings: Sendable, Equatable {
    /// Address the HTTP listener binds to.
    package var host: String = "127.0.0.1"
    /// Port the HTTP listener binds to (0 picks a free one).
    package var port: Int = 8080
    /// `sqlite:///absolute/path`, `sqlite://relative/path` or `postgres://user:password@host:port/db`.
    package var databaseURL: String = "sqlite://var/portal.sqlite"
    /// Base64 of the 32-byte master key; takes precedence over the key file.
    package var masterKey: String?
    /// A file holding master keys, one base64 key per line; the first wraps new data keys.
    package var masterKeyFile: String?
    /// The URL the portal is reached at; its host names ledger origins and webhook URLs.
    package var publicURL: String?
    /// A directory to publish every signed checkpoint to (outside the database), if any.
    package var checkpointDir: String?
    /// Largest request body accepted by the API, in bytes.
    package var maxBodyBytes: Int = 1 << 20
    /// Outbound destinations allowed past the internal-address check (and to plain HTTP): comma-separated
    /// host names, addresses and CIDR ranges.
    package var outboundAllow: String = ""
    /// A provider catalog file (YAML) used instead of the built-in one.
    package var catalogPath: String?
    /// trace, debug, info, notice, warning, error or critical.
    package var logLevel: String = "info"
    /// `json` (one object per line) or `text`.
    package var logFormat: String = "json"
    /// The bearer token of the platform-wide `/metrics`; when unset, one is generated on first start,
    /// printed once, and kept as a SHA-256 digest.
    package var metricsToken: String?
    /// An alert rule file (YAML) used instead of the built-in rules.
    package var alertRulesPath: String?
    /// Seconds between periodic verifications of every ledger (default one hour).
    package var ledgerVerifyInterval: TimeInterval = 3600
    /// Whether calls, webhooks and syncs feed the metrics collector (off only to measure its cost).
    package var monitoring: Bool = true
    /// Seconds between retention runs (default one hour).
    package var retentionInterval: TimeInterval = 3600
    /// The folder of report templates and control mappings (`templates/`, `mappings/`).
    package var reportsDirectory: String = "reports"
    /// Per-organization bounds on what requests make the server store or compute.
    package var quotas = Quotas()

    package init() {}

    /// The documented environment variables, in the order the README lists them.
    package static let environmentVariables: [(name: String, meaning: String)] = [
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
        ("PORTAL_MAX_INTEGRATIONS", "integrations (not deleted) per organization (default 500)"),
        ("PORTAL_MAX_TOKENS", "API tokens in force per organization (default 1000)"),
        ("PORTAL_MAX_OPEN_REPORTS", "report builds queued or running per organization (default 2)"),
        ("PORTAL_DATABASE_WAIT", "how long a request waits for a PostgreSQL connection before answering 503 (default 30s)"),
        ("PORTAL_TOKEN_LIFETIME", "lifetime of a new API token when none is asked for (default 90d; never for none)"),
    ]

    /// Settings from `PORTAL_*` variables over the defaults.
    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws(PortalError) -> PortalSettings {
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
        for (name, keyPath) in [("PORTAL_MAX_INTEGRATIONS", \Quotas.integrations), ("PORTAL_MAX_TOKENS", \Quotas.tokens), ("PORTAL_MAX_OPEN_REPORTS", \Quotas.openReports)] {
            guard let v = env[name], !v.isEmpty else { continue }
            guard let n = Int(v), (1...1_000_000).contains(n) else { throw PortalError(.configuration, "\(name) must be an integer from 1 to 1000000") }
            s.quotas[keyPath: keyPath] = n
        }
        if let v = env["PORTAL_TOKEN_LIFETIME"], !v.isEmpty {
            if v == "never" {
                s.quotas.tokenLifetime = nil
            } else {
                guard let seconds = try? DurationText.seconds(v, field: "PORTAL_TOKEN_LIFETIME"), seconds >= 60 else {
                    throw PortalError(.configuration, "PORTAL_TOKEN_LIFETIME must be a duration of at least 1m (for example 90d), or never")
                }
                s.quotas.tokenLifetime = seconds
            }
        }
        if let v = env["PORTAL_DATABASE_WAIT"], !v.isEmpty {
            // Read by the database layer itself; checked here so that a bad value stops the start.
            guard let seconds = try? DurationText.seconds(v, field: "PORTAL_DATABASE_WAIT"), seconds >= 1 else {
                throw PortalError(.configuration, "PORTAL_DATABASE_WAIT must be a duration of at least 1s (for example 30s)")
            }
        }
        if let v = env["PORTAL_MONITORING"], !v.isEmpty {
            guard ["on", "off"].contains(v) else { throw PortalError(.configuration, "PORTAL_MONITORING must be on or off") }
            s.monitoring = v == "on"
        }
        return s
    }

    /// The public URL, defaulting to `http://localhost:<port>`, without a trailing slash.
    package var effectivePublicURL: String {
        var url = publicURL ?? "http://localhost:\(port)"
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }
}

/// Per-organization bounds on what requests make the server store or compute (a full quota is a 422 that
/// says which bound and how to go on; a report queue that is full is a 429 with `Retry-After`).
package struct Quotas: Sendable, Equatable {
    /// Integrations that are not deleted.
    package var integrations = 500
    /// API tokens neither revoked nor expired.
    package var tokens = 1_000
    /// Report builds queued or running (each is built in memory).
    package var openReports = 2
    /// The lifetime of a new API token that asks for none; nil: such tokens do not expire.
    package var tokenLifetime: TimeInterval? = 90 * 86_400

    package init() {}
}
