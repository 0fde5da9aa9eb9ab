import App
import ArgumentParser
import Foundation
import Persistence

struct ServerOptions: ParsableArguments {
    @Option(help: "Address the HTTP API listens on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port the HTTP API listens on (1 to 65535).")
    var port: Int = 8080

    func validate() throws {
        // A port past 65535 would be taken modulo 65536: the API would listen somewhere nobody looks.
        guard (1...65_535).contains(port) else { throw ValidationError("--port must be 1 to 65535") }
    }

    var listener: (host: String, port: Int) { (host, port) }
}

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev", abstract: "Gateway, worker and scheduler in one process (applies migrations first).")

    @OptionGroup var server: ServerOptions

    func run() async throws {
        try await Launcher.run(roles: [.gateway, .worker, .scheduler], listener: server.listener, migrate: true)
    }
}

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gateway", abstract: "Serve the HTTP APIs.")

    @OptionGroup var server: ServerOptions

    func run() async throws {
        try await Launcher.run(roles: [.gateway], listener: server.listener, migrate: false)
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Consume job messages and run jobs.")

    func run() async throws {
        try await Launcher.run(roles: [.worker], listener: nil, migrate: false)
    }
}

struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Admit and dispatch jobs, relay events, and reconcile with the cluster as the leader.")

    func run() async throws {
        try await Launcher.run(roles: [.scheduler], listener: nil, migrate: false)
    }
}

struct SettingsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "settings",
        abstract: "Print every environment variable c2d reads, its default and meaning (README's table).")

    func run() async throws {
        print(Setting.markdownTable(), terminator: "")
    }
}

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Apply the SQL migrations that are not applied yet.")

    @Option(help: "Folder of NNNN_name.sql files (default: the checkout's migrations/ or C2D_MIGRATIONS_DIR).")
    var directory: String?

    func run() async throws {
        let settings = try Launcher.settings()
        let logger = Launcher.logger(settings)
        let client = PostgresClient(configuration: settings.postgres, logger: logger)
        let directory = directory.map { URL(fileURLWithPath: $0) } ?? settings.migrationsDirectory
        let applied: [String]
        do {
            applied = try await Launcher.failClearly("migrate") {
                try await MigrationRunner(client: client, directory: directory, logger: logger).apply()
            }
        } catch {
            await client.shutdown()
            throw error
        }
        print(applied.isEmpty ? "migrations: up to date" : "migrations: applied \(applied.joined(separator: ", "))")
        await client.shutdown()
    }
}
