package import Foundation

/// Child processes for tests and benchmarks: posix_spawn and waitpid, not Foundation's Process (its
/// waitUntilExit spun a core for ever here).
package enum ChildProcess {
    /// Starts `executable` with its output appended to `output` (discarded when nil), in `directory` (the
    /// test's own folder, so that files a tool writes to its working directory stay out of the checkout);
    /// returns its process id.
    package static func spawn(_ executable: String, _ arguments: [String], output: String? = nil, directory: String? = nil) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, output ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Glibc's posix_spawn_file_actions_addchdir_np is not visible to Swift: a shell changes directory
        // and then becomes the program (exec), so the process id is still the program's.
        let command = directory.map { ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", $0, executable] + arguments } ?? [executable] + arguments
        let argv = command.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, command[0], &actions, nil, argv, environ)
        guard result == 0 else { throw TestSupportError("cannot start \(executable): errno \(result)") }
        return pid
    }

    /// Whether the child has exited; reaps it if so (do not `stop` it afterwards).
    package static func hasExited(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == pid
    }

    /// SIGTERM, up to two seconds for it to exit, then SIGKILL; always reaped.
    package static func stop(_ pid: pid_t) {
        kill(pid, SIGTERM)
        var status: Int32 = 0
        for _ in 0..<200 {
            if waitpid(pid, &status, WNOHANG) == pid { return }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
    }
}
