import Domain
import Foundation
import Logging

/// Applies numbered SQL migrations (`NNNN_name.sql`) from a directory, once each, in order.
///
/// Applied migrations are recorded in `schema_migrations` (version, name, SHA-256 checksum of the file, time) in
/// the first schema of the connection's `search_path`. Each pending file runs in its own transaction together
/// with its bookkeeping row, under a transaction-scoped advisory lock, so concurrent runners (several replicas
/// starting at once) apply each migration exactly once. Migrations are append-only: a recorded migration whose
/// file has changed stops the run with an error naming the file.
///
/// A migration file runs as one script inside that transaction, so it must not contain its own
/// BEGIN/COMMIT or statements that cannot run in a transaction block (e.g. `CREATE INDEX CONCURRENTLY`).
///
/// Except a file whose first line is ``noTransactionMarker``: it holds one statement that cannot run in a
/// transaction block (`DROP INDEX CONCURRENTLY`, which leaves a live table writable), run on its own under a
/// session advisory lock and recorded after it succeeded. A process dying in between leaves it done but unrecorded,
/// so such a statement must be safe to run again (`if exists`, `if not exists`).
package struct MigrationRunner: Sendable {
    private let client: PostgresClient
    private let directory: URL
    private let logger: Logger

    /// Arbitrary but fixed key for `pg_advisory_xact_lock`, shared by every runner of this schema history.
    private static let lockKey: Int64 = 0x6332_645f_6d69_6772  // "c2d_migr"

    package init(client: PostgresClient, directory: URL, logger: Logger) {
        self.client = client
        self.directory = directory
        self.logger = logger
    }

    /// A migration file found in the directory.
    struct Migration: Sendable, Equatable {
        var version: String
        var name: String
        var file: URL
    }

    /// Applies every migration not yet recorded and returns the versions applied now (empty if up to date).
    package func apply() async throws -> [String] {
        let migrations = try Self.discover(in: directory)
        try await client.withTransaction { transaction in
            _ = try await transaction.query("SELECT pg_advisory_xact_lock($1)", [.int(Self.lockKey)])
            try await transaction.executeScript(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version text PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
        }
        let applied = try await recordedChecksums()
        for migration in migrations {
            if let checksum = applied[migration.version] {
                try await verify(migration, recorded: checksum)
            }
        }
        let known = Set(migrations.map(\.version))
        for version in applied.keys.sorted() where !known.contains(version) {
            logger.warning("migration \(version) is recorded but its file is missing", metadata: [:])
        }

        var appliedNow: [String] = []
        for migration in migrations where applied[migration.version] == nil {
            if try await apply(migration) {
                appliedNow.append(migration.version)
            }
        }
        return appliedNow
    }

    /// The first line of a migration that runs outside a transaction block.
    package static let noTransactionMarker = "-- c2d:no-transaction"

    /// Runs one migration and records it, unless another runner did so while we waited for the lock.
    private func apply(_ migration: Migration) async throws -> Bool {
        let sql = try Self.read(migration)
        if sql.hasPrefix(Self.noTransactionMarker) {
            return try await applyOutsideTransaction(migration, sql: sql)
        }
        return try await client.withTransaction { transaction in
            _ = try await transaction.query("SELECT pg_advisory_xact_lock($1)", [.int(Self.lockKey)])
            let checksum = try await Self.checksum(of: sql, in: transaction)
            let rows = try await transaction.query(
                "SELECT checksum FROM schema_migrations WHERE version = $1",
                [.text(migration.version)]
            )
            if let row = rows.first {
                try Self.compare(migration, recorded: try row.string("checksum"), current: checksum)
                return false
            }
            let started = ContinuousClock.now
            try await transaction.executeScript(sql)
            _ = try await transaction.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                [.text(migration.version), .text(migration.name), .text(checksum)]
            )
            logger.info(
                "applied migration",
                metadata: [
                    "migration.version": "\(migration.version)",
                    "migration.name": "\(migration.name)",
                    "migration.duration": "\(ContinuousClock.now - started)",
                ]
            )
            return true
        }
    }

    /// Runs a ``noTransactionMarker`` migration: the statement commits on its own, then the bookkeeping row.
    private func applyOutsideTransaction(_ migration: Migration, sql: String) async throws -> Bool {
        try await client.withSession { session in
            // A session lock excludes the transaction-scoped one of other runners (same key), and is released here
            // or when the connection closes.
            _ = try await session.query("SELECT pg_advisory_lock($1)", [.int(Self.lockKey)])
            do {
                let applied = try await applyLocked(migration, sql: sql, in: session)
                _ = try await session.query("SELECT pg_advisory_unlock($1)", [.int(Self.lockKey)])
                return applied
            } catch {
                _ = try? await session.query("SELECT pg_advisory_unlock($1)", [.int(Self.lockKey)])
                throw error
            }
        }
    }

    private func applyLocked(_ migration: Migration, sql: String, in session: PostgresTransaction) async throws -> Bool
    {
        let checksum = try await Self.checksum(of: sql, in: session)
        let rows = try await session.query(
            "SELECT checksum FROM schema_migrations WHERE version = $1", [.text(migration.version)])
        if let row = rows.first {
            try Self.compare(migration, recorded: try row.string("checksum"), current: checksum)
            return false
        }
        let started = ContinuousClock.now
        try await session.executeScript(sql)
        _ = try await session.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            [.text(migration.version), .text(migration.name), .text(checksum)])
        logger.info(
            "applied migration outside a transaction",
            metadata: [
                "migration.version": "\(migration.version)",
                "migration.name": "\(migration.name)",
                "migration.duration": "\(ContinuousClock.now - started)",
            ])
        return true
    }

    private func recordedChecksums() async throws -> [String: String] {
        let rows = try await client.query("SELECT version, checksum FROM schema_migrations")
        var checksums: [String: String] = [:]
        for row in rows {
            checksums[try row.string("version")] = try row.string("checksum")
        }
        return checksums
    }

    private func verify(_ migration: Migration, recorded: String) async throws {
        let sql = try Self.read(migration)
        let rows = try await client.query(
            "SELECT encode(sha256($1), 'hex') AS checksum",
            [.bytea(Array(sql.utf8))]
        )
        guard let current = try rows.first?.string("checksum") else {
            throw PostgresError.decoding("no checksum returned")
        }
        try Self.compare(migration, recorded: recorded, current: current)
    }

    private static func checksum(of sql: String, in transaction: PostgresTransaction) async throws -> String {
        let rows = try await transaction.query(
            "SELECT encode(sha256($1), 'hex') AS checksum",
            [.bytea(Array(sql.utf8))]
        )
        guard let checksum = try rows.first?.string("checksum") else {
            throw PostgresError.decoding("no checksum returned")
        }
        return checksum
    }

    private static func compare(_ migration: Migration, recorded: String, current: String) throws {
        guard recorded == current else {
            throw MigrationError(
                message: "migration \(migration.file.lastPathComponent) was changed after it was applied "
                    + "(recorded checksum \(recorded.prefix(12))…, file now \(current.prefix(12))…); "
                    + "migrations are append-only: add a new migration instead"
            )
        }
    }

    private static func read(_ migration: Migration) throws -> String {
        do {
            return try String(contentsOf: migration.file, encoding: .utf8)
        } catch {
            throw MigrationError(message: "cannot read migration \(migration.file.lastPathComponent): \(error)")
        }
    }

    /// The `NNNN_name.sql` files in `directory`, sorted by their numeric version. Other files are ignored; two
    /// files with the same version are an error.
    static func discover(in directory: URL) throws -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw MigrationError(message: "cannot list migrations in \(directory.path): \(error)")
        }
        var migrations: [Migration] = []
        for fileName in names where fileName.hasSuffix(".sql") {
            let stem = fileName.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_") else { continue }
            let version = String(stem[..<underscore])
            let name = String(stem[stem.index(after: underscore)...])
            guard version.isASCIIDigits, !name.isEmpty else { continue }
            let file = directory.appendingPathComponent(fileName)
            migrations.append(Migration(version: version, name: name, file: file))
        }
        migrations.sort { (Int($0.version) ?? 0, $0.version) < (Int($1.version) ?? 0, $1.version) }
        for (previous, next) in zip(migrations, migrations.dropFirst())
        where Int(previous.version) == Int(next.version) {
            throw MigrationError(
                message: "migrations \(previous.file.lastPathComponent) and \(next.file.lastPathComponent) "
                    + "have the same version"
            )
        }
        return migrations
    }
}

/// A migration could not be applied for a reason other than a database error.
package struct MigrationError: Error, CustomStringConvertible, Sendable {
    package var message: String
    package var description: String { "MigrationError: \(message)" }
}
