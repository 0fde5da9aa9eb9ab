import Foundation
import Logging
import Persistence
import Scheduler
import Synchronization
import TestSupport
import Testing

/// Leadership against a real Postgres; each test in its own schema, each instance with its own client (a process).
@Suite("Scheduler leadership", .serialized)
struct SchedulerLeadershipTests {
    /// A running instance and the task that runs it.
    struct Instance {
        var leadership: SchedulerLeadership
        var task: Task<Void, any Error>

        init(_ name: String, client: PostgresClient, lease: Duration, interval: Duration? = nil) {
            let configuration = SchedulerLeadership.Configuration(
                leaseDuration: lease, renewInterval: interval, pollInterval: interval, holderID: name)
            let leadership = SchedulerLeadership(
                configuration: configuration, client: client, logger: TestDatabase.logger)
            self.leadership = leadership
            self.task = Task { try await leadership.run() }
        }

        func stop(release: Bool = true) async {
            leadership.stop(release: release)
            _ = await task.result
        }

        var epoch: Int64? { leadership.role.epoch }
    }

    static func leaseRow(_ client: PostgresClient) async throws -> (holder: String?, epoch: Int) {
        let row = try await client.query("select holder, epoch from scheduler_lease where name = 'scheduler'")[0]
        return (try row.optionalString("holder"), try row.int("epoch"))
    }

    @Test func exactlyOneOfTwoLeads() async throws {
        try await TestDatabase.withMigratedSchema { makeClient in
            let a = Instance("a", client: makeClient(), lease: .seconds(2))
            let b = Instance("b", client: makeClient(), lease: .seconds(2))
            #expect(await eventually(within: .seconds(10)) { a.epoch != nil || b.epoch != nil })
            // Several renewals and polls later, still exactly one, and it is the row's holder at its epoch.
            for _ in 0..<20 {
                #expect((a.epoch == nil) != (b.epoch == nil))
                try await Task.sleep(for: .milliseconds(100))
            }
            let (leader, epoch) = a.epoch.map { ("a", $0) } ?? ("b", b.epoch ?? -1)
            let row = try await Self.leaseRow(makeClient())
            #expect(row.holder == leader)
            #expect(Int64(row.epoch) == epoch)
            await a.stop()
            await b.stop()
        }
    }

    @Test func standbyTakesOverWithinTwoLeasePeriodsWhenTheLeaderStopsRenewing() async throws {
        try await TestDatabase.withMigratedSchema { makeClient in
            let lease = Duration.seconds(2)
            let a = Instance("a", client: makeClient(), lease: lease)
            #expect(await eventually(within: .seconds(10)) { a.epoch != nil })
            let first = try #require(a.epoch)
            let b = Instance("b", client: makeClient(), lease: lease)
            // The leader dies without releasing: its lease simply stops being renewed.
            await a.stop(release: false)
            #expect(try await Self.leaseRow(makeClient()).holder == "a")
            #expect(await eventually(within: lease * 2) { b.epoch != nil })
            #expect((b.epoch ?? 0) > first)
            #expect(try await Self.leaseRow(makeClient()).holder == "b")
            await b.stop()
        }
    }

    @Test func gracefulReleaseHandsOverAtOnce() async throws {
        try await TestDatabase.withMigratedSchema { makeClient in
            // A lease far longer than the wait below: only the release can explain the takeover.
            let lease = Duration.seconds(60)
            let a = Instance("a", client: makeClient(), lease: lease, interval: .milliseconds(200))
            #expect(await eventually(within: .seconds(10)) { a.epoch != nil })
            let first = try #require(a.epoch)
            let b = Instance("b", client: makeClient(), lease: lease, interval: .milliseconds(200))
            try await Task.sleep(for: .milliseconds(500))
            #expect(b.epoch == nil)
            await a.stop()
            #expect(a.leadership.role == .standby)
            #expect(await eventually(within: .seconds(10)) { b.epoch != nil })
            #expect(b.epoch == first + 1)
            await b.stop()
        }
    }

