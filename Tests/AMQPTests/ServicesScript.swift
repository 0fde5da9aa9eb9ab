import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `scripts/services` of the checkout these tests live in (found from this file's path, through any scratch
/// package's symlinks). Not Foundation's `Process`: on Linux its `waitUntilExit` never returns when the script
/// leaves a daemon (the started broker) holding an inherited descriptor, and it leaks blocked signals.
func services(_ arguments: String...) async throws {
    let root = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    let script = root.appendingPathComponent("scripts/services").path
    let command = ([script] + arguments).joined(separator: " ") + " >/dev/null 2>&1 </dev/null"
    let argv: [UnsafeMutablePointer<CChar>?] =
        ["/bin/sh", "-c", command].map { (argument: String) in strdup(argument) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ)
    try #require(spawned == 0, "posix_spawn failed: \(spawned)")
    var status: Int32 = 0
    while waitpid(pid, &status, WNOHANG) == 0 {
        try await Task.sleep(for: .milliseconds(100))
    }
    #expect(status == 0, "scripts/services \(arguments.joined(separator: " ")) exited with status \(status)")
}
