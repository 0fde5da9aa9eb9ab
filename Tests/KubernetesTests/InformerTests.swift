import Domain
import Foundation
import Logging
import Testing

@testable import Kubernetes

/// The attempt informer's folding of Job and Pod events into one observation per attempt, fed directly.
@Suite struct AttemptInformerTests {
    static let id = JobID(uuid: UUID(uuidString: "00000000-0000-0000-0000-000000000042")!)

    static func decode<T: Decodable>(_ json: String, as type: T.Type) throws -> T {
        try KubernetesJSON.makeDecoder().decode(T.self, from: Data(json.utf8))
    }

    static func labels(role: String?) -> String {
        var text = #""app.kubernetes.io/managed-by": "c2d", "c2d.io/job-id": "\#(id)", "c2d.io/attempt": "1""#
        if let role { text += #", "c2d.io/role": "\#(role)""# }
        return text
    }

    static func root() throws -> JobProjection {
        try decode(
            #"{"metadata": {"name": "c2d-\#(id)-1", "resourceVersion": "5", "labels": {\#(labels(role: nil))}}}"#,
            as: JobProjection.self)
    }

    static func algorithmPod(_ state: String, deleting: Bool = false) throws -> PodProjection {
        try decode(
            """
            {"metadata": {"name": "c2d-\(id)-1-algorithm", "resourceVersion": "6", "labels": {\(labels(role: "algorithm"))}
              \(deleting ? #", "deletionTimestamp": "2026-01-01T00:00:00Z""# : "")},
             "spec": {"containers": [{"name": "algorithm", "image": "python:3.12", "resources": {"limits": {"memory": "512Mi"}}}]},
             "status": {"phase": "Running", "containerStatuses": [{"name": "algorithm", "state": \(state)}]}}
            """, as: PodProjection.self)
    }

    static func ioPod(configure: String, publish: String) throws -> PodProjection {
        try decode(
            """
            {"metadata": {"name": "c2d-\(id)-1-abcde", "resourceVersion": "7", "labels": {\(labels(role: "io"))}},
             "spec": {"containers": [{"name": "publish", "image": "c2d:1"}]},
             "status": {"phase": "Running",
               "initContainerStatuses": [{"name": "configure", "state": \(configure)}],
               "containerStatuses": [{"name": "publish", "state": \(publish)}]}}
            """, as: PodProjection.self)
    }

    /// An informer that is fed by the test (it never runs, so its client never connects).
    func withInformer(_ body: (AttemptInformer) async throws -> Void) async throws {
        let client = try KubernetesClient(configuration: KubernetesConfiguration(server: "http://127.0.0.1:1"))
        let informer = AttemptInformer(client: client, configuration: .init(namespace: "x"), logger: Logger(label: "t"))
        do {
            try await body(informer)
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    @Test func foldsTheAttemptsObjectsIntoOneObservation() async throws {
        try await withInformer { informer in try await folds(informer) }
    }

    func folds(_ informer: AttemptInformer) async throws {
        let changed = Locked<[AttemptKey]>([])
        informer.setListener { keys in changed.withLock { $0 += keys } }
        let key = AttemptKey(jobID: Self.id, attempt: 1)
        informer.apply(jobs: [.listStarted, .listed(try Self.root()), .listFinished])
        #expect(!informer.isSynced)
        informer.apply(pods: [
            .listStarted,
            .listed(try Self.ioPod(configure: #"{"terminated": {"exitCode": 0}}"#, publish: #"{"running": {}}"#)),
            .listed(try Self.algorithmPod(#"{"running": {"startedAt": "2026-01-01T00:00:00Z"}}"#)), .listFinished,
        ])
        #expect(informer.isSynced)
        let observed = try #require(informer.observed(key))
        #expect(observed.observation.root == .present)
        #expect(observed.observation.configure.termination?.exitCode == 0)
        #expect(observed.observation.algorithm.hasStarted)
        #expect(observed.observation.algorithmImage == "python:3.12")
        #expect(observed.observation.algorithmMemoryLimit == "512Mi")
        #expect(observed.observation.stepImage == "c2d:1")
        #expect(observed.ioPodName == "c2d-\(Self.id)-1-abcde")
        #expect(changed.withLock { Set($0) } == [key])

        // A start problem keeps the time it was first seen.
        informer.apply(pods: [.modified(try Self.algorithmPod(#"{"waiting": {"reason": "ErrImagePull"}}"#))])
        guard case .waiting(_, _, let since?) = informer.observed(key)?.observation.algorithm else {
            Issue.record("no start problem time")
            return
        }
        informer.apply(pods: [.modified(try Self.algorithmPod(#"{"waiting": {"reason": "ImagePullBackOff"}}"#))])
        guard case .waiting("ImagePullBackOff", _, let still?) = informer.observed(key)?.observation.algorithm else {
            Issue.record("lost the start problem")
            return
        }
        #expect(still == since)
    }

    @Test func aRelistMarksWhatItNoLongerShowsAsGoneAndKeepsTheTombstone() async throws {
        try await withInformer { informer in try await relists(informer) }
    }

    func relists(_ informer: AttemptInformer) async throws {
        let key = AttemptKey(jobID: Self.id, attempt: 1)
        informer.apply(jobs: [.listStarted, .listed(try Self.root()), .listFinished])
        informer.apply(pods: [
            .listStarted, .listed(try Self.algorithmPod(#"{"terminated": {"exitCode": 3}}"#)), .listFinished,
        ])
        #expect(informer.observed(key)?.isLive == true)
        #expect(informer.snapshot().isLive(key), "the snapshot's live set follows each change")
        // After a 410 the informer lists again; the objects were deleted meanwhile.
        informer.apply(jobs: [.listStarted, .listFinished])
        informer.apply(pods: [.listStarted, .listFinished])
        let gone = try #require(informer.observed(key))
        #expect(gone.observation.root == .gone)
        #expect(gone.observation.algorithmPod.presence == .gone)
        #expect(gone.observation.algorithm.termination?.exitCode == 3, "the last state is kept")
        #expect(gone.goneSince != nil)
        #expect(!gone.isLive)
        #expect(!informer.snapshot().isLive(key) && informer.snapshot()[key] == gone)
        informer.prune(goneBefore: Date().addingTimeInterval(60))
        #expect(informer.observed(key) == nil)
        #expect(informer.snapshot().count == 0 && informer.snapshot().live.isEmpty)
    }

    @Test func tellsWhichAttemptsChangedBetweenTwoReadings() async throws {
        try await withInformer { informer in try await journals(informer) }
    }

    func journals(_ informer: AttemptInformer) async throws {
        let key = AttemptKey(jobID: Self.id, attempt: 1)
        informer.recordChanges(limit: 4)
        informer.apply(jobs: [.listStarted, .listed(try Self.root()), .listFinished])
        informer.apply(pods: [.listStarted, .listFinished])
        let (_, first) = informer.snapshotWithPosition()
        let (_, same) = informer.snapshotWithPosition()
        #expect(informer.changes(after: first, through: same) == [])
        informer.apply(pods: [.added(try Self.algorithmPod(#"{"running": {}}"#))])
        let (seen, second) = informer.snapshotWithPosition()
        #expect(seen.isLive(key))
        #expect(informer.changes(after: first, through: second) == [key])
        // Forgetting counts as a change: the reader's view of the attempt changed.
        informer.apply(jobs: [.deleted(try Self.root())])
        informer.apply(pods: [.deleted(try Self.algorithmPod(#"{"running": {}}"#))])
        informer.prune(goneBefore: Date().addingTimeInterval(60))
        let (_, third) = informer.snapshotWithPosition()
        #expect(informer.changes(after: second, through: third) == [key])
        // Past the limit unread, or across a relist, the changes cannot be told.
        for _ in 0..<5 { informer.apply(jobs: [.modified(try Self.root())]) }
        let (_, fourth) = informer.snapshotWithPosition()
        #expect(informer.changes(after: third, through: fourth) == nil)
        informer.apply(jobs: [.listStarted, .listFinished])
        let (_, fifth) = informer.snapshotWithPosition()
        #expect(informer.changes(after: fourth, through: fifth) == nil)
    }
}

@Suite struct PriorityRateLimiterTests {
    @Test func finishingWorkGoesBeforeStartingWork() async throws {
        // One token a second after a burst of one: the first caller takes the burst, the rest queue.
        let limiter = PriorityRateLimiter(TokenBucket(queriesPerSecond: 20, burst: 1))
        try await limiter.acquire(.starting)
        let order = Locked<[RequestPriority]>([])
        await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    try await limiter.acquire(.starting)
                    order.withLock { $0.append(.starting) }
                }
            }
            try? await Task.sleep(for: .milliseconds(10))
            group.addTask {
                try await limiter.acquire(.finishing)
                order.withLock { $0.append(.finishing) }
            }
            try? await group.waitForAll()
        }
        #expect(order.withLock { $0.first } == .finishing, "\(order.withLock { $0 })")
    }
}

@Suite struct PriorityPermitsTests {
    @Test("at most the limit in flight; a released permit goes to finishing work before starting work")
    func finishingWorkGoesFirst() async throws {
        let permits = PriorityPermits(limit: 2)
        try await permits.acquire(.starting)
        try await permits.acquire(.starting)
        let order = Locked<[RequestPriority]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for priority in [RequestPriority.starting, .starting, .observing, .finishing] {
                group.addTask {
                    try await permits.acquire(priority)
                    order.withLock { $0.append(priority) }
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(order.withLock { $0.isEmpty }, "nobody goes past the limit")
            for expected in 1...4 {
                await permits.release()
                while order.withLock({ $0.count }) < expected { try await Task.sleep(for: .milliseconds(1)) }
            }
            try await group.waitForAll()
        }
        #expect(order.withLock { $0 } == [.finishing, .observing, .starting, .starting])
    }

    @Test("a cancelled waiter leaves the queue, and its permit is not lost")
    func cancelledWaiter() async throws {
        let permits = PriorityPermits(limit: 1)
        try await permits.acquire(.starting)
        let waiter = Task { try await permits.acquire(.starting) }
        try await Task.sleep(for: .milliseconds(10))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        await permits.release()
        try await permits.acquire(.finishing)
    }
}

/// A value behind a lock, for test bookkeeping across tasks.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
