import Domain
import Foundation
import Logging
import Synchronization

/// An attempt of a job: the key of everything c2d creates for it.
package struct AttemptKey: Hashable, Sendable, CustomStringConvertible {
    package var jobID: JobID
    package var attempt: Int

    package init(jobID: JobID, attempt: Int) {
        self.jobID = jobID
        self.attempt = attempt
    }

    package var description: String { "\(jobID)/\(attempt)" }
}

/// What the cluster shows of one attempt, kept by the ``AttemptInformer``.
package struct ObservedAttempt: Sendable, Hashable {
    package var key: AttemptKey
    package var observation: AttemptObservation
    /// The root Job's creation time (else the first pod's): orphans younger than a grace period are left alone.
    package var createdAt: Date?
    /// When the informer first saw every object of the attempt gone.
    package var goneSince: Date?
    /// The io pod's name without the attempt's name it starts with (the Job controller appends `-` and five
    /// characters), or the whole name if it does not: a short string is stored inline, with no allocation per
    /// attempt.
    private var ioPodNameTail: String?
    private var ioPodNameIsWhole = false

    package init(
        key: AttemptKey, observation: AttemptObservation = AttemptObservation(), createdAt: Date? = nil,
        ioPodName: String? = nil, goneSince: Date? = nil
    ) {
        self.key = key
        self.observation = observation
        self.createdAt = createdAt
        self.goneSince = goneSince
        self.ioPodName = ioPodName
    }

    /// The io pod's name (the Job controller picks it), for reading its containers' logs.
    package var ioPodName: String? {
        get {
            guard let tail = ioPodNameTail else { return nil }
            return ioPodNameIsWhole ? tail : ClusterNaming.attemptName(jobID: key.jobID, attempt: key.attempt) + tail
        }
        set {
            let prefix = ClusterNaming.attemptName(jobID: key.jobID, attempt: key.attempt)
            if let name = newValue, name.hasPrefix(prefix) {
                ioPodNameTail = String(name.dropFirst(prefix.count))
                ioPodNameIsWhole = false
            } else {
                ioPodNameTail = newValue
                ioPodNameIsWhole = true
            }
        }
    }

    /// Some object of the attempt exists and is not being deleted.
    package var isLive: Bool {
        let o = observation
        return (o.root == .present) || (o.ioPod.presence == .present && !o.ioPod.deleting)
            || (o.algorithmPod.presence == .present && !o.algorithmPod.deleting)
    }
}

/// Attempts by key, as the ``AttemptInformer`` holds them. Handed out without copying (a dictionary is copy-on-write),
/// so a reconcile pass over 100,000 attempts neither copies them into a list nor indexes them again.
package struct ObservedAttempts: Sendable, Hashable, Sequence, ExpressibleByArrayLiteral {
    package private(set) var byKey: [AttemptKey: ObservedAttempt]
    /// The attempts with a live object (``ObservedAttempt/isLive``), kept apart: a pass asks it of every launched
    /// job, and a small set answers from the cache where reading each attempt's whole record would not.
    package private(set) var live: Set<AttemptKey>

    package init(byKey: [AttemptKey: ObservedAttempt] = [:], live: Set<AttemptKey>) {
        self.byKey = byKey
        self.live = live
    }

    /// From a list; a later attempt with the same key replaces an earlier one.
    package init(_ list: some Sequence<ObservedAttempt>) {
        var byKey: [AttemptKey: ObservedAttempt] = [:]
        for attempt in list { byKey[attempt.key] = attempt }
        self.byKey = byKey
        self.live = Set(byKey.values.lazy.filter(\.isLive).map(\.key))
    }

    package init(arrayLiteral elements: ObservedAttempt...) {
        self.init(elements)
    }

    package subscript(key: AttemptKey) -> ObservedAttempt? { byKey[key] }

    /// Whether some object of the attempt exists and is not being deleted.
    package func isLive(_ key: AttemptKey) -> Bool { live.contains(key) }

    package var count: Int { byKey.count }

    package func makeIterator() -> Dictionary<AttemptKey, ObservedAttempt>.Values.Iterator {
        byKey.values.makeIterator()
    }
}

