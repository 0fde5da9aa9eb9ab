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
                        offset = try await LogRelay.copy(url, from: offset)
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

    /// Copies the file from `offset` to its current end to stdout and answers the new offset; a missing file
    /// (the algorithm has not started) answers `offset`, a file shorter than `offset` is read from its start.
    static func copy(_ file: URL, from offset: UInt64) async throws -> UInt64 {
        try await NIOThreadPool.singleton.runIfActive {
            guard let handle = try? FileHandle(forReadingFrom: file) else { return offset }
            defer { try? handle.close() }
            var position = offset
            if let end = try? handle.seekToEnd(), end < position { position = 0 }
            try handle.seek(toOffset: position)
            while let data = try handle.read(upToCount: chunkBytes), !data.isEmpty {
                try FileHandle.standardOutput.write(contentsOf: data)
                position += UInt64(data.count)
            }
            return position
        }
    }
}
