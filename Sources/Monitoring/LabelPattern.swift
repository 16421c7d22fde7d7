/// A silence's regular expression in Alertmanager's syntax (the RE2 subset label matchers use), compiled
/// once to a Thompson NFA and matched against the whole label value, as Alertmanager anchors it
/// (`^(?:pattern)$`), in time linear in the value's length: no backtracking, so `(a|a)+` costs what `a+` does.
///
/// Supported: literals, `.`, classes (`[a-z]`, `[^...]`, `\d \w \s` and their negations, POSIX `[[:alpha:]]`),
/// `|`, `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}` (lazy forms too: a full match does not care), groups (`(...)`,
/// `(?:...)`, `(?P<name>...)`), flags `i`, `s`, `m`, `U` (`(?i)`, `(?i:...)`), anchors `^ $ \A \z \b \B`,
/// escapes (`\n \t \x41 \x{263a} \Q...\E`, escaped punctuation). Refused, as RE2 refuses them: backreferences,
/// lookaround, Unicode property classes (`\p{...}`), nested repetition (`a**`).
package struct LabelPattern: Sendable, Equatable {
    /// The most NFA instructions a pattern may compile to (bounds the work per character of a value).
    package static let maxInstructions = 2048
    /// The largest count in a `{n,m}` repetition.
    package static let maxRepeat = 100

    /// Why a pattern is refused: what, and at which character (from 0).
    package struct SyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
        package var message: String
        package var offset: Int

        package var description: String { "\(message) (at character \(offset + 1))" }
    }

    /// The pattern as written.
    package let source: String
    let program: [Instruction]
    /// The pattern itself when it has no metacharacters: matched by comparing scalars.
    let literal: [Unicode.Scalar]?

    /// Compiles `source`; throws for syntax outside the supported subset or a program over the size limit.
    package init(_ source: String) throws(SyntaxError) {
        self.source = source
        var parser = PatternParser(Array(source.unicodeScalars))
        let node = try parser.parse()
        literal = node.literalScalars
        let size = node.size
        guard size < Self.maxInstructions else {
            throw SyntaxError(message: "the pattern expands to more than \(Self.maxInstructions) steps; use * or + rather than large counts", offset: 0)
        }
        var emitter = Emitter()
        emitter.emit(node)
        emitter.program.append(.match)
        program = emitter.program
    }

    /// The number of NFA instructions (the work per character is at most a small multiple of it).
    package var instructionCount: Int { program.count }

    /// Whether the whole of `value` matches.
    package func matches(_ value: String) -> Bool { evaluate(value).matched }

    /// Whether the whole of `value` matches, and the steps the simulation took: at most
    /// `(3 × instructionCount + 1) × (scalars + 1)`, whatever the pattern.
    package func evaluate(_ value: String) -> (matched: Bool, steps: Int) {
        if let literal {
            return (value.unicodeScalars.elementsEqual(literal), value.unicodeScalars.count)
        }
        let text = Array(value.unicodeScalars)
        var simulation = Simulation(program: program, text: text)
        return (simulation.run(), simulation.steps)
    }

    // MARK: The program

    /// One NFA instruction; consuming ones advance one scalar.
    enum Instruction: Sendable, Equatable {
        case scalar(Unicode.Scalar, fold: Bool)
        case set(ScalarSet, fold: Bool)
        /// `.`: any scalar, or any but a newline.
        case any(newline: Bool)
        case split(Int, Int)
        case jump(Int)
        case assert(Assertion)
        case match
    }

    /// Zero-width conditions on the position.
    enum Assertion: Sendable, Equatable {
        case textStart, textEnd, lineStart, lineEnd, wordBoundary, notWordBoundary
    }

    /// The Pike-VM simulation without captures: every thread advances in lockstep, one list entry per
    /// instruction, so each scalar costs at most a pass over the program.
    struct Simulation {
        let program: [Instruction]
        let text: [Unicode.Scalar]
        var steps = 0
        /// The position whose list each instruction was last added to (-1: never).
        var mark: [Int]
        var stack: [Int] = []

        init(program: [Instruction], text: [Unicode.Scalar]) {
            self.program = program
            self.text = text
            mark = Array(repeating: -1, count: program.count)
        }

        mutating func run() -> Bool {
            var current: [Int] = []
            var next: [Int] = []
            current.reserveCapacity(program.count)
            next.reserveCapacity(program.count)
            add(0, at: 0, to: &current)
            for position in text.indices {
                if current.isEmpty { return false }
                let scalar = text[position]
                next.removeAll(keepingCapacity: true)
                for pc in current {
                    steps += 1
                    if consumes(program[pc], scalar) { add(pc + 1, at: position + 1, to: &next) }
                }
                swap(&current, &next)
            }
            return current.contains { program[$0] == .match }
        }

        /// Adds the instruction at `start` and everything reachable from it without consuming.
        mutating func add(_ start: Int, at position: Int, to list: inout [Int]) {
            stack.append(start)
            while let pc = stack.popLast() {
                steps += 1
                guard mark[pc] != position else { continue }
                mark[pc] = position
                switch program[pc] {
                case .jump(let target): stack.append(target)
                case .split(let first, let second):
                    stack.append(second)
                    stack.append(first)
                case .assert(let assertion):
                    if holds(assertion, at: position) { stack.append(pc + 1) }
                case .scalar, .set, .any, .match: list.append(pc)
                }
            }
        }

        func holds(_ assertion: Assertion, at position: Int) -> Bool {
            let before = position > 0 ? text[position - 1] : nil
            let after = position < text.count ? text[position] : nil
            switch assertion {
            case .textStart: return position == 0
            case .textEnd: return position == text.count
            case .lineStart: return before == nil || before == "\n"
            case .lineEnd: return after == nil || after == "\n"
            case .wordBoundary: return Self.isWord(before) != Self.isWord(after)
            case .notWordBoundary: return Self.isWord(before) == Self.isWord(after)
            }
        }

        static func isWord(_ scalar: Unicode.Scalar?) -> Bool {
            guard let scalar else { return false }
            return ScalarSet.word.contains(scalar.value)
        }

        func consumes(_ instruction: Instruction, _ scalar: Unicode.Scalar) -> Bool {
            switch instruction {
            case .scalar(let expected, let fold):
                if scalar == expected { return true }
                return fold && CaseFold.variants(of: scalar).contains(expected)
            case .set(let set, let fold):
                var hit = set.ranges.contains { $0.contains(scalar.value) }
                if !hit, fold { hit = CaseFold.variants(of: scalar).contains { variant in set.ranges.contains { $0.contains(variant.value) } } }
                return hit != set.negated
            case .any(let newline): return newline || scalar != "\n"
            case .split, .jump, .assert, .match: return false
            }
        }
    }

    /// Writes a parsed pattern as instructions.
    struct Emitter {
        var program: [Instruction] = []

        mutating func emit(_ node: PatternNode) {
            switch node {
            case .empty: break
            case .instruction(let instruction): program.append(instruction)
            case .concat(let items): for item in items { emit(item) }
            case .alternate(let branches):
                var jumps: [Int] = []
                for (index, branch) in branches.enumerated() {
                    if index == branches.count - 1 {
                        emit(branch)
                        break
                    }
                    let split = program.count
                    program.append(.split(split + 1, -1))
                    emit(branch)
                    jumps.append(program.count)
                    program.append(.jump(-1))
                    program[split] = .split(split + 1, program.count)
                }
                for jump in jumps { program[jump] = .jump(program.count) }
            case .repetition(let item, let min, let max):
                var lastStart = program.count
                for _ in 0..<min {
                    lastStart = program.count
                    emit(item)
                }
                if let max {
                    // Optional copies, each skippable: e? e? ... (the same language as nested ones).
                    for _ in min..<max {
                        let split = program.count
                        program.append(.split(split + 1, -1))
                        emit(item)
                        program[split] = .split(split + 1, program.count)
                    }
                } else if min > 0 {
                    // e+ : loop back over the last copy.
                    program.append(.split(lastStart, program.count + 1))
                } else {
                    // e* : split into the body or past it; the body jumps back.
                    let split = program.count
                    program.append(.split(split + 1, -1))
                    emit(item)
                    program.append(.jump(split))
                    program[split] = .split(split + 1, program.count)
                }
            }
        }
    }
}