/// Where a reading of the ``AttemptInformer`` stands among its changes (see ``AttemptInformer/recordChanges(limit:)``).
package struct AttemptChangePosition: Sendable, Hashable {
    /// Lists finished so far: a relist starts a new count, and positions across it are not compared.
    package var listings: UInt64
    package var sequence: UInt64
}

/// The one reading of the cluster that the worker's monitor and the scheduler's reconciler share: one ``Informer``
/// for c2d's Jobs and one for its Pods (label `app.kubernetes.io/managed-by=c2d`), folded per attempt into an
/// ``ObservedAttempt`` — a compact projection (a few hundred bytes per attempt), never whole objects. The outcome is
/// then read from it by `Domain.AttemptOutcome`, the same function for both.
///
/// Objects a relist no longer shows were deleted while nobody watched: they are marked gone. Attempts whose objects
/// are all gone are kept as tombstones (their last states decide their outcome) until ``prune(goneBefore:)``.
package final class AttemptInformer: Sendable {
    package struct Configuration: Sendable {
        package var namespace: String
        /// Items per list page. Default 500.
        package var pageSize: Int
        /// Server-side watch timeout. Default 300 s.
        package var watchTimeoutSeconds: Int

        package init(namespace: String, pageSize: Int = 500, watchTimeoutSeconds: Int = 300) {
            self.namespace = namespace
            self.pageSize = max(1, pageSize)
            self.watchTimeoutSeconds = watchTimeoutSeconds
        }
    }

    package struct Statistics: Sendable, Hashable {
        package var jobs: Informer<Job, JobProjection>.Statistics
        package var pods: Informer<Pod, PodProjection>.Statistics
        package var attempts: Int
    }

    private enum Kind: Int, CaseIterable {
        case root = 0
        case ioPod = 1
        case algorithmPod = 2
    }

    /// The list generation in which each kind of an attempt's objects was last listed or watched.
    private struct Seen {
        var root: UInt32 = 0
        var ioPod: UInt32 = 0
        var algorithmPod: UInt32 = 0
    }

    /// One attempt while an event is folded into it.
    private struct Entry {
        var observed: ObservedAttempt
        var seen = Seen()
    }

    private struct State {
        /// What is known of each attempt; ``snapshot()`` hands it out whole, so it is kept apart from `seen`.
        var observed: [AttemptKey: ObservedAttempt] = [:]
        var live: Set<AttemptKey> = []
        var seen: [AttemptKey: Seen] = [:]
        var listing: (jobs: UInt32, pods: UInt32) = (0, 0)
        var listed: (jobs: Bool, pods: Bool) = (false, false)
        var syncWaiters: [CheckedContinuation<Void, Never>] = []
        var listener: (@Sendable ([AttemptKey]) -> Void)?
        /// The changed attempts in order, numbered from `journalStart`, while someone reads them (0: not recorded).
        var journalLimit = 0
        var journal: [AttemptKey] = []
        var journalStart: UInt64 = 0
        var listings: UInt64 = 0

        var position: AttemptChangePosition {
            AttemptChangePosition(listings: listings, sequence: journalStart + UInt64(journal.count))
        }

        mutating func noteChange(_ key: AttemptKey) {
            guard journalLimit > 0 else { return }
            if journal.count >= journalLimit {
                // Too many changes unread: whoever reads them next is told they are lost.
                journalStart += UInt64(journal.count)
                journal.removeAll(keepingCapacity: true)
            }
            journal.append(key)
        }

        func entry(_ key: AttemptKey) -> Entry {
            Entry(observed: observed[key] ?? ObservedAttempt(key: key), seen: seen[key] ?? Seen())
        }

        mutating func store(_ entry: Entry) {
            let key = entry.observed.key
            observed[key] = entry.observed
            seen[key] = entry.seen
            if entry.observed.isLive { live.insert(key) } else { live.remove(key) }
            noteChange(key)
        }

        mutating func remove(_ key: AttemptKey) {
            observed[key] = nil
            seen[key] = nil
            live.remove(key)
            noteChange(key)
        }
    }

    package let configuration: Configuration
    private let state = Mutex(State())
    private let jobs: Informer<Job, JobProjection>
    private let pods: Informer<Pod, PodProjection>

    package init(client: KubernetesClient, configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        let box = WeakBox()
        let common = { (selector: String) in
            Informer<Job, JobProjection>.Configuration(
                namespace: configuration.namespace, labelSelector: selector, pageSize: configuration.pageSize,
                watchTimeoutSeconds: configuration.watchTimeoutSeconds)
        }
        jobs = Informer(client: client, configuration: common(ClusterNaming.selector), logger: logger) { events in
            box.value?.apply(jobs: events)
        }
        pods = Informer(
            client: client,
            configuration: .init(
                namespace: configuration.namespace, labelSelector: ClusterNaming.selector,
                pageSize: configuration.pageSize, watchTimeoutSeconds: configuration.watchTimeoutSeconds),
            logger: logger
        ) { events in
            box.value?.apply(pods: events)
        }
        box.value = self
    }

    /// Follows the cluster until cancelled.
    package func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.jobs.run() }
            group.addTask { await self.pods.run() }
        }
        let waiters = state.withLock { state in
            defer { state.syncWaiters = [] }
            return state.syncWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Called after every change with the attempts it touched, synchronously on the informer's task: keep it short.
    package func setListener(_ listener: @escaping @Sendable ([AttemptKey]) -> Void) {
        state.withLock { $0.listener = listener }
    }

    /// Both kinds were listed once: what the informer holds is the cluster, not a part of it.
    package var isSynced: Bool { state.withLock { $0.listed.jobs && $0.listed.pods } }

    /// Synced, and both kinds' last request succeeded: the view is current (not frozen by an outage).
    package var isHealthy: Bool { isSynced && jobs.statistics.connected && pods.statistics.connected }

    /// Returns once both kinds were listed (or the informer stopped).
    package func waitUntilSynced() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Bool in
                if state.listed.jobs && state.listed.pods { return true }
                state.syncWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    package func observed(_ key: AttemptKey) -> ObservedAttempt? {
        state.withLock { $0.observed[key] }
    }

    /// Every attempt known now, tombstones included, without copying them (the next change after a snapshot copies
    /// the table once, on the informer's task).
    package func snapshot() -> ObservedAttempts {
        state.withLock { ObservedAttempts(byKey: $0.observed, live: $0.live) }
    }

    /// As ``snapshot()``, with where it stands among the changes (when they are recorded).
    package func snapshotWithPosition() -> (ObservedAttempts, AttemptChangePosition) {
        state.withLock { (ObservedAttempts(byKey: $0.observed, live: $0.live), $0.position) }
    }

    /// From now on, keeps the keys of changed (and forgotten) attempts, up to `limit` unread, for
    /// ``changes(after:through:)``: a reader that plans over what changed only. Off by default (the worker reads
    /// none).
    package func recordChanges(limit: Int) {
        state.withLock { $0.journalLimit = max(1, limit) }
    }

    /// The attempts changed after `start` up to `end` (positions of two readings), and forgets those up to `start`
    /// (there is one reader). Nil when they cannot be told: not recorded, lost to the limit, or a relist between.
    package func changes(after start: AttemptChangePosition, through end: AttemptChangePosition) -> Set<AttemptKey>? {
        state.withLock { state in
            guard state.journalLimit > 0, start.listings == state.listings, end.listings == state.listings,
                start.sequence >= state.journalStart, start.sequence <= end.sequence,
                end.sequence <= state.journalStart + UInt64(state.journal.count)
            else { return nil }
            let dropped = Int(start.sequence - state.journalStart)
            state.journal.removeFirst(dropped)
            state.journalStart = start.sequence
            return Set(state.journal[0..<Int(end.sequence - start.sequence)])
        }
    }

    /// The attempts with these keys (absent ones left out).
    package func observed(_ keys: some Sequence<AttemptKey>) -> [ObservedAttempt] {
        state.withLock { state in keys.compactMap { state.observed[$0] } }
    }

    package var count: Int { state.withLock { $0.observed.count } }

    /// Drops tombstones of attempts whose objects were all gone before `date`.
    package func prune(goneBefore date: Date) {
        state.withLock { state in
            var expired: [AttemptKey] = []
            for (key, observed) in state.observed where observed.goneSince.map({ $0 < date }) ?? false {
                expired.append(key)
            }
            for key in expired { state.remove(key) }
        }
    }

    /// Drops what is known of an attempt whose end has been recorded and whose objects are gone.
    package func forget(_ key: AttemptKey) {
        state.withLock { state in
            if state.observed[key]?.goneSince != nil { state.remove(key) }
        }
    }

    package var statistics: Statistics {
        Statistics(jobs: jobs.statistics, pods: pods.statistics, attempts: count)
    }

    // MARK: Folding events

    func apply(jobs events: [InformerEvent<JobProjection>]) {
        fold(events, from: .jobs) { state, job, deleted, generation, now in
            Self.update(&state, job: job, deleted: deleted, generation: generation, now: now)
        }
    }

    func apply(pods events: [InformerEvent<PodProjection>]) {
        fold(events, from: .pods) { state, pod, deleted, generation, now in
            Self.update(&state, pod: pod, deleted: deleted, generation: generation, now: now)
        }
    }

    /// Which informer events come from: its list generations and first listing are counted apart.
    private enum Source {
        case jobs, pods

        /// The kinds of object whose entries a finished listing of this source sweeps.
        var swept: [Kind] { self == .jobs ? [.root] : [.ioPod, .algorithmPod] }
    }

    /// Folds one informer's events into the attempts under the lock, then wakes who waited for the first full
    /// listing of both kinds and tells the listener which attempts changed.
    private func fold<Projection>(
        _ events: [InformerEvent<Projection>], from source: Source,
        update: (inout State, Projection, _ deleted: Bool, _ generation: UInt32, Date) -> AttemptKey?
    ) {
        let now = Date()
        let (changed, listener, waiters) = state.withLock {
            state -> ([AttemptKey], (@Sendable ([AttemptKey]) -> Void)?, [CheckedContinuation<Void, Never>]) in
            var changed: [AttemptKey] = []
            var waiters: [CheckedContinuation<Void, Never>] = []
            for event in events {
                let generation = source == .jobs ? state.listing.jobs : state.listing.pods
                switch event {
                case .listStarted:
                    if source == .jobs { state.listing.jobs &+= 1 } else { state.listing.pods &+= 1 }
                case .listFinished:
                    for kind in source.swept {
                        changed += Self.sweep(&state, kind: kind, generation: generation, now: now)
                    }
                    // A reader of changes looks at everything again after a relist (a 410 Gone, a lost watch).
                    state.listings &+= 1
                    let synced = state.listed.jobs && state.listed.pods
                    if source == .jobs { state.listed.jobs = true } else { state.listed.pods = true }
                    if !synced, state.listed.jobs && state.listed.pods {
                        waiters = state.syncWaiters
                        state.syncWaiters = []
                    }
                case .listed(let object), .added(let object), .modified(let object):
                    if let key = update(&state, object, false, generation, now) { changed.append(key) }
                case .deleted(let object):
                    if let key = update(&state, object, true, generation, now) { changed.append(key) }
                }
            }
            return (changed, state.listener, waiters)
        }
        for waiter in waiters { waiter.resume() }
        if !changed.isEmpty { listener?(changed) }
    }

    private static func key(_ metadata: ProjectedMeta) -> AttemptKey? {
        guard let id = metadata.labels?.jobID.flatMap(JobID.init),
            let attempt = metadata.labels?.attempt.flatMap({ Int($0) })
        else { return nil }
        return AttemptKey(jobID: id, attempt: attempt)
    }

    private static func update(
        _ state: inout State, job: JobProjection, deleted: Bool, generation: UInt32, now: Date
    ) -> AttemptKey? {
        // Only the attempt's root Job (named after the attempt) counts; anything else labelled c2d is not ours.
        guard let key = key(job.metadata),
            job.metadata.name == ClusterNaming.attemptName(jobID: key.jobID, attempt: key.attempt)
        else { return nil }
        var entry = state.entry(key)
        entry.observed.observation.root = deleted ? .gone : .present
        if let failed = job.status?.conditions?.first(where: { $0.type == "Failed" && $0.status == "True" }) {
            entry.observed.observation.rootFailure = failed.reason ?? "Failed"
        }
        if let created = job.metadata.creationTimestamp { entry.observed.createdAt = created }
        entry.seen.root = generation
        settle(&entry, now: now)
        state.store(entry)
        return key
    }

    private static func update(
        _ state: inout State, pod: PodProjection, deleted: Bool, generation: UInt32, now: Date
    ) -> AttemptKey? {
        guard let key = key(pod.metadata),
            let role = pod.metadata.labels?.role.flatMap(ClusterNaming.Role.init(rawValue:))
        else { return nil }
        var entry = state.entry(key)
        var observation = entry.observed.observation
        var podState = PodObservation(
            presence: deleted ? .gone : .present, phase: pod.status?.phase, reason: pod.status?.reason,
            deleting: pod.metadata.deletionTimestamp != nil)
        switch role {
        case .io:
            // A replacement pod of the Job (there is none with backoffLimit 0) would be a different name: keep the
            // first one's story unless it is this one.
            if let known = entry.observed.ioPodName, known != pod.metadata.name, observation.ioPod.presence == .present
            {
                return nil
            }
            if podState.reason == nil, observation.ioPod.reason != nil { podState.reason = observation.ioPod.reason }
            observation.ioPod = podState
            entry.observed.ioPodName = pod.metadata.name
            if observation.stepImage == nil { observation.stepImage = pod.spec?.containers?.first?.image }
            observation.configure = Self.container(
                pod.status?.initContainerStatuses, ClusterNaming.Container.configure, previous: observation.configure,
                now: now)
            observation.publish = Self.container(
                pod.status?.containerStatuses, ClusterNaming.Container.publish, previous: observation.publish, now: now)
            entry.seen.ioPod = generation
        case .algorithm:
            if podState.reason == nil, observation.algorithmPod.reason != nil {
                podState.reason = observation.algorithmPod.reason
            }
            observation.algorithmPod = podState
            if observation.algorithmImage == nil,
                let container = pod.spec?.containers?.first(where: { $0.name == ClusterNaming.Container.algorithm })
            {
                observation.algorithmImage = container.image
                observation.algorithmMemoryLimit = container.resources?.limits?.memory
            }
            observation.algorithm = Self.container(
                pod.status?.containerStatuses, ClusterNaming.Container.algorithm, previous: observation.algorithm,
                now: now)
            entry.seen.algorithmPod = generation
        }
        if entry.observed.createdAt == nil { entry.observed.createdAt = pod.metadata.creationTimestamp }
        entry.observed.observation = observation
        settle(&entry, now: now)
        state.store(entry)
        return key
    }

    /// Marks objects of `kind` that the list just finished did not show as gone.
    private static func sweep(_ state: inout State, kind: Kind, generation: UInt32, now: Date) -> [AttemptKey] {
        var changed: [AttemptKey] = []
        for (key, observed) in state.observed {
            var entry = Entry(observed: observed, seen: state.seen[key] ?? Seen())
            let observation = observed.observation
            switch kind {
            case .root:
                guard observation.root == .present, entry.seen.root != generation else { continue }
                entry.observed.observation.root = .gone
            case .ioPod:
                guard observation.ioPod.presence == .present, entry.seen.ioPod != generation else { continue }
                entry.observed.observation.ioPod.presence = .gone
            case .algorithmPod:
                guard observation.algorithmPod.presence == .present, entry.seen.algorithmPod != generation else {
                    continue
                }
                entry.observed.observation.algorithmPod.presence = .gone
            }
            settle(&entry, now: now)
            state.store(entry)
            changed.append(key)
        }
        return changed
    }

    private static func settle(_ entry: inout Entry, now: Date) {
        if entry.observed.observation.isGone {
            if entry.observed.goneSince == nil { entry.observed.goneSince = now }
        } else {
            entry.observed.goneSince = nil
        }
    }

    /// One container's state from its status, keeping when a start problem was first seen.
    static func container(
        _ statuses: [ContainerStatusProjection]?, _ name: String, previous: ContainerObservation, now: Date
    ) -> ContainerObservation {
        guard let status = statuses?.first(where: { $0.name == name }), let current = status.state else {
            return previous
        }
        if let end = current.terminated {
            return .terminated(
                ContainerTermination(
                    exitCode: end.exitCode, reason: end.reason, message: end.message, startedAt: end.startedAt,
                    finishedAt: end.finishedAt))
        }
        if let running = current.running { return .running(startedAt: running.startedAt) }
        if let waiting = current.waiting {
            let reason = waiting.reason ?? "Waiting"
            let problem =
                AttemptOutcome.imagePullReasons.contains(reason) || AttemptOutcome.createReasons.contains(reason)
            var since: Date?
            if problem {
                if case .waiting(let before, _, let previousSince) = previous,
                    AttemptOutcome.imagePullReasons.contains(before) || AttemptOutcome.createReasons.contains(before)
                {
                    since = previousSince ?? now
                } else {
                    since = now
                }
            }
            return .waiting(reason: reason, message: waiting.message, since: since)
        }
        return previous
    }
}

