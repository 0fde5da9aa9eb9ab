import Domain
import Foundation
import Kubernetes
import Persistence
import Testing

@testable import Scheduler

private let start = Date(timeIntervalSince1970: 1_800_000_000)

private func jobID(_ n: Int) -> JobID {
    JobID(uuid: UUID(uuidString: "00000000-0000-0000-0000-\(String(format: "%012d", n))")!)
}

/// SplitMix64: the same sequence for the same seed, so a failing seed can be replayed.
private struct SeededRandom: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
    mutating func seconds(_ range: ClosedRange<Double>) -> Double { Double.random(in: range, using: &self).rounded() }
    mutating func pick<T>(_ choices: [T]) -> T { choices[Int.random(in: 0..<choices.count, using: &self)] }
}

/// A small world of jobs and attempts that changes at random: every step, some rows and attempts change and the
/// clock moves on (or not); the full plan and the focused plan of each step's snapshot are compared.
private struct World {
    var random: SeededRandom
    var now = start
    let jobs = 40
    /// The truth of each job's row; `cached` ones are in the reconciler's table, the others read for the pass alone.
    var rows: [Int: ReconcileJob] = [:]
    var uncached: Set<Int> = []
    var attempts: [AttemptKey: ObservedAttempt] = [:]
    var environments = [
        ReconcileEnvironment(
            id: "a", maxJobs: 3, maxQueueWait: .seconds(300), storageExpiry: .seconds(600), lastSeen: start),
        ReconcileEnvironment(id: "b", maxJobs: 0, lastSeen: start),
    ]
    var unavailable = false
    /// The local executor: no cluster at all, so the plans see rows and the clock only.
    var noCluster = false

    init(seed: UInt64) {
        random = SeededRandom(state: seed)
        for n in 0..<jobs where random.chance(0.7) { rows[n] = row(n) }
        for _ in 0..<30 { changeAttempt() }
    }

    func ago(_ seconds: Double) -> Date { now.addingTimeInterval(-seconds) }

    mutating func row(_ n: Int) -> ReconcileJob {
        let environment = random.pick(["a", "b"])
        let created = ago(random.seconds(0...400))
        let attempt = Int.random(in: 1...3, using: &random)
        switch Int.random(in: 0..<8, using: &random) {
        case 0:
            return ReconcileJob(
                id: jobID(n), environment: environment, createdAt: created,
                maxQueueWait: random.chance(0.5) ? .seconds(random.seconds(30...300)) : nil,
                admitted: random.chance(0.5))
        case 1:
            // Handed back, or waiting for a lease to end.
            return ReconcileJob(
                id: jobID(n), environment: environment, status: random.pick([JobStatus.queued, .runningAlgorithm]),
                attempt: attempt, leaseUntil: random.chance(0.5) ? ago(random.seconds(-60...60)) : nil,
                createdAt: created, startedAt: ago(random.seconds(0...300)), admitted: true)
        case 2, 3, 4:
            return ReconcileJob(
                id: jobID(n), environment: environment,
                status: random.pick([JobStatus.queued, .provisioningSuccess, .runningAlgorithm]), attempt: attempt,
                workerID: random.chance(0.8) ? "w1" : nil, leaseUntil: ago(random.seconds(-60...40)),
                createdAt: created, startedAt: ago(random.seconds(0...300)),
                stopRequest: random.chance(0.15) ? 1 : 0,
                maxDuration: random.chance(0.6) ? .seconds(random.seconds(30...300)) : nil,
                lapses: Int.random(in: 0...4, using: &random))
        case 5:
            return ReconcileJob(
                id: jobID(n), environment: environment, status: .finished, attempt: attempt, createdAt: created,
                startedAt: created, finishedAt: ago(random.seconds(0...900)), removed: random.chance(0.3))
        default:
            return ReconcileJob(
                id: jobID(n), environment: environment, status: .runningAlgorithm, attempt: attempt, workerID: "w1",
                leaseUntil: now.addingTimeInterval(random.seconds(1...600)), createdAt: created,
                startedAt: ago(random.seconds(0...300)),
                maxDuration: random.chance(0.5) ? .seconds(random.seconds(60...600)) : nil)
        }
    }