/// A set of scalars as sorted ranges, possibly negated.
struct ScalarSet: Sendable, Equatable {
    var ranges: [ClosedRange<UInt32>]
    var negated = false

    static let digit = ScalarSet(ranges: [0x30...0x39])
    static let word = ScalarSet(ranges: [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A])
    static let space = ScalarSet(ranges: [0x09...0x0A, 0x0C...0x0D, 0x20...0x20])

    func contains(_ value: UInt32) -> Bool { ranges.contains { $0.contains(value) } != negated }

    /// The ranges of every scalar not in `ranges` (for `\D` and the like inside a class).
    static func complement(_ ranges: [ClosedRange<UInt32>]) -> [ClosedRange<UInt32>] {
        var out: [ClosedRange<UInt32>] = []
        var next: UInt32 = 0
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if range.lowerBound > next { out.append(next...(range.lowerBound - 1)) }
            next = max(next, range.upperBound &+ 1)
        }
        if next <= 0x10FFFF { out.append(next...0x10FFFF) }
        return out
    }

    /// POSIX classes (ASCII), as RE2 has them.
    static let posix: [String: [ClosedRange<UInt32>]] = [
        "alnum": [0x30...0x39, 0x41...0x5A, 0x61...0x7A], "alpha": [0x41...0x5A, 0x61...0x7A], "ascii": [0x00...0x7F],
        "blank": [0x09...0x09, 0x20...0x20], "cntrl": [0x00...0x1F, 0x7F...0x7F], "digit": [0x30...0x39], "graph": [0x21...0x7E],
        "lower": [0x61...0x7A], "print": [0x20...0x7E], "punct": [0x21...0x2F, 0x3A...0x40, 0x5B...0x60, 0x7B...0x7E],
        "space": [0x09...0x0D, 0x20...0x20], "upper": [0x41...0x5A], "word": [0x30...0x39, 0x41...0x5A, 0x5F...0x5F, 0x61...0x7A],
        "xdigit": [0x30...0x39, 0x41...0x46, 0x61...0x66],
    ]
}