/// Breaks the cycle between the informer and the closures its two informers call.
private final class WeakBox: @unchecked Sendable {
    // Written once in init before any informer runs; read-only afterwards.
    weak var value: AttemptInformer?
}

// MARK: Projections: only the fields the outcome needs are decoded.

/// The metadata an attempt's objects are read by.
package struct ProjectedMeta: Decodable, Sendable {
    package var name: String?
    package var resourceVersion: String?
    package var creationTimestamp: Date?
    package var deletionTimestamp: Date?
    package var labels: AttemptLabels?
}

/// The three labels that place an object in an attempt, decoded without building a dictionary of all labels.
package struct AttemptLabels: Decodable, Sendable {
    package var jobID: String?
    package var attempt: String?
    package var role: String?

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        jobID = try container.decodeIfPresent(String.self, forKey: Key(stringValue: ClusterNaming.jobIDLabel))
        attempt = try container.decodeIfPresent(String.self, forKey: Key(stringValue: ClusterNaming.attemptLabel))
        role = try container.decodeIfPresent(String.self, forKey: Key(stringValue: ClusterNaming.roleLabel))
    }
}

/// batch/v1 Job: its terminal conditions.
package struct JobProjection: InformerProjection {
    package struct Status: Decodable, Sendable {
        package struct Condition: Decodable, Sendable {
            package var type: String
            package var status: String
            package var reason: String?
        }
        package var conditions: [Condition]?
    }

    package var metadata: ProjectedMeta
    package var status: Status?
    package var resourceVersion: String? { metadata.resourceVersion }
}