    mutating func container() -> ContainerObservation {
        let started = ago(random.seconds(0...400))
        switch Int.random(in: 0..<7, using: &random) {
        case 0: return .pending
        case 1: return .running(startedAt: started)
        case 2: return .waiting(reason: random.pick(["ErrImagePull", "PodInitializing"]), message: nil, since: started)
        case 3:
            return .terminated(
                ContainerTermination(
                    exitCode: 0, reason: "Completed", startedAt: started, finishedAt: started.addingTimeInterval(5)))
        case 4:
            return .terminated(
                ContainerTermination(
                    exitCode: 137, reason: random.pick(["Error", "OOMKilled"]), startedAt: started,
                    finishedAt: started.addingTimeInterval(random.seconds(1...300))))
        default: return .running(startedAt: started)
        }
    }

    mutating func pod() -> PodObservation {
        PodObservation(
            presence: random.pick([PodObservation.Presence.present, .present, .present, .gone, .notSeen]),
            phase: random.pick([String?.none, "Running", "Succeeded", "Failed"]),
            reason: random.chance(0.05) ? "DeadlineExceeded" : nil, deleting: random.chance(0.1))
    }

    mutating func changeAttempt() {
        let n = Int.random(in: 0..<jobs, using: &random)
        var attempt = Int.random(in: 0...3, using: &random)
        if let row = rows[n], random.chance(0.7) { attempt = row.attempt }
        let key = AttemptKey(jobID: jobID(n), attempt: attempt)
        if random.chance(0.15) {
            attempts[key] = nil
            return
        }
        let observation = AttemptObservation(
            root: random.pick([PodObservation.Presence.present, .present, .gone, .notSeen]), ioPod: pod(),
            algorithmPod: pod(),
            configure: random.chance(0.8) ? .terminated(ContainerTermination(exitCode: 0)) : container(),
            algorithm: container(), publish: container(), stepImage: "c2d")
        attempts[key] = ObservedAttempt(
            key: key, observation: observation, createdAt: random.chance(0.9) ? ago(random.seconds(0...200)) : nil)
    }

    /// The reconciler's table: unfinished, cached rows.
    var table: [JobID: ReconcileJob] {
        var table: [JobID: ReconcileJob] = [:]
        for (n, row) in rows where !row.isTerminal && !uncached.contains(n) { table[row.id] = row }
        return table
    }

    var snapshot: ReconcileSnapshot {
        var jobs = ReconcileJobs(unfinished: table)
        for (n, row) in rows where row.isTerminal || uncached.contains(n) { jobs.add(row) }
        return ReconcileSnapshot(
            now: now, jobs: jobs,
            cluster: noCluster
                ? .notConfigured
                : unavailable ? .unavailable(reason: "down") : .available(ObservedAttempts(attempts.values)),
            environments: environments)
    }

    /// One step of changes; returns what changed in the table and the cluster.
    mutating func step() -> ReconcileChanges {
        let before = table
        let attemptsBefore = attempts
        if !random.chance(0.25) {
            for n in 0..<jobs where random.chance(0.08) {
                rows[n] = random.chance(0.1) ? nil : row(n)
                if random.chance(0.05) { uncached.insert(n) } else { uncached.remove(n) }
            }
            for _ in 0..<Int.random(in: 0...5, using: &random) { changeAttempt() }
            if random.chance(0.03) {
                // The cluster shows nearly nothing: the fail-safe trips.
                for key in attempts.keys where !random.chance(0.05) { attempts[key] = nil }
            }
            if random.chance(0.03) { environments[0].maxQueueWait = .seconds(random.seconds(60...600)) }
            if random.chance(0.02) { environments[1].maxJobs += 1 }
        }
        unavailable = random.chance(0.03)
        now = now.addingTimeInterval(random.pick([0, 0.5, 1, 2, 5, 10, 30, 61, 130]))
        let after = table
        var changed = Set<JobID>()
        for id in Set(before.keys).union(after.keys) where before[id] != after[id] { changed.insert(id) }
        var keys = Set<AttemptKey>()
        for key in Set(attemptsBefore.keys).union(attempts.keys) where attemptsBefore[key] != attempts[key] {
            keys.insert(key)
        }
        return ReconcileChanges(jobs: changed, attempts: noCluster ? [] : keys)
    }
}

/// Actions as a multiset, so plans that list them in different orders compare equal.
private func ordered(_ actions: [ReconcileAction]) -> [ReconcileAction: Int] {
    actions.reduce(into: [:]) { $0[$1, default: 0] += 1 }
}

@Suite("Reconcile focus")
struct ReconcileFocusTests {
    /// Over random sequences of row changes, attempt changes and clock advances, the focused plan is the full plan
    /// at every step: the same actions, capacity report, fail-safe and state for the next pass.
    @Test(arguments: 0..<40)
    func focusedPlanEqualsFullPlan(seed: Int) {
        checkFocusedPlans(World(seed: UInt64(seed)), seed: seed)
    }

