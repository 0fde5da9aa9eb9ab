import ArgumentParser
import Benchmarks

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
}
