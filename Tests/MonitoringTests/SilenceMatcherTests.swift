import Foundation
import Testing
@testable import Monitoring
import PortalCore

/// Issue 16 item 11: silence regexes are matched by a linear-time NFA (no backtracking), with Alertmanager's
/// semantics (anchored full match, a missing label is ""), and new silences are capped.
@Suite("Silence matchers")
struct SilenceMatcherTests {
    /// The bound `evaluate` promises: a few passes over the program per scalar, whatever the pattern.
    static func bound(_ pattern: LabelPattern, _ value: String) -> Int {
        (3 * pattern.instructionCount + 1) * (value.unicodeScalars.count + 1)
    }

    @Test("(a|a)+ and other backtracking traps against a 10,000-character value: the right answer in a linear number of steps")
    func linearOnPathologicalPatterns() throws {
        let long = String(repeating: "a", count: 10_000)
        let cases: [(pattern: String, value: String, matches: Bool)] = [
            ("(a|a)+", long, true),
            ("(a|a)+b", long, false),
            ("(a|aa)+", long, true),
            ("(a*)*b", long, false),
            ("(a+)+$", long, true),
            ("(x+x+)+y", String(repeating: "x", count: 10_000), false),
            ("(a|a)+", long + "b", false),
            ("(.*a){20}", long, true),
            ("(.*a){20}b", long, false),
        ]
        for c in cases {
            let pattern = try LabelPattern(c.pattern)
            let (matched, steps) = pattern.evaluate(c.value)
            #expect(matched == c.matches, "\(c.pattern)")
            #expect(steps <= Self.bound(pattern, c.value), "\(c.pattern): \(steps) steps for \(pattern.instructionCount) instructions")
        }
        // Twice the input, at most twice the steps (plus the start): linear, not exponential.
        let pattern = try LabelPattern("(a|a)+b")
        let short = pattern.evaluate(String(repeating: "a", count: 5_000)).steps
        let double = pattern.evaluate(long).steps
        #expect(double <= 2 * short + 3 * pattern.instructionCount + 1, "\(short) then \(double)")
    }

    @Test("ten (a|a)+ silences decide a 10,000-character label through the alert engine")
    func pathologicalSilencesInTheEngine() {
        var rule = AlertRule(name: "Backlog", kind: .webhookBacklog)
        rule.forSeconds = 0
        let label = String(repeating: "a", count: 10_000)
        let samples = ["Backlog": [AlertSample(labels: ["integration_name": label], value: 1)]]
        let traps = Array(repeating: [SilenceMatcher(name: "integration_name", value: "(a|a)+b", isRegex: true)], count: 9)
        let unsilenced = AlertEngine.step(rules: [rule], samples: samples, previous: [], silences: traps, now: Date())
        #expect(unsilenced.notify.count == 1 && unsilenced.silenced.isEmpty)
        let silenced = AlertEngine.step(
            rules: [rule], samples: samples, previous: [], silences: traps + [[SilenceMatcher(name: "integration_name", value: "(a|a)+", isRegex: true)]], now: Date()
        )
        #expect(silenced.notify.isEmpty && silenced.silenced.count == 1)
    }