    /// The same with the local executor, which has no cluster: rows and the clock are all that change.
    @Test(arguments: 0..<40)
    func focusedPlanEqualsFullPlanWithoutACluster(seed: Int) {
        var world = World(seed: UInt64(500 + seed))
        world.noCluster = true
        checkFocusedPlans(world, seed: seed)
    }

    private func checkFocusedPlans(_ start: World, seed: Int) {
        var world = start
        var focus = ReconcileFocus()
        var state = ReconcilePlanner.State()
        var changes: ReconcileChanges?
        var focusedSteps = 0
        for step in 0..<60 {
            let snapshot = world.snapshot
            let full = ReconcilePlanner.plan(snapshot, state: state)
            let wasSure = focus.sure && (world.noCluster || !world.unavailable)
            let focused = ReconcilePlanner.plan(snapshot, state: state, focus: &focus, changes: changes)
            if changes != nil && wasSure && focused.failSafe == nil { focusedSteps += 1 }
            #expect(ordered(focused.actions) == ordered(full.actions), "seed \(seed) step \(step)")
            #expect(focused.capacity == full.capacity, "seed \(seed) step \(step)")
            #expect(focused.failSafe == full.failSafe, "seed \(seed) step \(step)")
            #expect(focused.nextState == full.nextState, "seed \(seed) step \(step)")
            state = full.nextState
            changes = world.step()
        }
        #expect(focusedSteps >= 20, "seed \(seed): only \(focusedSteps) steps were focused")
    }

    /// A plan given no changes equals the full plan too: what carries and what is due keep the right jobs in view.
    @Test(arguments: 0..<20)
    func unchangedWorldOnlyTheClockMoves(seed: Int) {
        var world = World(seed: UInt64(1000 + seed))
        var focus = ReconcileFocus()
        var state = ReconcilePlanner.State()
        _ = ReconcilePlanner.plan(world.snapshot, state: state, focus: &focus, changes: nil)
        for step in 0..<40 {
            world.now = world.now.addingTimeInterval(world.random.pick([1, 3, 9, 31, 60]))
            world.unavailable = false
            let snapshot = world.snapshot
            let full = ReconcilePlanner.plan(snapshot, state: state)
            let focused = ReconcilePlanner.plan(snapshot, state: state, focus: &focus, changes: ReconcileChanges())
            #expect(ordered(focused.actions) == ordered(full.actions), "seed \(seed) step \(step)")
            #expect(focused.capacity == full.capacity, "seed \(seed) step \(step)")
            state = full.nextState
        }
    }
}

// MARK: Due times

private let env = ReconcileEnvironment(id: "env", maxJobs: 0, maxQueueWait: .seconds(300), lastSeen: start)

private func after(_ seconds: Double) -> Date { start.addingTimeInterval(seconds) }

struct DueCase: Sendable, CustomTestStringConvertible {
    var name: String
    var job: ReconcileJob
    var attempts: [ObservedAttempt] = []
    /// Seconds from now to the job's next look; nil: none.
    var due: Double?

    var testDescription: String { name }
}

private func running(
    leaseEnds: Double, worker: String? = "w1", started: Double = 10, maxDuration: Duration? = nil
) -> ReconcileJob {
    ReconcileJob(
        id: jobID(1), environment: "env", status: .runningAlgorithm, attempt: 1, workerID: worker,
        leaseUntil: after(leaseEnds), createdAt: after(-started - 5), startedAt: after(-started),
        maxDuration: maxDuration)
}

private func algorithmRunning(since: Double) -> ObservedAttempt {
    ObservedAttempt(
        key: AttemptKey(jobID: jobID(1), attempt: 1),
        observation: AttemptObservation(
            root: .present, ioPod: PodObservation(presence: .present, phase: "Running"),
            algorithmPod: PodObservation(presence: .present, phase: "Running"),
            configure: .terminated(ContainerTermination(exitCode: 0)), algorithm: .running(startedAt: after(-since)),
            publish: .waiting(reason: "PodInitializing", message: nil, since: nil)),
        createdAt: after(-since - 5))
}