/// core/v1 Pod: phase, reason, and its containers' states; from the spec, images and the memory limit.
package struct PodProjection: InformerProjection {
    package struct Spec: Decodable, Sendable {
        package struct Container: Decodable, Sendable {
            package struct Resources: Decodable, Sendable {
                package struct Limits: Decodable, Sendable { package var memory: String? }
                package var limits: Limits?
            }
            package var name: String
            package var image: String?
            package var resources: Resources?
        }
        package var containers: [Container]?
    }

    package struct Status: Decodable, Sendable {
        package var phase: String?
        package var reason: String?
        package var initContainerStatuses: [ContainerStatusProjection]?
        package var containerStatuses: [ContainerStatusProjection]?
    }

    package var metadata: ProjectedMeta
    package var spec: Spec?
    package var status: Status?
    package var resourceVersion: String? { metadata.resourceVersion }
}

package struct ContainerStatusProjection: Decodable, Sendable {
    package struct State: Decodable, Sendable {
        package struct Waiting: Decodable, Sendable {
            package var reason: String?
            package var message: String?
        }
        package struct Running: Decodable, Sendable {
            package var startedAt: Date?
        }
        package struct Terminated: Decodable, Sendable {
            package var exitCode: Int
            package var reason: String?
            package var message: String?
            package var startedAt: Date?
            package var finishedAt: Date?
        }
        package var waiting: Waiting?
        package var running: Running?
        package var terminated: Terminated?
    }

    package var name: String
    package var state: State?
}