    static let table: [(pattern: String, value: String, matches: Bool)] = [
        // What Alertmanager users write.
        ("api|web", "api", true), ("api|web", "web", true), ("api|web", "apiweb", false), ("api|web", "xapi", false), ("api|web", "api2", false),
        ("prod-.*", "prod-eu-1", true), ("prod-.*", "prod-", true), ("prod-.*", "staging-prod-1", false), (".*prod.*", "staging-prod-1", true),
        ("CRM.*", "CRM 1234", true), ("CRM.*", "The CRM", false), ("^api$", "api", true), ("api", "api", true), ("api", "API", false),
        ("", "", true), ("", "x", false), ("a|", "", true), ("a|", "a", true),
        // Classes, repetitions, groups.
        ("[a-c]+[0-9]?", "abc1", true), ("[a-c]+[0-9]?", "abcd", false), ("[^0-9]*", "abc", true), ("[^0-9]*", "ab1", false),
        ("colou?r", "color", true), ("colou?r", "colour", true), ("colou?r", "colouur", false),
        ("a{2}", "aa", true), ("a{2}", "aaa", false), ("a{2,3}", "a", false), ("a{2,3}", "aaa", true), ("a{2,3}", "aaaa", false),
        ("a{2,}", "aaaaa", true), ("a{2,}", "a", false), ("(ab){2}", "abab", true), ("(ab)+", "ababa", false), ("(?:ab)*c", "ababc", true),
        ("a+?", "aaa", true), ("a*?b", "aab", true), ("(?P<env>prod|staging)-.*", "staging-1", true), ("(?<env>prod)-1", "prod-1", true),
        ("\\d+\\.\\d+", "1.25", true), ("\\d+\\.\\d+", "1x25", false), ("\\w+-\\w+", "eu_west-1", true), ("\\s", " ", true), ("\\S+", "a b", false),
        ("[\\d.]+", "1.2.3", true), ("[\\W]", "-", true), ("[[:digit:]]+", "123", true), ("[[:^alpha:]]", "a", false), ("[[:alpha:]_]+", "ab_c", true),
        ("[]a]+", "]a]", true), ("[a-]+", "-a", true), ("x{", "x{", true), ("x{a}", "x{a}", true), ("a}", "a}", true),
        // Flags, anchors, escapes.
        ("(?i)api", "API", true), ("(?i:ab)c", "ABc", true), ("(?i:ab)c", "ABC", false), ("(?i)[a-c]+", "AbC", true), ("(?i)[^a]", "A", false),
        ("(?i)straße", "STRASSE", false), ("(?i)é", "É", true), (".", "\n", false), ("(?s).", "\n", true), ("a.c", "abc", true),
        ("(?m)a$\\nb", "a\nb", true), ("a$b", "ab", false), ("\\Aab\\z", "ab", true), ("a\\b-", "a-", true), ("a\\Bb", "ab", true), ("a\\bb", "ab", false),
        ("\\Qa.b\\E", "a.b", true), ("\\Qa.b\\E", "axb", false), ("\\x41\\x{263a}", "A☺", true), ("a\\.b", "a.b", true), ("a\\.b", "axb", false),
        ("é+", "ééé", true), ("☺.", "☺☺", true), ("\\t", "\t", true), ("\\-\\/\\#", "-/#", true),
    ]

    @Test("Alertmanager's semantics: anchored at both ends, RE2's syntax for what silences need", arguments: 0..<table.count)
    func semantics(index: Int) throws {
        let c = Self.table[index]
        let pattern = try LabelPattern(c.pattern)
        #expect(pattern.matches(c.value) == c.matches, "\(c.pattern) against \(c.value.debugDescription)")
    }

    @Test("agrees with Foundation's regular expressions (anchored) on the patterns both read alike")
    func agreesWithFoundation() throws {
        let patterns = [
            "api|web", "prod-.*", "(a|b)*c", "[a-f0-9]{2,4}", "x?y+z*", "(ab|a)(bc|c)?", "[^-]+-[^-]+", "(?i)Crm.*", ".*(eu|us)-[0-9]+", "a(b(c|d)*)+e?",
        ]
        let values = ["", "api", "web", "apiweb", "prod-1", "prod", "abc", "ababc", "ff", "a0b1", "y", "xyyzz", "abc", "ab-cd", "CRM", "crm 1", "eu-1", "zz-us-22", "abcdbce", "abdd"]
        for text in patterns {
            let pattern = try LabelPattern(text)
            let foundation = try NSRegularExpression(pattern: "^(?:\(text))$")
            for value in values {
                let expected = foundation.firstMatch(in: value, range: NSRange(value.startIndex..., in: value)) != nil
                #expect(pattern.matches(value) == expected, "\(text) against \(value.debugDescription)")
            }
        }
    }

    @Test("what RE2 refuses, or would be unbounded, is refused with its place", arguments: [
        "(", "a)", "a**", "a+*", "*a", "+", "{2}", "(?=a)", "(?!a)", "(?<=a)b", "(?<!a)b", "(a)\\1", "\\p{L}", "\\PL", "[z-a]", "[abc", "[[:foo:]]",
        "\\y", "a\\", "(?x)a", "(?i", "a{101}", "(a{100}){100}", "((((a{50}){50})))",
    ])
    func refused(pattern: String) {
        let error = #expect(throws: LabelPattern.SyntaxError.self) { _ = try LabelPattern(pattern) }
        #expect(error?.message.isEmpty == false)
        #expect((error?.offset ?? -1) >= 0 && (error?.offset ?? .max) <= pattern.unicodeScalars.count)
    }

