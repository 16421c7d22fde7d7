import Foundation
import PortalCore
import Testing

/// Settings are written once (``Setting/all``): the variables, flags and defaults the README documents are
/// exactly those, and a variable and its flag refuse the same values with the same rule.
@Suite("Settings: one table for variables, flags, defaults and checks")
struct SettingsTests {
    /// The README's configuration table: (flag cell, variable, default cell), without backticks.
    static func readmeRows() throws -> [(flag: String, variable: String, defaultText: String)] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("README.md")
        let lines = try String(contentsOf: url, encoding: .utf8).components(separatedBy: "\n")
        let start = try #require(lines.firstIndex(of: "## Configuration"))
        return lines[start...].drop { !$0.hasPrefix("| flag |") }.dropFirst(2).prefix { $0.hasPrefix("|") }.map { line in
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "`", with: "") }
            return (cells[1], cells[2], cells[3])
        }
    }

    @Test("the README lists every setting, in order, with its flag and default")
    func readmeMatches() throws {
        let rows = try Self.readmeRows()
        #expect(rows.map(\.variable) == Setting.all.map(\.variable))
        for (row, setting) in zip(rows, Setting.all) {
            #expect(row.defaultText == setting.defaultText, "\(setting.variable)")
            if let flag = setting.flag { #expect(row.flag == flag, "\(setting.variable)") } else { #expect(row.flag.hasPrefix("(none"), "\(setting.variable)") }
        }
    }

    @Test("every variable parses its default and refuses garbage with a message naming it")
    func variables() throws {
        #expect(Set(Setting.all.map(\.variable)).count == Setting.all.count)
        #expect(Set(Setting.all.compactMap(\.flag)).count == Setting.all.compactMap(\.flag).count)
        let s = try PortalSettings.fromEnvironment([
            "PORTAL_PORT": "9000", "PORTAL_LEDGER_VERIFY_INTERVAL": "2h", "PORTAL_MONITORING": "off", "PORTAL_TOKEN_LIFETIME": "never", "PORTAL_MAX_TOKENS": "7",
            "PORTAL_LOG_FORMAT": "text",
        ])
        #expect(s.port == 9000 && s.ledgerVerifyInterval == 7_200 && !s.monitoring && s.quotas.tokenLifetime == nil && s.quotas.tokens == 7 && s.logFormat == "text")
        for (variable, value) in [
            ("PORTAL_PORT", "70000"), ("PORTAL_LEDGER_VERIFY_INTERVAL", "10s"), ("PORTAL_MONITORING", "maybe"), ("PORTAL_LOG_FORMAT", "xml"),
            ("PORTAL_LOG_LEVEL", "loud"), ("PORTAL_MAX_OPEN_REPORTS", "0"), ("PORTAL_METRICS_TOKEN", "short"), ("PORTAL_DATABASE_WAIT", "0s"),
        ] {
            let error = #expect(throws: PortalError.self) { try PortalSettings.fromEnvironment([variable: value]) }
            #expect(error?.code == .configuration && error?.message.hasPrefix(variable + " ") == true, "\(variable): \(error?.message ?? "")")
        }
    }

    @Test("a flag is checked by its setting's rule and named in the refusal")
    func flags() throws {
        var s = PortalSettings()
        try s.apply(flag: "--retention-interval", "30m")
        #expect(s.retentionInterval == 1_800)
        try s.apply(flag: "--retention-interval", nil)
        #expect(s.retentionInterval == 1_800, "an absent flag changes nothing")
        let error = #expect(throws: PortalError.self) { try s.apply(flag: "--retention-interval", "5s") }
        #expect(error?.message == "--retention-interval must be a duration of at least 1m (for example 1h)")
        #expect(Setting.help("--log-level").contains("PORTAL_LOG_LEVEL; default info"))
    }
}