    @Test func deposedLeadersFencedWriteIsRejectedAndNothingLands() async throws {
        try await TestDatabase.withMigratedSchema { makeClient in
            let probe = makeClient()
            try await probe.executeScript("create table fence_probe (writer text not null)")
            let lease = Duration.seconds(2)
            let a = Instance("a", client: makeClient(), lease: lease)
            #expect(await eventually(within: .seconds(10)) { a.epoch != nil })
            let epochA = try #require(a.epoch)
            try await a.leadership.withFencedTransaction(epoch: epochA) { tx in
                try await tx.execute("insert into fence_probe values ('a while leading')")
            }
            // A is paused (stops renewing) and B takes over; A's object still believes its epoch.
            await a.stop(release: false)
            let b = Instance("b", client: makeClient(), lease: lease)
            #expect(await eventually(within: lease * 2) { b.epoch != nil })
            let epochB = try #require(b.epoch)

            let error = await #expect(throws: LeadershipError.self) {
                try await a.leadership.withFencedTransaction(epoch: epochA) { tx in
                    try await tx.execute("insert into fence_probe values ('a after takeover')")
                }
            }
            #expect(error?.code == .fenced)
            try await b.leadership.withFencedTransaction(epoch: epochB) { tx in
                try await tx.execute("insert into fence_probe values ('b')")
            }
            let writers = try await probe.query("select writer from fence_probe order by writer").map {
                try $0.string("writer")
            }
            #expect(writers == ["a while leading", "b"])
            await b.stop()
        }
    }

    @Test func takeoverWaitsForTheOldLeadersFencedTransaction() async throws {
        try await TestDatabase.withMigratedSchema { makeClient in
            let probe = makeClient()
            try await probe.executeScript("create table fence_probe (writer text not null)")
            let lease = Duration.seconds(3)
            let a = Instance("a", client: makeClient(), lease: lease, interval: .milliseconds(200))
            #expect(await eventually(within: .seconds(10)) { a.epoch != nil })
            let epochA = try #require(a.epoch)
            await a.stop(release: false)
            let standbyName = "standby-" + UUID().uuidString.prefix(8)
            let b = Instance("b", client: makeClient(standbyName), lease: lease, interval: .milliseconds(200))
            // A's transaction passed the fence; while it is open the lease expires and B's takeover must wait on
            // the row lock rather than overtake the write.
            try await a.leadership.withFencedTransaction(epoch: epochA) { tx in
                try await tx.execute("insert into fence_probe values ('a')")
                let blocked = try await eventually(within: .seconds(10)) {
                    try await probe.query(
                        """
                        select count(*) as n from pg_stat_activity
                        where application_name = $1 and wait_event_type = 'Lock' and query like '%scheduler_lease%'
                        """,
                        [.text(standbyName)]
                    )[0].int("n") > 0
                }
                #expect(blocked)
                #expect(b.epoch == nil)
            }
            #expect(await eventually(within: .seconds(10)) { b.epoch != nil })
            #expect(try await probe.query("select count(*) as n from fence_probe")[0].int("n") == 1)
            await b.stop()
        }
    }

    @Test func leaderWorkIsCancelledWhenTheLeaseIsLost() async throws {
        try await TestDatabase.withMigratedSchema { makeClient in
            let a = Instance("a", client: makeClient(), lease: .seconds(2), interval: .milliseconds(200))
            let started = Locked<[Int64]>([])
            let cancelled = Locked(0)
            let worker = Task {
                await a.leadership.whileLeader { epoch in
                    started.withLock { $0.append(epoch) }
                    do {
                        try await Task.sleep(for: .seconds(3600))
                    } catch {
                        cancelled.withLock { $0 += 1 }
                        throw error
                    }
                }
            }
            #expect(await eventually(within: .seconds(10)) { started.withLock { $0.count } == 1 })
            // Someone else takes the row (an operator, or a standby after a partition): the renewal finds it gone.
            try await makeClient().execute(
                "update scheduler_lease set holder = 'intruder', epoch = epoch + 1, lease_until = now() + interval '3 s'"
            )
            #expect(await eventually(within: .seconds(5)) { cancelled.withLock { $0 } == 1 })
            #expect(a.leadership.role == .standby)
            // Once the intruder's lease lapses, A leads again with a newer epoch and its work restarts.
            #expect(await eventually(within: .seconds(10)) { started.withLock { $0.count } == 2 })
            let epochs = started.withLock { $0 }
            #expect(epochs[1] > epochs[0] + 1)
            await a.stop()
            await worker.value
        }
    }
}

/// A value shared with `@Sendable` closures.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func withLock<T: Sendable>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

/// The lease bookkeeping without a database.
@Suite("Leadership state machine")
struct LeadershipStateMachineTests {
    let start = ContinuousClock.now

    @Test func acquiresRenewsAndStepsDownBeforeTheLeaseCanExpire() {
        var machine = LeadershipStateMachine(leaseDuration: .seconds(10), safetyMargin: .seconds(1))
        #expect(machine.nextStep(now: start).0 == .acquire)
        #expect(machine.acquired(epoch: nil, sentAt: start) == .none)
        #expect(machine.acquired(epoch: 4, sentAt: start) == .announce(.leader(epoch: 4), reason: "lease acquired"))
        #expect(machine.nextStep(now: start + .seconds(3)).0 == .renew(epoch: 4, budget: .seconds(6)))
        // A failed renewal is tolerated while the last good one still covers us.
        #expect(machine.renewalFailed(now: start + .seconds(8)) == .none)
        #expect(machine.role == .leader(epoch: 4))
        #expect(machine.renewed(sentAt: start + .seconds(8)) == .none)
        #expect(machine.renewalFailed(now: start + .seconds(16.9)) == .none)
        #expect(
            machine.renewalFailed(now: start + .seconds(17))
                == .announce(.standby, reason: "lease could not be renewed before it expired"))
        #expect(machine.nextStep(now: start + .seconds(17)).0 == .acquire)
    }

    @Test func stepsDownWhenTheRowIsLostOrOnResign() {
        var machine = LeadershipStateMachine(leaseDuration: .seconds(10), safetyMargin: .seconds(1))
        _ = machine.acquired(epoch: 1, sentAt: start)
        #expect(machine.lost() == .announce(.standby, reason: "lease lost"))
        #expect(machine.lost() == .none)
        _ = machine.acquired(epoch: 2, sentAt: start)
        #expect(machine.resign() == .announce(.standby, reason: "resigned"))
        // The step-down is noticed by nextStep too, even with no renewal answer at all.
        _ = machine.acquired(epoch: 3, sentAt: start)
        let (step, action) = machine.nextStep(now: start + .seconds(9))
        #expect(step == .acquire)
        #expect(action == .announce(.standby, reason: "lease could not be renewed before it expired"))
    }
}