/// Simple case folding for `(?i)`: a scalar's one-scalar lowercase and uppercase mappings.
enum CaseFold {
    static func variants(of scalar: Unicode.Scalar) -> [Unicode.Scalar] {
        if scalar.isASCII {
            let v = scalar.value
            if (0x41...0x5A).contains(v) { return [Unicode.Scalar(v + 0x20)!] }
            if (0x61...0x7A).contains(v) { return [Unicode.Scalar(v - 0x20)!] }
            return []
        }
        var out: [Unicode.Scalar] = []
        for mapped in [scalar.properties.lowercaseMapping, scalar.properties.uppercaseMapping] {
            let scalars = mapped.unicodeScalars
            if scalars.count == 1, let only = scalars.first, only != scalar { out.append(only) }
        }
        return out
    }
}

/// A parsed pattern.
indirect enum PatternNode: Sendable {
    case empty
    case instruction(LabelPattern.Instruction)
    case concat([PatternNode])
    case alternate([PatternNode])
    case repetition(PatternNode, min: Int, max: Int?)

    /// Instructions it compiles to (saturating, so a huge repetition cannot overflow).
    var size: Int {
        func add(_ a: Int, _ b: Int) -> Int { a > Int.max - b ? Int.max : a + b }
        func multiply(_ a: Int, _ b: Int) -> Int { a == 0 || b == 0 ? 0 : (a > Int.max / b ? Int.max : a * b) }
        switch self {
        case .empty: return 0
        case .instruction: return 1
        case .concat(let items): return items.reduce(0) { add($0, $1.size) }
        case .alternate(let branches): return add(branches.reduce(0) { add($0, $1.size) }, multiply(2, branches.count - 1))
        case .repetition(let item, let min, let max):
            let s = item.size
            let fixed = multiply(min, s)
            guard let max else { return add(fixed, min > 0 ? 1 : add(s, 2)) }
            return add(fixed, multiply(max - min, add(s, 1)))
        }
    }

    /// The scalars, when the node is a plain literal (case-sensitive scalars only).
    var literalScalars: [Unicode.Scalar]? {
        switch self {
        case .empty: return []
        case .instruction(.scalar(let scalar, fold: false)): return [scalar]
        case .concat(let items):
            var out: [Unicode.Scalar] = []
            for item in items {
                guard let part = item.literalScalars else { return nil }
                out += part
            }
            return out
        default: return nil
        }
    }
}

