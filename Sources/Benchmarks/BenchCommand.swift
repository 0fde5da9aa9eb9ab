import ArgumentParser

package struct BenchCommand: AsyncParsableCommand {
    package init() {}

    package static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print their figures, next to the physical ceiling measured in the same run.",
        subcommands: [
            BenchDatabaseCommand.self, BenchAMQPCommand.self, BenchSubmitCommand.self, BenchClusterCommand.self,
            BenchSandboxCommand.self,
            BenchReconcileCommand.self, BenchE2ECommand.self, BenchChaosCommand.self, BenchCleanCommand.self,
        ]
    )
}
