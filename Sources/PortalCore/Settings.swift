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
    /// The governance policy of organizations that have not set their own (`PUT /portal/policy`).
    package var defaultPolicy = OrganizationPolicy()
    /// Proxies whose `X-Forwarded-For` names the client (the API's allow-lists and counts use it); empty:
    /// the peer's own address, always.
    package var trustedProxies: [IPNetwork] = []
    /// PEM files of the listener's certificate chain and private key: HTTPS (TLS 1.2 and 1.3) when both are
    /// set; reloaded on SIGHUP.
    package var tlsCertificate: String?
    package var tlsKey: String?
    /// Requests a second one API token may make (nil: no limit), unless its organization's policy says otherwise.
    package var apiTokenRate: Int? = 500
    /// Requests a second an organization's tokens together may make (nil: no limit), unless its policy says otherwise.
    package var apiOrganizationRate: Int? = 2_000

    package init() {}

    /// Settings from `PORTAL_*` variables over the defaults.
    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws(PortalError) -> PortalSettings {
        var s = PortalSettings()
        for setting in Setting.all {
            guard let value = env[setting.variable], !value.isEmpty else { continue }
            try s.apply(setting, value, from: setting.variable)
        }
        return s
    }

    /// Sets `setting` from `value`, given as `source` (its variable or its flag); a value the setting refuses
    /// is a configuration error naming the source and the rule.
    package mutating func apply(_ setting: Setting, _ value: String, from source: String) throws(PortalError) {
        if let problem = setting.read(&self, value) { throw PortalError(.configuration, "\(source) \(problem)") }
    }

    /// Sets the setting of `flag` (`--host`) from a command-line value.
    package mutating func apply(flag: String, _ value: String?) throws(PortalError) {
        guard let value else { return }
        guard let setting = Setting.all.first(where: { $0.flag == flag }) else { throw PortalError(.internal, "no setting has the flag \(flag)") }
        try apply(setting, value, from: flag)
    }

    /// The public URL, defaulting to `http://localhost:<port>`, without a trailing slash.
    package var effectivePublicURL: String {
        var url = publicURL ?? "\(tlsCertificate != nil ? "https" : "http")://localhost:\(port)"
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

/// One setting, written once: its variable, its `portal serve` flag, its default as the README prints it,
/// what it means, and how a value is read and checked (the same rule for the variable and the flag). The
/// flags' help, the environment parsing and the README's configuration table (checked by a test) all come
/// from ``Setting/all``.
package struct Setting: Sendable {
    package let variable: String
    /// The flag of `portal serve`, or nil for a variable only (secrets, quotas).
    package let flag: String?
    package let defaultText: String
    package let meaning: String
    /// Sets the value; returns why it is refused, or nil.
    let read: @Sendable (inout PortalSettings, String) -> String?

    /// The flag's help: the meaning, then the variable and the default.
    package var help: String { "\(meaning) (\(variable); default \(defaultText))." }

    /// The help of the flag `flag`.
    package static func help(_ flag: String) -> String {
        all.first { $0.flag == flag }?.help ?? ""
    }

    static func text(_ path: any WritableKeyPath<PortalSettings, String> & Sendable) -> @Sendable (inout PortalSettings, String) -> String? {
        { s, v in s[keyPath: path] = v; return nil }
    }

    static func optionalText(_ path: any WritableKeyPath<PortalSettings, String?> & Sendable) -> @Sendable (inout PortalSettings, String) -> String? {
        { s, v in s[keyPath: path] = v; return nil }
    }

    /// A duration such as `90s`, `15m` or `1h`, at least `minimum` seconds.
    static func duration(_ minimum: TimeInterval, _ path: any WritableKeyPath<PortalSettings, TimeInterval> & Sendable) -> @Sendable (inout PortalSettings, String) -> String? {
        { s, v in
            guard let seconds = try? DurationText.seconds(v, field: ""), seconds >= minimum else {
                return "must be a duration of at least \(minimum >= 60 ? "\(Int(minimum / 60))m" : "\(Int(minimum))s") (for example 1h)"
            }
            s[keyPath: path] = seconds
            return nil
        }
    }

    static func count(_ path: any WritableKeyPath<Quotas, Int> & Sendable) -> @Sendable (inout PortalSettings, String) -> String? {
        { s, v in
            guard let n = Int(v), (1...1_000_000).contains(n) else { return "must be an integer from 1 to 1000000" }
            s.quotas[keyPath: path] = n
            return nil
        }
    }

    static func rate(_ path: any WritableKeyPath<PortalSettings, Int?> & Sendable) -> @Sendable (inout PortalSettings, String) -> String? {
        { s, v in
            if v == "off" {
                s[keyPath: path] = nil
                return nil
            }
            guard let n = Int(v), (1...OrganizationPolicy.maxRate).contains(n) else { return "must be requests a second from 1 to \(OrganizationPolicy.maxRate), or off" }
            s[keyPath: path] = n
            return nil
        }
    }

    static func choice(_ allowed: [String], _ set: @escaping @Sendable (inout PortalSettings, String) -> Void) -> @Sendable (inout PortalSettings, String) -> String? {
        { s, v in
            guard allowed.contains(v) else { return "must be one of \(allowed.joined(separator: ", "))" }
            set(&s, v)
            return nil
        }
    }

    /// Every setting, in the order the README lists them.
    package static let all: [Setting] = [
        Setting(variable: "PORTAL_HOST", flag: "--host", defaultText: "127.0.0.1", meaning: "Address to listen on", read: text(\.host)),
        Setting(variable: "PORTAL_PORT", flag: "--port", defaultText: "8080", meaning: "Port to listen on, 0 for any free port") { s, v in
            guard let port = Int(v), (0...65_535).contains(port) else { return "must be a port number (0 to 65535)" }
            s.port = port
            return nil
        },
        Setting(
            variable: "PORTAL_TLS_CERT", flag: "--tls-cert", defaultText: "none (plain HTTP)",
            meaning: "PEM certificate chain: serve HTTPS (TLS 1.2 and 1.3, X25519MLKEM768 first) with --tls-key; reloaded on SIGHUP",
            read: optionalText(\.tlsCertificate)
        ),
        Setting(variable: "PORTAL_TLS_KEY", flag: "--tls-key", defaultText: "none", meaning: "PEM private key of --tls-cert", read: optionalText(\.tlsKey)),
        Setting(
            variable: "PORTAL_DATABASE_URL", flag: "--database", defaultText: "sqlite://var/portal.sqlite",
            meaning: "Database URL: sqlite:///path, sqlite://relative/path or postgres://user:pass@host:port/db", read: text(\.databaseURL)
        ),
        Setting(
            variable: "PORTAL_MASTER_KEY", flag: "--master-key-stdin", defaultText: "none",
            meaning: "Base64 of the 32-byte master key (the flag reads it from standard input)", read: optionalText(\.masterKey)
        ),
        Setting(
            variable: "PORTAL_MASTER_KEY_FILE", flag: "--master-key-file", defaultText: "none (make run: var/master.key)",
            meaning: "File of base64 master keys, newest first; - reads one key from standard input", read: optionalText(\.masterKeyFile)
        ),
        Setting(
            variable: "PORTAL_PUBLIC_URL", flag: "--public-url", defaultText: "http://localhost:PORT",
            meaning: "URL the portal is reached at; names ledger origins and webhook URLs", read: optionalText(\.publicURL)
        ),
        Setting(
            variable: "PORTAL_CHECKPOINT_DIR", flag: "--checkpoint-dir", defaultText: "none",
            meaning: "Also publish every signed checkpoint to this directory, outside the database", read: optionalText(\.checkpointDir)
        ),
        Setting(variable: "PORTAL_MAX_BODY_BYTES", flag: "--max-body-bytes", defaultText: "1048576", meaning: "Largest API request body in bytes") { s, v in
            guard let n = Int(v), n > 0 else { return "must be a positive integer" }
            s.maxBodyBytes = n
            return nil
        },
        Setting(
            variable: "PORTAL_OUTBOUND_ALLOW", flag: "--outbound-allow", defaultText: "none",
            meaning: "Comma-separated hosts, addresses or CIDRs the gateway may call although internal, also over plain HTTP", read: text(\.outboundAllow)
        ),
        Setting(
            variable: "PORTAL_CATALOG", flag: "--catalog", defaultText: "the built-in catalog",
            meaning: "A provider catalog YAML file used instead of the built-in one", read: optionalText(\.catalogPath)
        ),
        Setting(
            variable: "PORTAL_ALERT_RULES", flag: "--alert-rules", defaultText: "the built-in rules",
            meaning: "An alert rule YAML file used instead of the built-in rules", read: optionalText(\.alertRulesPath)
        ),
        Setting(
            variable: "PORTAL_LEDGER_VERIFY_INTERVAL", flag: "--ledger-verify-interval", defaultText: "1h",
            meaning: "How often every ledger is verified, e.g. 1h", read: duration(60, \.ledgerVerifyInterval)
        ),
        Setting(
            variable: "PORTAL_RETENTION_INTERVAL", flag: "--retention-interval", defaultText: "1h",
            meaning: "How often retention periods are applied, e.g. 1h", read: duration(60, \.retentionInterval)
        ),
        Setting(
            variable: "PORTAL_MONITORING", flag: "--monitoring", defaultText: "on",
            meaning: "on or off: feed the metrics collector (off only to measure its cost)", read: choice(["on", "off"]) { s, v in s.monitoring = v == "on" }
        ),
        Setting(
            variable: "PORTAL_METRICS_TOKEN", flag: nil, defaultText: "generated on first start, printed once",
            meaning: "Bearer token of /metrics (16 characters at least)"
        ) { s, v in
            guard v.count >= 16 else { return "must be at least 16 characters" }
            s.metricsToken = v
            return nil
        },
        Setting(
            variable: "PORTAL_REPORTS_DIR", flag: nil, defaultText: "reports",
            meaning: "The folder of report templates and control mappings", read: text(\.reportsDirectory)
        ),
        Setting(
            variable: "PORTAL_APPROVALS", flag: nil, defaultText: "required",
            meaning: "required or off: whether integrations wait for an approval, for organizations that set no policy of their own",
            read: choice(["required", "off"]) { s, v in s.defaultPolicy.approvals = v == "off" ? .off : .required }
        ),
        Setting(
            variable: "PORTAL_TRUSTED_PROXIES", flag: nil, defaultText: "none",
            meaning: "Comma-separated addresses or CIDRs of proxies whose X-Forwarded-For names the client"
        ) { s, v in
            var networks: [IPNetwork] = []
            for item in v.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
                guard let network = IPNetwork(item) else { return "'\(item)' is not an address or CIDR range" }
                networks.append(network)
            }
            s.trustedProxies = networks
            return nil
        },
        Setting(
            variable: "PORTAL_API_TOKEN_RATE", flag: nil, defaultText: "500",
            meaning: "API requests a second per token (off: no limit); an organization's policy may set its own", read: rate(\.apiTokenRate)
        ),
        Setting(
            variable: "PORTAL_API_ORG_RATE", flag: nil, defaultText: "2000",
            meaning: "API requests a second per organization (off: no limit); an organization's policy may set its own", read: rate(\.apiOrganizationRate)
        ),
        Setting(variable: "PORTAL_MAX_INTEGRATIONS", flag: nil, defaultText: "500", meaning: "Integrations (not deleted) per organization", read: count(\.integrations)),
        Setting(variable: "PORTAL_MAX_TOKENS", flag: nil, defaultText: "1000", meaning: "API tokens in force per organization", read: count(\.tokens)),
        Setting(
            variable: "PORTAL_MAX_OPEN_REPORTS", flag: nil, defaultText: "2", meaning: "Report builds queued or running per organization", read: count(\.openReports)
        ),
        Setting(
            variable: "PORTAL_DATABASE_WAIT", flag: nil, defaultText: "30s",
            meaning: "How long a request waits for a PostgreSQL connection before it is answered 503"
        ) { _, v in
            // Read by the database layer itself; checked here so that a bad value stops the start.
            guard let seconds = try? DurationText.seconds(v, field: ""), seconds >= 1 else { return "must be a duration of at least 1s (for example 30s)" }
            return nil
        },
        Setting(
            variable: "PORTAL_TOKEN_LIFETIME", flag: nil, defaultText: "90d", meaning: "Lifetime of a new API token that asks for none; never for none"
        ) { s, v in
            if v == "never" {
                s.quotas.tokenLifetime = nil
                return nil
            }
            guard let seconds = try? DurationText.seconds(v, field: ""), seconds >= 60 else {
                return "must be a duration of at least 1m (for example 90d), or never"
            }
            s.quotas.tokenLifetime = seconds
            return nil
        },
        Setting(
            variable: "PORTAL_LOG_LEVEL", flag: "--log-level", defaultText: "info", meaning: "trace, debug, info, notice, warning, error or critical",
            read: choice(["trace", "debug", "info", "notice", "warning", "error", "critical"]) { s, v in s.logLevel = v }
        ),
        Setting(
            variable: "PORTAL_LOG_FORMAT", flag: "--log-format", defaultText: "json", meaning: "json (one object per line on stderr) or text",
            read: choice(["json", "text"]) { s, v in s.logFormat = v }
        ),
    ]
}