/// A recursive-descent parser of the supported syntax.
struct PatternParser {
    struct Flags {
        var fold = false
        var dotAll = false
        var multiline = false
    }

    let scalars: [Unicode.Scalar]
    var position = 0
    var flags = Flags()
    var depth = 0

    init(_ scalars: [Unicode.Scalar]) { self.scalars = scalars }

    typealias SyntaxError = LabelPattern.SyntaxError

    func error(_ message: String, at offset: Int? = nil) -> SyntaxError { SyntaxError(message: message, offset: offset ?? position) }

    var peek: Unicode.Scalar? { position < scalars.count ? scalars[position] : nil }

    func peek(_ ahead: Int) -> Unicode.Scalar? { position + ahead < scalars.count ? scalars[position + ahead] : nil }

    mutating func parse() throws(SyntaxError) -> PatternNode {
        let node = try alternation()
        if peek == ")" { throw error("unexpected ) without a matching (") }
        return node
    }

    mutating func alternation() throws(SyntaxError) -> PatternNode {
        var branches = [try concatenation()]
        while peek == "|" {
            position += 1
            branches.append(try concatenation())
        }
        return branches.count == 1 ? branches[0] : .alternate(branches)
    }

    mutating func concatenation() throws(SyntaxError) -> PatternNode {
        var items: [PatternNode] = []
        while let c = peek, c != "|", c != ")" {
            guard let atom = try atom() else { continue }
            var node = atom
            var repeated = false
            while let (min, max, length) = quantifier() {
                if repeated { throw error("nested repetition operator (a** and the like) is not allowed", at: position) }
                if let max, max < min { throw error("a repetition's maximum is below its minimum", at: position) }
                if min > LabelPattern.maxRepeat || (max ?? 0) > LabelPattern.maxRepeat {
                    throw error("repetition counts are at most \(LabelPattern.maxRepeat)", at: position)
                }
                position += length
                if peek == "?" { position += 1 }  // Lazy: the same for a full match.
                node = .repetition(node, min: min, max: max)
                repeated = true
            }
            items.append(node)
        }
        switch items.count {
        case 0: return .empty
        case 1: return items[0]
        default: return .concat(items)
        }
    }

    /// The quantifier at the position, without consuming it: (min, max, length); nil when there is none
    /// (a `{` that is not a valid count is a literal, as in RE2).
    func quantifier() -> (Int, Int?, Int)? {
        switch peek {
        case "*": return (0, nil, 1)
        case "+": return (1, nil, 1)
        case "?": return (0, 1, 1)
        case "{": return counted()
        default: return nil
        }
    }

    func counted() -> (Int, Int?, Int)? {
        var i = position + 1
        func number() -> Int? {
            var value = 0
            var digits = 0
            while i < scalars.count, ("0"..."9").contains(scalars[i]) {
                value = Swift.min(value * 10 + Int(scalars[i].value - 0x30), 1_000_000)
                digits += 1
                i += 1
            }
            return digits > 0 ? value : nil
        }
        guard let min = number() else { return nil }
        var max: Int? = min
        if i < scalars.count, scalars[i] == "," {
            i += 1
            max = number()
        }
        guard i < scalars.count, scalars[i] == "}" else { return nil }
        return (min, max, i + 1 - position)
    }

