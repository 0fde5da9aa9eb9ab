import AMQP
import Foundation
import Logging
import Persistence
import ServiceLifecycle
import UnixSignals
import Worker

/// Starts c2d's processes: loads the settings, checks Postgres, builds the roles' services (``C2DServices``) and runs
/// them in one ``ServiceGroup`` that stops gracefully on SIGTERM/SIGINT.
package enum Launcher {
    /// A start that cannot go on, as one line (`Error: …` from the command line) instead of a stack of retries.
    package struct StartupError: Error, CustomStringConvertible {
        package var description: String
    }

    package static func settings() throws(StartupError) -> Settings {
        do {
            return try Settings.load()
        } catch {
            throw StartupError(description: error.description)
        }
    }

    /// `toolLevel`: the level when LOG_LEVEL is not set, for a command whose output is the point (`c2d tail`), so
    /// that its standard error does not fill with a service's info lines.
    package static func logger(_ settings: Settings, unlessSet toolLevel: Logger.Level? = nil) -> Logger {
        let level =
            EnvironmentReader().explicit(.logLevel) == nil ? (toolLevel ?? settings.logLevel) : settings.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        return Logger(label: "c2d")
    }

    /// Turns a startup failure into one clear line and a non-zero exit.
    package static func failClearly<T>(_ what: String, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PostgresError where error.code == .connectionFailed {
            throw StartupError(
                description: "\(what): \(error)\nc2d connects where DATABASE_URL, else the PG* variables, point "
                    + "(`c2d settings` shows them); for the project's own services: eval \"$(scripts/services env)\"")
        } catch {
            throw StartupError(description: "\(what): \(error)")
        }
    }

    /// Runs `roles` until SIGTERM or SIGINT; `listener` is the gateway's, `migrate` applies pending migrations first.
    package static func run(roles: Set<Role>, listener: (host: String, port: Int)?, migrate: Bool) async throws {
        if roles.contains(.worker) {
            // First, before threads allocate: a worker keeps thousands of small long-lived values (monitored
            // attempts) among the transients of their launches, and fewer malloc arenas fragment less.
            FreeMemory.limitArenas(toCores: ProcessInfo.processInfo.activeProcessorCount)
        }
        let settings = try settings()
        let logger = logger(settings)
        let postgres = PostgresClient(configuration: settings.postgres, logger: logger)
        let built: C2DServices
        do {
            try await prepare(postgres: postgres, settings: settings, migrate: migrate, logger: logger)
            built = try await C2DServices.build(
                settings: settings, roles: roles, listener: listener, postgres: postgres, logger: logger)
        } catch {
            await postgres.shutdown()
            throw error
        }
        let group = ServiceGroup(
            configuration: .init(
                services: built.services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            // Fail fast, with one message, on a wrong RabbitMQ URL or credentials.
            do {
                for client in built.amqpClients {
                    try await client.waitUntilConnected(timeout: settings.amqp.connectTimeout * 3)
                }
            } catch {
                await group.triggerGracefulShutdown()
                tasks.cancelAll()
                throw StartupError(description: "cannot connect to RabbitMQ: \(error)")
            }
            logger.info("c2d running", metadata: ["roles": "\(roles.map(\.rawValue).sorted())"])
            try await tasks.next()
        }
    }

    /// Asks Postgres until it answers, for at most `wait`; an error that waiting cannot cure (a statement error, a
    /// configuration libpq refuses) ends it at once. Authentication failures look like connection failures to
    /// libpq, so they too are retried, each one logged with its reason.
    static func waitForPostgres(_ postgres: PostgresClient, for wait: Duration, logger: Logger) async throws {
        let deadline = ContinuousClock.now + wait
        var backoff = Duration.milliseconds(250)
        while true {
            do {
                try await PostgresJobStore(client: postgres).ping()
                return
            } catch let error as PostgresError where error.isTransient && ContinuousClock.now + backoff < deadline {
                logger.warning("waiting for Postgres", metadata: ["error": "\(error)"])
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(4))
            }
        }
    }

    /// Postgres reachable, migrations applied if asked, this process's environments recorded.
    static func prepare(postgres: PostgresClient, settings: Settings, migrate: Bool, logger: Logger) async throws {
        try await failClearly("cannot reach Postgres") {
            try await waitForPostgres(postgres, for: settings.startupWait, logger: logger)
        }
        if migrate {
            let applied = try await failClearly("migrate") {
                try await MigrationRunner(client: postgres, directory: settings.migrationsDirectory, logger: logger)
                    .apply()
            }
            if !applied.isEmpty { logger.info("migrations applied", metadata: ["versions": "\(applied)"]) }
        }
        try await failClearly("cannot record environments") {
            try await PostgresJobStore(client: postgres).upsertEnvironments(settings.environments)
        }
    }
}
