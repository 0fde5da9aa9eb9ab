import ArgumentParser
import Domain
import Foundation
import NIOPosix
import UnixSignals

extension PodCommand {
    /// `c2d pod relay-log`: the algorithm pod's `algorithm-log` sidecar. The algorithm's output goes to
    /// `/data/logs/algorithm.log` (publish uploads that file); this copies the file, as it grows, to its own stdout,
    /// so the API server can serve it as a container log while the algorithm runs (live logs) and after publish
    /// failed to upload it. Nothing runs in the algorithm's container for it: the algorithm's exit status and OOM
    /// kill stay its own, and its image needs no tool beyond the shell it already starts with.
    struct RelayLog: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "relay-log",
            abstract: "Copy a growing log file to stdout until stopped (the algorithm pod's algorithm-log sidecar).",
            discussion: """
                Runs as a native sidecar: Kubernetes stops it (SIGTERM) once the algorithm container ended; it then \
                copies what is left of the file and exits 0. A file that shrank (truncated by the algorithm) is read \
                again from its start.
                """)

        @Option(help: "The file to relay (default: $C2D_RELAYED_LOG, else /data/logs/algorithm.log).")
        var file: String?

        @Option(help: "How often the file is looked at, in milliseconds.")
        var intervalMilliseconds = 200

        func run() async throws {
            let url = URL(fileURLWithPath: file ?? PodCommand.environment(.relayedLog) ?? "/data/logs/algorithm.log")
            let interval = Duration.milliseconds(max(10, intervalMilliseconds))
            let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
            let offset = try await withThrowingTaskGroup(of: UInt64.self) { group in
                group.addTask {
                    var offset: UInt64 = 0
                    while !Task.isCancelled {
                        do {
                            offset = try await LogRelay.copy(url, from: offset)
                        } catch {
                            // Keep relaying: a failed look (the volume busy, stdout briefly blocked) is retried.
                            FileHandle.standardError.write(Data("relay-log: \(error)\n".utf8))
                        }
                        try? await Task.sleep(for: interval)
                    }
                    return offset
                }
                for await _ in signals { break }
                group.cancelAll()
                return try await group.next() ?? 0
            }
            // The algorithm has ended: what it wrote last is still to be relayed.
            _ = try await LogRelay.copy(url, from: offset)
        }
    }
}

/// Copies what a file gained since `offset` to stdout.
enum LogRelay {
    /// Bytes read at a time: a chatty algorithm is relayed in pieces, never held in memory whole.
    static let chunkBytes = 256 << 10

    /// Copies the file from `offset` to its size at this look to stdout and answers the new offset; a missing file
    /// (the algorithm has not started) answers `offset`, a file shorter than `offset` is read from its start.
    ///
    /// The algorithm owns the directory, so the path is opened without following a symbolic link and without
    /// blocking, and only a regular file is read, up to the size it had when opened: a link to `/dev/zero` or to
    /// this container's own files, or a FIFO, relays nothing and never hangs the sidecar.
    static func copy(_ file: URL, from offset: UInt64) async throws -> UInt64 {
        try await NIOThreadPool.singleton.runIfActive {
            let descriptor = open(file.path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard descriptor >= 0 else { return offset }
            let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
            var status = stat()
            guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { return offset }
            let end = UInt64(status.st_size)
            var position = end < offset ? 0 : offset
            try handle.seek(toOffset: position)
            while position < end {
                let count = Int(min(UInt64(chunkBytes), end - position))
                guard let data = try handle.read(upToCount: count), !data.isEmpty else { break }
                try FileHandle.standardOutput.write(contentsOf: data)
                position += UInt64(data.count)
            }
            return position
        }
    }
}
