import ArgumentParser
import Benchmarks

// `stdout` is a C global; Swift 6 would refuse to read it from any context without `@preconcurrency`.
#if canImport(Glibc)
    @preconcurrency import Glibc
#elseif canImport(Darwin)
    @preconcurrency import Darwin
#endif

@main
struct C2D: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "c2d",
        abstract: "Compute-to-data: run consumers' algorithms next to data that never leaves.",
        discussion:
            "Configuration comes from the environment; `c2d settings` (and README.md) lists every variable and its default.",
        subcommands: [
            DevCommand.self, GatewayCommand.self, WorkerCommand.self, SchedulerCommand.self, MigrateCommand.self,
            SettingsCommand.self,
            TailCommand.self, QueuesCommand.self, TokenCommand.self, BenchCommand.self, KubeSimCommand.self,
            PodCommand.self, JobCommand.self, BatchCommand.self,
        ]
    )

    /// ArgumentParser's own `main`, after making standard output line-buffered: into a pipe or a file (`c2d bench db
    /// | tee`, a CI log) stdio buffers whole blocks, so a bench's figures appeared only when it ended, and after lines
    /// written straight to the file descriptor.
    static func main() async {
        setvbuf(stdout, nil, _IOLBF, 0)
        await main(nil)
    }
}