let dueCases: [DueCase] = [
    DueCase(name: "held, lease ends in 30 s: look when it ends", job: running(leaseEnds: 30), due: 30),
    DueCase(name: "held, lease ended 4 s ago: look when the 10 s grace ends", job: running(leaseEnds: -4), due: 6),
    DueCase(
        name: "held, time limit plus grace before the lease", job: running(leaseEnds: 3600, maxDuration: .seconds(100)),
        due: 120),
    DueCase(
        name: "waiting: the environment's queue wait",
        job: ReconcileJob(id: jobID(1), environment: "env", createdAt: after(-100)), due: 200),
    DueCase(
        name: "waiting: its own shorter queue wait",
        job: ReconcileJob(id: jobID(1), environment: "env", createdAt: after(-100), maxQueueWait: .seconds(150)),
        due: 50),
    DueCase(
        name: "waiting in an environment without a wait: nothing is due",
        job: ReconcileJob(id: jobID(1), environment: "none", createdAt: after(-100)), due: nil),
    DueCase(
        name: "unheld, its lease not over yet: look when it ends",
        job: running(leaseEnds: 20, worker: nil), attempts: [algorithmRunning(since: 5)], due: 20),
    DueCase(
        name: "unheld, algorithm running: look when it passes its limit (before the timeout's grace)",
        job: running(leaseEnds: -3600, worker: nil, started: 50, maxDuration: .seconds(100)),
        attempts: [algorithmRunning(since: 50)], due: 50),
]

@Suite("Reconcile focus: due times")
struct ReconcileFocusDueTests {
    @Test(arguments: dueCases)
    func dueTime(_ row: DueCase) {
        var focus = ReconcileFocus()
        let snapshot = ReconcileSnapshot(
            now: start, jobs: [row.job], cluster: .available(ObservedAttempts(row.attempts)), environments: [env])
        _ = ReconcilePlanner.plan(snapshot, focus: &focus, changes: nil)
        #expect(focus.sure)
        #expect(focus.memos[row.job.id]?.due == row.due.map(after))
    }

    /// Nothing changes; the focused plan hands the job over exactly when the lease grace ends, not before.
    @Test func aDueJobIsPlannedWhenItsTimeComes() {
        var focus = ReconcileFocus()
        let job = running(leaseEnds: 5)
        func plan(at seconds: Double, changes: ReconcileChanges?) -> ReconcilePlan {
            ReconcilePlanner.plan(
                ReconcileSnapshot(
                    now: after(seconds), jobs: [job], cluster: .available([algorithmRunning(since: 5)]),
                    environments: [env]),
                focus: &focus, changes: changes)
        }
        #expect(plan(at: 0, changes: nil).actions.isEmpty)
        #expect(focus.dueJobs.count == 1)
        #expect(plan(at: 14.9, changes: ReconcileChanges()).actions.isEmpty)
        #expect(
            plan(at: 15, changes: ReconcileChanges()).actions == [
                .handOver(jobID: job.id, environment: "env", attempt: 1, workerID: "w1")
            ])
        // Acted on: planned again next pass (an action that failed to apply is decided again).
        #expect(focus.carriedJobs == [job.id])
        #expect(plan(at: 16, changes: ReconcileChanges()).actions.count == 1)
    }

    /// A young object of no job is looked at again when its grace ends, and then deleted.
    @Test func aYoungOrphanIsDeletedWhenItsGraceEnds() {
        var focus = ReconcileFocus()
        let key = AttemptKey(jobID: jobID(9), attempt: 1)
        let objects = ObservedAttempts([
            ObservedAttempt(key: key, observation: AttemptObservation(root: .present), createdAt: after(-20))
        ])
        func plan(at seconds: Double, changes: ReconcileChanges?) -> ReconcilePlan {
            ReconcilePlanner.plan(
                ReconcileSnapshot(now: after(seconds), jobs: [], cluster: .available(objects), environments: [env]),
                focus: &focus, changes: changes)
        }
        #expect(plan(at: 0, changes: nil).actions.isEmpty)
        #expect(focus.objectsDue.peekDue(after(40)) == [key])
        #expect(plan(at: 39, changes: ReconcileChanges()).actions.isEmpty)
        #expect(plan(at: 40, changes: ReconcileChanges()).actions == [.deleteOrphan(key, reason: .unknownJob)])
    }

    @Test func heapGivesWhatIsDueInTimeOrder() {
        var heap = DueHeap<Int>()
        for (due, item) in [(30.0, 3), (10, 1), (20, 2), (10, 4), (50, 5)] { heap.push(after(due), item) }
        #expect(Set(heap.peekDue(after(20))) == [1, 2, 4])
        #expect(heap.count == 5)
        #expect(heap.popDue(after(9)) == [])
        #expect(Set(heap.popDue(after(20))) == [1, 2, 4])
        #expect(heap.popDue(after(100)) == [3, 5])
        #expect(heap.count == 0)
    }
}
