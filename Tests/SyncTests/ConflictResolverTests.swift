import PortalCore
import Sync
import Testing

@Suite("Conflict resolution")
struct ConflictResolverTests {
    /// The provider's record at the last sync, the provider's record now, and the portal's edited copy.
    let base: JSONValue = [
        "id": "u-1", "email": "ada@example.test", "name": "Ada", "plan": "pro", "updated_at": "2026-11-01T10:00:00Z",
        "tags": ["a"], "address": ["city": "London", "zip": "N1"],
    ]
    let source: JSONValue = [
        "id": "u-1", "email": "ada@example.test", "name": "Ada Lovelace", "plan": "enterprise", "updated_at": "2026-11-20T10:00:00Z",
        "tags": ["a", "b"], "address": ["city": "London", "zip": "N1 9GU"],
    ]
    let destination: JSONValue = [
        "id": "u-1", "email": "ada@example.test", "name": "Ada", "plan": "team", "updated_at": "2026-11-10T10:00:00Z",
        "tags": ["a", "vip"], "address": ["city": "Cambridge", "zip": "N1"], "note": "called on the 9th",
    ]

    func policy(_ strategy: ConflictStrategy, _ rules: [(String, String?, ConflictAction)] = []) throws -> ConflictPolicy {
        ConflictPolicy(strategy: strategy, rules: try rules.map { field, condition, action in
            ConflictRule(field: try #require(FieldPath.parse(field)), condition: try condition.map { try ConflictCondition($0) }, action: action)
        })
    }

    @Test("source_wins and destination_wins return that side; manual keeps the destination for review")
    func wholeRecordStrategies() throws {
        #expect(ConflictResolver.resolve(source: source, destination: destination, base: base, policy: try policy(.sourceWins)) == ConflictOutcome(value: source, flagged: [], decisions: [:]))
        #expect(ConflictResolver.resolve(source: source, destination: destination, base: base, policy: try policy(.destinationWins)).value == destination)
        let manual = ConflictResolver.resolve(source: source, destination: destination, base: base, policy: try policy(.manual))
        #expect(manual.value == destination)
        #expect(manual.needsReview)
    }

    @Test("merge without rules: one-sided changes are taken, fields changed on both sides are flagged and kept")
    func threeWayMerge() throws {
        let outcome = ConflictResolver.resolve(source: source, destination: destination, base: base, policy: try policy(.merge))
        let value = try #require(outcome.value.objectValue)
        #expect(value["name"] == "Ada Lovelace", "only the source changed the name")
        #expect(value["note"] == "called on the 9th", "only the portal added a note")
        #expect(value["plan"] == "team", "both changed the plan: the portal's is kept")
        #expect(outcome.flagged == ["address", "plan", "tags", "updated_at"])
        #expect(outcome.needsReview)
        // A field the source removed (and the portal left alone) is removed.
        var removed = source.objectValue!
        removed["name"] = nil
        let second = ConflictResolver.resolve(source: .object(removed), destination: base, base: base, policy: try policy(.merge))
        #expect(second.value.objectValue?["name"] == nil)
        #expect(second.flagged.isEmpty)
    }

    @Test("rules decide fields in order: overwrite, preserve, merge of arrays and objects, flag")
    func rules() throws {
        let outcome = ConflictResolver.resolve(source: source, destination: destination, base: base, policy: try policy(.merge, [
            ("plan", "source.updated_at > destination.updated_at", .overwrite),
            ("plan", nil, .preserve),
            ("tags", nil, .merge),
            ("address", nil, .merge),
            ("updated_at", nil, .overwrite),
            ("note", nil, .flag),
        ]))
        let value = try #require(outcome.value.objectValue)
        #expect(value["plan"] == "enterprise", "the first rule whose condition holds decides")
        #expect(value["tags"] == ["a", "vip", "b"])
        #expect(value["address"] == ["city": "London", "zip": "N1 9GU"], "objects merge member by member, the source over scalars")
        #expect(value["note"] == "called on the 9th")
        #expect(outcome.flagged == ["note"], "rules cleared the default flags; flag added its own")
        #expect(outcome.decisions == ["plan": .overwrite, "tags": .merge, "address": .merge, "updated_at": .overwrite, "note": .flag])
        // When the condition does not hold the next rule for the field applies.
        let older = ConflictResolver.resolve(source: source, destination: destination, base: base, policy: try policy(.merge, [
            ("plan", "source.updated_at < destination.updated_at", .overwrite),
            ("plan", nil, .preserve),
        ]))
        #expect(older.value.objectValue?["plan"] == "team")
        #expect(older.decisions["plan"] == .preserve)
    }

    @Test("nested fields: a rule on address.city changes only that member")
    func nestedRule() throws {
        let outcome = ConflictResolver.resolve(source: source, destination: destination, base: base, policy: try policy(.merge, [
            ("address.city", "destination.value != null", .overwrite),
        ]))
        #expect(outcome.value.objectValue?["address"] == ["city": "London", "zip": "N1"])
    }

    @Test("conditions: comparisons of numbers, timestamps, strings and null; && binds tighter than ||")
    func conditions() throws {
        let s: JSONValue = ["n": 5, "d": .double(1.5), "t": "2026-11-20T10:00:00.5+01:00", "s": "b", "flag": true]
        let d: JSONValue = ["n": 5, "d": 2, "t": "2026-11-20T09:00:00Z", "s": "a"]
        func holds(_ text: String, field: String = "n") throws -> Bool {
            try ConflictCondition(text).holds(source: s, destination: d, base: nil, field: FieldPath.parse(field)!)
        }
        #expect(try holds("source.n == destination.n"))
        #expect(try holds("source.n == 5.0"))
        #expect(try holds("source.d < destination.d"))
        #expect(try holds("source.t > destination.t"), "instants, not text: 09:00:00.5Z is after 09:00:00Z")
        #expect(try holds("source.s > destination.s"))
        #expect(try holds("destination.missing == null"))
        #expect(try holds("destination.flag != true"))
        #expect(try holds("source.value >= 5", field: "n"))
        #expect(try !holds("source.s > 1"), "no order between a string and a number")
        #expect(try holds("source.n == 1 && source.n == 2 || source.n == 5"))
        #expect(try !holds("source.n == 5 && source.n == 2 || source.n == 1"))
        #expect(try holds(#"source.s == "b""#))
        #expect(try holds("source.n == -3 || base.n == null"))
    }

    @Test("bad conditions and rules are refused with a pointer and a reason", arguments: [
        ("source.n", "expected a comparison"), ("source.n = 1", "expected a comparison"), ("origin.n == 1", "unknown name 'origin'"),
        ("source == 1", "expected '.' after source"), ("source.n == ", "expected a value"), (#"source.n == "open"#, "unterminated string"),
        ("source.n == 1 &&", "expected a value"), ("source.n == 1 extra", "unexpected 'extra'"),
    ])
    func badConditions(text: String, reason: String) {
        #expect {
            try ConflictCondition(text)
        } throws: { error in
            (error as? ConditionError)?.message.contains(reason) == true
        }
    }

    @Test("a policy is read from its JSON with every problem reported")
    func readPolicy() throws {
        let errors = ValidationErrors()
        var reader = JSONObjectReader([
            "strategy": "merge",
            "rules": [["field": "plan", "condition": "source.updated_at > destination.updated_at", "action": "overwrite"], ["field": "tags", "action": "merge"]],
        ], pointer: "/syncConfig/conflictResolution", errors: errors)
        let policy = try #require(ConflictPolicy.read(&reader))
        reader.finish()
        #expect(errors.all.isEmpty)
        #expect(policy.rules.count == 2 && policy.rules[0].condition?.description == "source.updated_at > destination.updated_at")
        #expect(policy.json.objectValue?["rules"]?.arrayValue?.count == 2)

        let bad = ValidationErrors()
        var badReader = JSONObjectReader([
            "strategy": "newest_wins",
            "rules": [["field": "a..b", "condition": "source.x ~ 1", "action": "drop", "extra": 1]],
        ], pointer: "/c", errors: bad)
        _ = ConflictPolicy.read(&badReader)
        badReader.finish()
        let pointers = Set(bad.all.map(\.pointer))
        #expect(pointers == ["/c/strategy", "/c/rules/0/field", "/c/rules/0/condition", "/c/rules/0/action", "/c/rules/0/extra"])
    }
}
