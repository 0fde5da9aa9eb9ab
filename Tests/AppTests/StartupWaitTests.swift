import ChildProcesses
import Logging
import Persistence
import TestSupport
import Testing

@testable import App

/// A process started while Postgres is away waits for it, for as long as `C2D_STARTUP_WAIT_SECONDS` says.
@Suite struct StartupWaitTests {
    @Test func answersAtOnceWhenPostgresIsUp() async throws {
        let postgres = PostgresClient(configuration: TestDatabase.configuration(), logger: TestDatabase.logger)
        let start = ContinuousClock.now
        try await Launcher.waitForPostgres(postgres, for: .seconds(30), logger: TestDatabase.logger)
        #expect(ContinuousClock.now - start < .seconds(5))
        await postgres.shutdown()
    }

    @Test func waitsThenGivesUpWhereNothingListens() async throws {
        let port = try LoopbackPort.free()
        var configuration = PostgresConfiguration(connectionString: "host=127.0.0.1 port=\(port) dbname=none")
        configuration.connectTimeout = .seconds(1)
        let postgres = PostgresClient(configuration: configuration, logger: TestDatabase.logger)
        for (wait, least) in [(Duration.zero, Duration.zero), (.seconds(2), .seconds(1))] {
            let start = ContinuousClock.now
            await #expect(throws: PostgresError.self) {
                try await Launcher.waitForPostgres(postgres, for: wait, logger: TestDatabase.logger)
            }
            let took = ContinuousClock.now - start
            #expect(took >= least && took < wait + .seconds(5))
        }
        await postgres.shutdown()
    }
}
