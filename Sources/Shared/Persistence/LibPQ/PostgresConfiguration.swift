import Foundation

/// How a ``PostgresClient`` connects and sizes its pool.
///
/// Connection settings follow libpq conventions: ``connectionString`` is handed to libpq as is, and whatever it leaves
/// out comes from the standard `PG*` environment variables, `~/.pgpass` and service files, which libpq reads itself.
/// The timeouts below are defaults that the connection string may override (its own `connect_timeout`,
/// `keepalives*` or `tcp_user_timeout` win).
package struct PostgresConfiguration: Sendable {
    /// A libpq connection string: `key=value` pairs or a `postgres://` URL. Empty means libpq's defaults.
    /// Multi-host strings with `target_session_attrs` work, since libpq does the host selection.
    package var connectionString: String
    /// Connections opened in the background on first use and kept, so the first requests after start don't
    /// each pay for a connect. Default 1.
    package var minimumConnections: Int
    /// Upper bound on open connections; callers beyond it wait up to ``acquireTimeout``. Default 8.
    package var maximumConnections: Int
    /// Passed as libpq's `connect_timeout` (whole seconds, at least 2 because libpq rounds smaller values up)
    /// unless the connection string sets one. Default 5 s.
    package var connectTimeout: Duration
    /// `SET statement_timeout` on each new connection, so no statement runs unbounded on the server.
    /// Zero disables it. Default 30 s.
    package var statementTimeout: Duration
    /// How long a caller waits for a free connection when all ``maximumConnections`` are busy before getting
    /// ``PostgresError/Code/acquireTimeout``. Default 5 s.
    package var acquireTimeout: Duration
    /// Shown in `pg_stat_activity.application_name`. Default "c2d".
    package var applicationName: String
    /// TCP keepalives and `tcp_user_timeout` for each connection: a blocked read or write on a dead network path
    /// fails after about this long instead of hanging on the kernel's defaults (hours). Zero leaves libpq's
    /// defaults. Default 30 s.
    package var networkTimeout: Duration

    package init(
        connectionString: String = "",
        minimumConnections: Int = 1,
        maximumConnections: Int = 8,
        connectTimeout: Duration = .seconds(5),
        statementTimeout: Duration = .seconds(30),
        acquireTimeout: Duration = .seconds(5),
        applicationName: String = "c2d",
        networkTimeout: Duration = .seconds(30)
    ) {
        self.connectionString = connectionString
        self.minimumConnections = minimumConnections
        self.maximumConnections = maximumConnections
        self.connectTimeout = connectTimeout
        self.statementTimeout = statementTimeout
        self.acquireTimeout = acquireTimeout
        self.applicationName = applicationName
        self.networkTimeout = networkTimeout
    }

    /// `DATABASE_URL` if set, else an empty connection string (so libpq uses the `PG*` variables).
    package static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> PostgresConfiguration {
        PostgresConfiguration(connectionString: environment["DATABASE_URL"] ?? "")
    }

    /// Checks the numbers before any connection is made.
    func validate() throws(PostgresError) {
        guard maximumConnections >= 1, minimumConnections >= 0, minimumConnections <= maximumConnections else {
            throw PostgresError(
                code: .invalidConfiguration,
                message: "need 0 <= minimumConnections <= maximumConnections and maximumConnections >= 1"
            )
        }
        guard connectTimeout >= .zero, statementTimeout >= .zero, acquireTimeout >= .zero, networkTimeout >= .zero
        else {
            throw PostgresError(code: .invalidConfiguration, message: "timeouts must not be negative")
        }
    }

    /// libpq keyword/value defaults that the connection string may override. They are placed before the
    /// expanded `dbname` entry in `PQconnectdbParams`, and libpq keeps the last value for a repeated keyword.
    var libpqDefaults: [(String, String)] {
        var pairs: [(String, String)] = [("application_name", applicationName)]
        if connectTimeout > .zero {
            pairs.append(("connect_timeout", String(max(2, Int(connectTimeout.inSeconds.rounded(.up))))))
        }
        if networkTimeout > .zero {
            let seconds = max(3, Int(networkTimeout.inSeconds.rounded(.up)))
            pairs += [
                ("keepalives", "1"),
                ("keepalives_idle", String(max(1, seconds / 3))),
                ("keepalives_interval", String(max(1, seconds / 6))),
                ("keepalives_count", "2"),
                ("tcp_user_timeout", String(seconds * 1000)),
            ]
        }
        return pairs
    }
}

extension Duration {
    /// The duration in (fractional) seconds.
    var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// The duration in whole milliseconds, rounded up so that a small positive value never becomes "off" (0).
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
    }
}
