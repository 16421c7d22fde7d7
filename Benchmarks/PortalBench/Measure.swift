import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Wall-clock timing of a block.
func timed<T>(_ body: () async throws -> T) async rethrows -> (T, seconds: Double) {
    let start = ContinuousClock.now
    let value = try await body()
    return (value, seconds(since: start))
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// Percentiles of a sample (nearest rank).
struct Percentiles {
    var p50: Double
    var p99: Double
    var max: Double

    init(_ values: [Double]) {
        let sorted = values.sorted()
        func rank(_ p: Double) -> Double { sorted[Swift.min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1)] }
        p50 = rank(0.50)
        p99 = rank(0.99)
        max = sorted.last ?? 0
    }
}

/// A child process's outcome with its resource use, from `wait4`.
struct ChildRun {
    var status: Int32
    var seconds: Double
    /// Peak resident set size in KiB (see ``runMeasured(_:)`` for when it is the child's own).
    var maxRSSKiB: Int
    var output: String
}

enum BenchError: Error, CustomStringConvertible {
    case failed(String)
    var description: String {
        switch self { case .failed(let message): message }
    }
}

/// Runs `arguments` (the first is an absolute path) with stdout and stderr into a file, and reports its
/// exit status, wall time and peak memory. Foundation's `Process` does not expose the child's rusage.
func runChild(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ChildRun {
    let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("portal-bench-\(UUID().uuidString).out").path
    defer { try? FileManager.default.removeItem(atPath: outputPath) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = arguments.map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for p in argv { free(p) }
        for p in envp { free(p) }
    }
    var pid: pid_t = 0
    let start = ContinuousClock.now
    let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, envp)
    guard spawned == 0 else { throw BenchError.failed("cannot start \(arguments[0]): errno \(spawned)") }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 {
        guard errno == EINTR else { throw BenchError.failed("wait4 failed: errno \(errno)") }
    }
    let elapsed = seconds(since: start)
    let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    // WIFEXITED / WEXITSTATUS by hand: the macros are not imported.
    let exitStatus: Int32 = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    return ChildRun(status: exitStatus, seconds: elapsed, maxRSSKiB: Int(usage.ru_maxrss), output: output)
}

/// Runs a child under GNU time for its peak memory. `wait4` cannot give it: a child spawned from this
/// process inherits this process's peak RSS at exec (Linux keeps the old address space's high-water mark),
/// whereas GNU time forks from a small process of its own.
func runMeasured(_ arguments: [String]) throws -> ChildRun {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/time") else {
        throw BenchError.failed("/usr/bin/time (Debian package 'time') is needed to measure peak memory")
    }
    var run = try runChecked(["/usr/bin/time", "-f", "portal-bench-maxrss-kib=%M"] + arguments)
    guard let line = run.output.split(separator: "\n").last(where: { $0.hasPrefix("portal-bench-maxrss-kib=") }),
          let kib = Int(line.dropFirst("portal-bench-maxrss-kib=".count))
    else { throw BenchError.failed("GNU time printed no peak memory:\n\(run.output)") }
    run.maxRSSKiB = kib
    return run
}

/// Runs a child and fails with its output unless it exits 0.
@discardableResult
func runChecked(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ChildRun {
    let run = try runChild(arguments, environment: environment)
    guard run.status == 0 else {
        throw BenchError.failed("\(arguments.joined(separator: " ")) exited \(run.status):\n\(run.output)")
    }
    return run
}

/// The absolute path of an executable on PATH.
func which(_ name: String) -> String? {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}

/// The figures of one run, printed as they come and as a table at the end.
final class Report {
    struct Row {
        var name: String
        var value: String
        var baseline: String
        var ratio: String
        var target: String
        var met: Bool?
    }

    private(set) var rows: [Row] = []

    func add(_ name: String, _ value: String, baseline: String = "", ratio: Double? = nil, target: String = "", met: Bool? = nil) {
        let row = Row(name: name, value: value, baseline: baseline, ratio: ratio.map { String(format: "%.2f", $0) } ?? "", target: target, met: met)
        rows.append(row)
        let verdict = met.map { $0 ? "  [target met]" : "  [TARGET MISSED]" } ?? ""
        print("  \(name): \(value)\(baseline.isEmpty ? "" : " | baseline \(baseline)")\(row.ratio.isEmpty ? "" : " | ratio \(row.ratio)")\(target.isEmpty ? "" : " | target \(target)")\(verdict)")
    }

    /// A Markdown table of every row.
    var markdown: String {
        var text = "| measure | value | baseline | ratio | target | met |\n|---|---|---|---|---|---|\n"
        for row in rows {
            text += "| \(row.name) | \(row.value) | \(row.baseline) | \(row.ratio) | \(row.target) | \(row.met.map { $0 ? "yes" : "**no**" } ?? "") |\n"
        }
        return text
    }
}

func rate(_ count: Int, _ seconds: Double) -> String {
    formatted(Double(count) / seconds) + "/s"
}

func formatted(_ value: Double) -> String {
    let formatter = NumberFormatter()
    formatter.numberStyle = .decimal
    formatter.maximumFractionDigits = value < 100 ? 2 : 0
    return formatter.string(from: NSNumber(value: value)) ?? String(value)
}

func mebibytes(_ kib: Int) -> String {
    String(format: "%.1f MiB", Double(kib) / 1024)
}

func milliseconds(_ seconds: Double) -> String {
    String(format: "%.3f ms", seconds * 1000)
}
