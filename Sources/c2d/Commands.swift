import AMQP
import ArgumentParser
import AsyncHTTPClient
import Domain
import Foundation
import Gateway
import Logging
import Persistence
import Runtime
import Scheduler
import ServiceLifecycle
import Storage
import Worker

struct ServerOptions: ParsableArguments {
    @Option(help: "Address the HTTP API listens on.")
    var host: String = "127.0.0.1"

    @Option(help: "Port the HTTP API listens on.")
    var port: Int = 8080
}

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev", abstract: "Gateway, worker and scheduler in one process (applies migrations first).")

    @OptionGroup var server: ServerOptions

    func run() async throws {
        try await Launcher.run(roles: [.gateway, .worker, .scheduler], server: server, migrate: true)
    }
}

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gateway", abstract: "Serve the HTTP APIs.")

    @OptionGroup var server: ServerOptions

    func run() async throws {
        try await Launcher.run(roles: [.gateway], server: server, migrate: false)
    }
}

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Consume job messages and run jobs.")

    func run() async throws {
        try await Launcher.run(roles: [.worker], server: nil, migrate: false)
    }
}

struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler", abstract: "Relay the outbox and keep jobs moving.")

    func run() async throws {
        try await Launcher.run(roles: [.scheduler], server: nil, migrate: false)
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
        defer { Task { await client.shutdown() } }
        let directory = directory.map { URL(fileURLWithPath: $0) } ?? settings.migrationsDirectory
        let applied = try await Launcher.failClearly("migrate") {
            try await MigrationRunner(client: client, directory: directory, logger: logger).apply()
        }
        print(applied.isEmpty ? "migrations: up to date" : "migrations: applied \(applied.joined(separator: ", "))")
        await client.shutdown()
    }
}