    /// One atom; nil for a flag group such as `(?i)`, which only changes the flags.
    mutating func atom() throws(SyntaxError) -> PatternNode? {
        guard let c = peek else { throw error("unexpected end of pattern") }
        switch c {
        case "(": return try group()
        case "[":
            position += 1
            return .instruction(.set(try characterClass(), fold: flags.fold))
        case ".":
            position += 1
            return .instruction(.any(newline: flags.dotAll))
        case "^":
            position += 1
            return .instruction(.assert(flags.multiline ? .lineStart : .textStart))
        case "$":
            position += 1
            return .instruction(.assert(flags.multiline ? .lineEnd : .textEnd))
        case "\\": return try escape()
        case "*", "+", "?": throw error("missing argument to a repetition operator")
        case "{":
            if counted() != nil { throw error("missing argument to a repetition operator") }
            position += 1
            return literal(c)
        default:
            position += 1
            return literal(c)
        }
    }

    func literal(_ c: Unicode.Scalar) -> PatternNode {
        .instruction(.scalar(c, fold: flags.fold && !CaseFold.variants(of: c).isEmpty))
    }

    mutating func group() throws(SyntaxError) -> PatternNode? {
        let open = position
        position += 1
        depth += 1
        guard depth <= 100 else { throw error("groups are nested more than 100 deep", at: open) }
        defer { depth -= 1 }
        let saved = flags
        if peek == "?" {
            position += 1
            switch peek {
            case ":": position += 1
            case "P", "<":
                if peek == "<", peek(1) == "=" || peek(1) == "!" { throw error("lookbehind is not supported (RE2 has none)", at: open) }
                if peek == "P" { position += 1 }
                guard peek == "<" else { throw error("a named group is (?P<name>...)", at: open) }
                position += 1
                while let c = peek, c != ">" {
                    guard c == "_" || c.properties.isAlphabetic || ("0"..."9").contains(c) else { throw error("a group name has letters, digits and _") }
                    position += 1
                }
                guard peek == ">" else { throw error("missing > after a group name", at: open) }
                position += 1
            case "=", "!": throw error("lookahead is not supported (RE2 has none)", at: open)
            default:
                // Flags: (?i) for the rest of the group, or (?i:...) for the group.
                var on = true
                var seen = false
                var changed = flags
                while let c = peek, c != ")", c != ":" {
                    switch c {
                    case "-":
                        guard on else { throw error("a flag group has one -") }
                        on = false
                    case "i": changed.fold = on
                    case "s": changed.dotAll = on
                    case "m": changed.multiline = on
                    case "U": break  // Ungreedy: the same for a full match.
                    default: throw error("unknown flag (i, s, m and U are supported)")
                    }
                    seen = true
                    position += 1
                }
                guard seen, let end = peek else { throw error("missing ) after group flags", at: open) }
                position += 1
                if end == ")" {
                    // Applies to the rest of the enclosing group: the caller's flags, not restored here.
                    flags = changed
                    return nil
                }
                flags = changed
            }
        }
        let inner = try alternation()
        guard peek == ")" else { throw error("missing ) for the ( here", at: open) }
        position += 1
        flags = saved
        return inner
    }

    /// A class after its `[`, up to and including the `]`.
    mutating func characterClass() throws(SyntaxError) -> ScalarSet {
        let open = position - 1
        var set = ScalarSet(ranges: [])
        if peek == "^" {
            set.negated = true
            position += 1
        }
        var first = true
        while true {
            guard let c = peek else { throw error("missing ] for the [ here", at: open) }
            if c == "]", !first {
                position += 1
                break
            }
            first = false
            if c == "[", peek(1) == ":" {
                set.ranges += try posixClass()
                continue
            }
            let low: Unicode.Scalar
            switch try classItem() {
            case .ranges(let ranges):
                set.ranges += ranges
                continue
            case .scalar(let s): low = s
            }
            if peek == "-", let after = peek(1), after != "]" {
                position += 1
                guard case .scalar(let high) = try classItem() else { throw error("a range ends with a character, not a class") }
                guard low.value <= high.value else { throw error("a range is backwards (its end is below its start)") }
                set.ranges.append(low.value...high.value)
            } else {
                set.ranges.append(low.value...low.value)
            }
        }
        return set
    }

    enum ClassItem {
        case scalar(Unicode.Scalar)
        case ranges([ClosedRange<UInt32>])
    }

