import Foundation

/// The SQL of one named lease in `scheduler_lease` (migration 0002): who holds it, until when on the database
/// clock, and its fencing epoch. `SchedulerLeadership` decides when to call what; this only says how.
package struct PostgresLeaseStore: Sendable {
    let client: PostgresClient
    /// The row's name.
    package let name: String
    /// Who this process is: unique per process.
    package let holderID: String

    package init(client: PostgresClient, name: String, holderID: String) {
        self.client = client
        self.name = name
        self.holderID = holderID
    }

    /// Takes the lease if it is free, expired, released or our own, for `duration`; returns the new epoch, or nil
    /// when another holder's lease is live. The conditional lock-and-update is one statement, so two standbys
    /// cannot both win. Its `FOR UPDATE` waits for the old epoch's fenced transactions (they hold the row
    /// `FOR KEY SHARE`) and then re-checks the condition: a leader that renewed meanwhile keeps the lease.
    package func acquire(duration: Duration) async throws -> Int64? {
        // The row exists from the first attempt on (epoch 0, no holder).
        try await client.execute(
            "insert into scheduler_lease (name) values ($1) on conflict (name) do nothing", [.text(name)])
        let rows = try await client.query(
            """
            with candidate as (
                select name from scheduler_lease
                where name = $1
                    and (holder is null or lease_until is null or lease_until < now() or holder = $2)
                for update
            )
            update scheduler_lease l
            set holder = $2, epoch = l.epoch + 1, lease_until = now() + make_interval(secs => $3)
            from candidate where l.name = candidate.name
            returning l.epoch
            """,
            [.text(name), .text(holderID), .double(duration.seconds)])
        return try rows.first.map { Int64(try $0.int("epoch")) }
    }

    /// Extends our lease by `duration` from now; false when the row no longer names us at this epoch.
    package func renew(epoch: Int64, duration: Duration) async throws -> Bool {
        let updated = try await client.execute(
            """
            update scheduler_lease set lease_until = now() + make_interval(secs => $4)
            where name = $1 and holder = $2 and epoch = $3
            """,
            [.text(name), .text(holderID), .int(epoch), .double(duration.seconds)])
        return updated == 1
    }

    /// Frees the lease (the epoch stays, so the next holder's is higher). Does not wait for fenced transactions:
    /// the next holder's takeover does.
    package func release(epoch: Int64) async throws {
        try await client.execute(
            """
            update scheduler_lease set holder = null, lease_until = null
            where name = $1 and holder = $2 and epoch = $3
            """,
            [.text(name), .text(holderID), .int(epoch)])
    }

    /// Runs `body` in a transaction that first checks, and locks until commit, that the row still names this holder
    /// at `epoch` and has not expired; throws `fenced()` otherwise, and nothing of `body` lands. A takeover locks
    /// the row `FOR UPDATE` before it bumps the epoch, so it waits for this transaction.
    ///
    /// The lock is `FOR KEY SHARE` rather than `FOR SHARE`: it still blocks the takeover's `FOR UPDATE`, but not
    /// the leader's own renewals (a plain UPDATE of non-key columns), which must never queue behind a long batch.
    package func withFencedTransaction<T: Sendable>(
        epoch: Int64, fenced: @Sendable () -> any Error, _ body: (PostgresTransaction) async throws -> T
    ) async throws -> T {
        try await client.withTransaction { tx in
            let rows = try await tx.query(
                """
                select epoch from scheduler_lease
                where name = $1 and holder = $2 and epoch = $3 and lease_until > now()
                for key share
                """,
                [.text(name), .text(holderID), .int(epoch)])
            guard !rows.isEmpty else { throw fenced() }
            return try await body(tx)
        }
    }
}
