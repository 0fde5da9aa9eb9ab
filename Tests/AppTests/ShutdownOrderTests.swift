import Logging
import Persistence
import ServiceLifecycle
import Testing

@testable import App

/// The order a ``ServiceGroup`` stops c2d's parts in: a client ``C2DServices`` adds before the services using it
/// closes after them, so the worker's last hand-back writes still reach Postgres.
@Suite struct ShutdownOrderTests {
    actor Log {
        var events: [String] = []
        func add(_ event: String) { events.append(event) }
    }

    /// A service that still writes for a moment after graceful shutdown began, like a worker handing jobs back.
    struct LastWriter: Service {
        let log: Log

        func run() async throws {
            try? await gracefulShutdown()
            try await Task.sleep(for: .milliseconds(200))
            await log.add("last write")
        }
    }

    @Test func clientClosesAfterTheServicesUsingIt() async throws {
        let log = Log()
        let logger = Logger(label: "test")
        let postgres = ClientLifetime(name: "postgres", shutdown: { await log.add("postgres closed") }, logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [postgres, LastWriter(log: log), LastWriter(log: log)], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(100))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(await log.events == ["last write", "last write", "postgres closed"])
    }

    @Test func postgresIsTheFirstServiceBuilt() async throws {
        let settings = try Settings.load([:])
        let logger = Logger(label: "test")
        let postgres = PostgresClient(configuration: settings.postgres, logger: logger)
        let built = try await C2DServices.build(
            settings: settings, roles: [.gateway], listener: ("127.0.0.1", 0), postgres: postgres, logger: logger)
        #expect((built.services.first as? ClientLifetime)?.name == "postgres")
        #expect(built.services.count > 1)
        await built.shutDownClients()
    }
}