    mutating func classItem() throws(SyntaxError) -> ClassItem {
        guard let c = peek else { throw error("missing ] in a character class") }
        position += 1
        guard c == "\\" else { return .scalar(c) }
        guard let e = peek else { throw error("a pattern cannot end with \\") }
        if let ranges = Self.perlClass(e) {
            position += 1
            return .ranges(ranges)
        }
        return .scalar(try escapedScalar())
    }

    mutating func posixClass() throws(SyntaxError) -> [ClosedRange<UInt32>] {
        let start = position
        position += 2
        var negated = false
        if peek == "^" {
            negated = true
            position += 1
        }
        var name = ""
        while let c = peek, c != ":" {
            name.unicodeScalars.append(c)
            position += 1
        }
        guard peek == ":", peek(1) == "]", let ranges = ScalarSet.posix[name] else { throw error("unknown POSIX class (alnum, alpha, digit, lower, upper, space, word, xdigit... are known)", at: start) }
        position += 2
        return negated ? ScalarSet.complement(ranges) : ranges
    }

    /// `\d \w \s` and their negations, as ranges.
    static func perlClass(_ c: Unicode.Scalar) -> [ClosedRange<UInt32>]? {
        switch c {
        case "d": ScalarSet.digit.ranges
        case "D": ScalarSet.complement(ScalarSet.digit.ranges)
        case "w": ScalarSet.word.ranges
        case "W": ScalarSet.complement(ScalarSet.word.ranges)
        case "s": ScalarSet.space.ranges
        case "S": ScalarSet.complement(ScalarSet.space.ranges)
        default: nil
        }
    }

    mutating func escape() throws(SyntaxError) -> PatternNode? {
        let start = position
        position += 1
        guard let e = peek else { throw error("a pattern cannot end with \\", at: start) }
        if let ranges = Self.perlClass(e) {
            position += 1
            return .instruction(.set(ScalarSet(ranges: ranges), fold: false))
        }
        switch e {
        case "A":
            position += 1
            return .instruction(.assert(.textStart))
        case "z":
            position += 1
            return .instruction(.assert(.textEnd))
        case "b":
            position += 1
            return .instruction(.assert(.wordBoundary))
        case "B":
            position += 1
            return .instruction(.assert(.notWordBoundary))
        case "Q":
            position += 1
            var items: [PatternNode] = []
            while let c = peek {
                if c == "\\", peek(1) == "E" {
                    position += 2
                    break
                }
                items.append(literal(c))
                position += 1
            }
            return items.isEmpty ? .empty : .concat(items)
        default:
            return literal(try escapedScalar())
        }
    }

    /// The scalar an escape (after its `\`) stands for.
    mutating func escapedScalar() throws(SyntaxError) -> Unicode.Scalar {
        let start = position - 1
        guard let e = peek else { throw error("a pattern cannot end with \\", at: start) }
        position += 1
        switch e {
        case "n": return "\n"
        case "t": return "\t"
        case "r": return "\r"
        case "f": return "\u{0C}"
        case "v": return "\u{0B}"
        case "a": return "\u{07}"
        case "x":
            var digits = ""
            if peek == "{" {
                position += 1
                while let c = peek, c != "}" {
                    digits.unicodeScalars.append(c)
                    position += 1
                }
                guard peek == "}" else { throw error("missing } in \\x{...}", at: start) }
                position += 1
            } else {
                for _ in 0..<2 {
                    guard let c = peek else { break }
                    digits.unicodeScalars.append(c)
                    position += 1
                }
            }
            guard !digits.isEmpty, digits.count <= 8, let value = UInt32(digits, radix: 16), let scalar = Unicode.Scalar(value) else {
                throw error("\\x takes two hex digits or {hex}", at: start)
            }
            return scalar
        case "p", "P": throw error("Unicode classes (\\p{...}) are not supported; use ranges such as [a-z]", at: start)
        default:
            if ("0"..."9").contains(e) { throw error("backreferences and octal escapes are not supported", at: start) }
            if e.isASCII, !e.properties.isAlphabetic { return e }
            throw error("unknown escape", at: start)
        }
    }
}
