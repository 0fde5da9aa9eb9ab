import ArgumentParser

@main
struct C2D: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "c2d",
        abstract: "Compute-to-data: run consumers' algorithms next to data that never leaves.",
        discussion: "Configuration comes from the environment; see README.md for every variable and its default.",
        subcommands: [
            DevCommand.self, GatewayCommand.self, WorkerCommand.self, SchedulerCommand.self, MigrateCommand.self,
            TailCommand.self, QueuesCommand.self, TokenCommand.self, BenchCommand.self, KubeSimCommand.self,
            PodCommand.self, JobCommand.self, BatchCommand.self,
        ]
    )
}

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print their figures, next to the physical ceiling measured in the same run.",
        subcommands: [
            BenchDatabaseCommand.self, BenchAMQPCommand.self, BenchSubmitCommand.self, BenchClusterCommand.self,
            BenchSandboxCommand.self,
            BenchReconcileCommand.self, BenchE2ECommand.self, BenchChaosCommand.self,
        ]
    )
}