    @Test("a deep nesting of groups is refused, not a stack overflow")
    func deepNesting() {
        let deep = String(repeating: "(", count: 5_000) + "a" + String(repeating: ")", count: 5_000)
        #expect(throws: LabelPattern.SyntaxError.self) { _ = try LabelPattern(deep) }
    }

    @Test("matchers: equal, not equal, regex and negated regex; a missing label is the empty value")
    func matcherSemantics() {
        let labels = ["integration_name": "CRM", "severity": "warning"]
        #expect(SilenceMatcher(name: "integration_name", value: "CRM").matches(labels))
        #expect(!SilenceMatcher(name: "integration_name", value: "crm").matches(labels))
        #expect(SilenceMatcher(name: "severity", value: "info", isEqual: false).matches(labels))
        #expect(SilenceMatcher(name: "integration_name", value: "CRM|ERP", isRegex: true).matches(labels))
        #expect(!SilenceMatcher(name: "integration_name", value: "C", isRegex: true).matches(labels), "anchored: a substring is not a match")
        #expect(SilenceMatcher(name: "severity", value: "crit.*", isRegex: true, isEqual: false).matches(labels))
        #expect(SilenceMatcher(name: "team", value: "", isRegex: true).matches(labels), "a missing label matches =~ \"\"")
        #expect(SilenceMatcher(name: "team", value: ".+", isRegex: true, isEqual: false).matches(labels))
        #expect(!SilenceMatcher(name: "team", value: ".+", isRegex: true).matches(labels))
        // Changing the value or the kind recompiles.
        var matcher = SilenceMatcher(name: "integration_name", value: "ERP.*", isRegex: true)
        #expect(!matcher.matches(labels))
        matcher.value = "CR.*"
        #expect(matcher.matches(labels))
        matcher.isRegex = false
        #expect(!matcher.matches(labels) && matcher.pattern == nil)
    }

    static func matchers(_ count: Int, value: String = "x", name: String = "integration", isRegex: Bool = false) -> JSONValue {
        .array((0..<count).map { _ in ["name": .string(name), "value": .string(value), "isRegex": .bool(isRegex)] })
    }

    static func pointers(_ result: Result<[SilenceMatcher], PortalError>) -> [String] {
        guard case .failure(let error) = result else { return [] }
        #expect(error.code == .validationFailed)
        return error.fieldErrors.map(\.pointer)
    }

    @Test("new silences are capped: matchers per silence and the length of names and values, each a 422 naming the field")
    func caps() throws {
        #expect(try SilenceMatcher.parse(Self.matchers(16, value: String(repeating: "v", count: 256))).get().count == 16)
        #expect(Self.pointers(SilenceMatcher.parse(Self.matchers(17))) == ["/matchers"])
        guard case .failure(let many) = SilenceMatcher.parse(Self.matchers(17)) else { return }
        #expect(many.fieldErrors.first?.message.contains("at most 16") == true)
        #expect(Self.pointers(SilenceMatcher.parse(Self.matchers(1, value: String(repeating: "v", count: 257)))) == ["/matchers/0/value"])
        #expect(Self.pointers(SilenceMatcher.parse(Self.matchers(1, name: String(repeating: "n", count: 257)))) == ["/matchers/0/name"])
        #expect(Self.pointers(SilenceMatcher.parse(Self.matchers(1, value: "(a|b", isRegex: true))) == ["/matchers/0/value"])
        #expect(Self.pointers(SilenceMatcher.parse(Self.matchers(1, value: "(?=a)", isRegex: true))) == ["/matchers/0/value"])
        let limits = SilenceLimits(activeSilences: 5, matchersPerSilence: 2, valueLength: 4)
        #expect(Self.pointers(SilenceMatcher.parse(Self.matchers(3), limits: limits)) == ["/matchers"])
        #expect(Self.pointers(SilenceMatcher.parse(Self.matchers(1, value: "12345", name: "n"), limits: limits)) == ["/matchers/0/value"])
        // Stored silences (made before the caps) are read as they are; a regex the matcher cannot read matches nothing.
        let stored = try SilenceMatcher.parse(Self.matchers(20, value: String(repeating: "v", count: 300)), limits: nil).get()
        #expect(stored.count == 20)
        let old = try SilenceMatcher.parse(.array([["name": "integration_name", "value": "(?=C)CRM", "isRegex": true]]), limits: nil).get()
        #expect(old.count == 1 && old[0].pattern == nil && !old[0].matches(["integration_name": "CRM"]))
    }
}
