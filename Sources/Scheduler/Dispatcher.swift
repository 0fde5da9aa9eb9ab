import AMQP
import Domain
import Foundation
import Logging
import NIOConcurrencyHelpers
import Persistence
import ServiceLifecycle

/// Admits waiting jobs and publishes every job message (docs/architecture.md, "Admission and dispatch").
///
/// Postgres holds each environment's backlog; RabbitMQ carries only admitted jobs. A pass over an environment (one
/// transaction under a lock all dispatchers share, ``PostgresJobStore/dispatch(environment:limit:redispatchAfter:workerStaleAfter:maximumGroups:)``)
/// republishes admitted jobs whose message is owed (handed over or back, or lost), then admits as many waiting jobs
/// as the environment's `maxJobs` and the live workers' free slots allow, in priority and fair-share order; after the
/// commit their messages are published with confirms. Passes run when Postgres notifies `c2d_dispatch` (a job
/// arrived, a slot freed, a job needs a message again: triggers of migration 0010), so a freed slot is refilled
/// within milliseconds, and on a periodic sweep over every environment, the safety net for lost notifications and
/// lost messages.
///
/// Every scheduler process runs one; passes are serialized by the lock, so two dispatchers never admit into the same
/// slots, and a pass that finds the lock taken is retried moments later.
package final class Dispatcher: Service, Sendable {
    package struct Configuration: Sendable {
        /// Most jobs one pass admits in one environment (more room means another pass at once). Default 256.
        package var batchSize: Int
        /// Time between sweeps over every environment with unfinished jobs. Default 2 s.
        package var sweepInterval: Duration
        /// An admitted job no worker took this long after its message was published gets it again. Default 30 s.
        package var redispatchAfter: Duration
        /// A worker that has not refreshed its registration this long counts as gone. Default 30 s.
        package var workerStaleAfter: Duration
        /// How long a publish may wait for the broker's confirms. Default 5 s.
        package var publishTimeout: Duration

        package init(
            batchSize: Int = 256, sweepInterval: Duration = .seconds(2), redispatchAfter: Duration = .seconds(30),
            workerStaleAfter: Duration = .seconds(30), publishTimeout: Duration = .seconds(5)
        ) {
            self.batchSize = max(1, batchSize)
            self.sweepInterval = sweepInterval
            self.redispatchAfter = redispatchAfter
            self.workerStaleAfter = workerStaleAfter
            self.publishTimeout = publishTimeout
        }
    }

    /// The Postgres channel the triggers notify, with the environment as payload.
    package static let channel = "c2d_dispatch"

    let configuration: Configuration
    let store: PostgresJobStore
    let amqp: AMQPClient
    let logger: Logger
    private let pending = NIOLockedValueBox(PendingEnvironments())
    /// Environments whose messages no queue takes, and environments whose passes fail otherwise.
    private let noRoute = NIOLockedValueBox(EnvironmentBackoff(maximum: .seconds(60)))
    private let failing = NIOLockedValueBox(EnvironmentBackoff(maximum: .seconds(5)))
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation

    package init(configuration: Configuration, store: PostgresJobStore, amqp: AMQPClient, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.amqp = amqp
        self.logger = logger
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.listen() }
                group.addTask { await self.sweep() }
                group.addTask { await self.dispatchLoop() }
            }
        }
    }

    /// Marks environments for a pass as Postgres notifies them; everything after (re)connecting, since
    /// notifications sent meanwhile are lost.
    func listen() async {
        while !Task.isCancelled {
            do {
                try await store.withNotifications(channels: [Self.channel]) { events in
                    for try await event in events {
                        switch event {
                        case .listening: mark(all: true)
                        case .notification(let notification): mark(notification.payload)
                        }
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("listening for dispatch notifications failed", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    func sweep() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.sweepInterval)
            mark(all: true)
        }
    }

    func mark(_ environment: String) {
        pending.withLockedValue { _ = $0.environments.insert(environment) }
        wake.yield()
    }

    func mark(all: Bool) {
        pending.withLockedValue { $0.all = true }
        wake.yield()
    }

    /// Marks an environment for another pass in the next round.
    func retry(_ environment: String) {
        pending.withLockedValue { _ = $0.retries.insert(environment) }
        wake.yield()
    }

    func dispatchLoop() async {
        for await _ in wakeups {
            while !Task.isCancelled {
                let due = pending.withLockedValue { $0.take() }
                if due.isEmpty { break }
                await dispatch(due)
            }
        }
    }

    /// One pass over each environment due; environments whose pass could not finish are marked again. Nothing is
    /// admitted while RabbitMQ is unreachable: the jobs wait in Postgres, where their order can still change.
    func dispatch(_ due: PendingEnvironments) async {
        guard amqp.isConnected else {
            pending.withLockedValue { $0.merge(due) }
            try? await Task.sleep(for: .milliseconds(500))
            wake.yield()
            return
        }
        var environments = due.environments
        if due.all {
            do {
                environments.formUnion(try await store.environmentsWithUnfinishedJobs())
            } catch {
                logger.warning("dispatch sweep could not list environments", metadata: ["error": "\(error)"])
                mark(all: true)
                try? await Task.sleep(for: .seconds(1))
                return
            }
        }
        for environment in environments.sorted() {
            guard !Task.isCancelled else { return }
            // What notifications named since goes first: a sweep over many environments must not hold back one
            // whose slot just freed (it would wait for the whole sweep, seconds with hundreds of environments).
            if due.all { await dispatchNamed() }
            await pass(environment)
        }
    }

    /// Passes over the environments that notifications named since the last look, taken from what is pending.
    private func dispatchNamed() async {
        let named = pending.withLockedValue { pending -> Set<String> in
            defer { pending.environments = [] }
            return pending.environments
        }
        for environment in named.sorted() where !Task.isCancelled { await pass(environment) }
    }

    /// One environment's pass; one another dispatcher kept busy, or that may have more to admit, is marked again.
    /// An environment whose messages no queue takes, or whose pass failed, waits out its back-off (a sweep tries it
    /// again after) without holding back the others.
    private func pass(_ environment: String) async {
        let now = ContinuousClock.now
        guard !noRoute.withLockedValue({ $0.isWaiting(environment, now: now) }),
            !failing.withLockedValue({ $0.isWaiting(environment, now: now) })
        else { return }
        do {
            let pass = try await runOnce(environment: environment)
            failing.withLockedValue { $0.succeeded(environment) }
            let published = pass.admitted.count + pass.redispatched.count
            if !pass.busy && published > 0 { noRoute.withLockedValue { $0.succeeded(environment) } }
            if pass.busy {
                // Another dispatcher is in a pass; ours may have seen a change it did not, so try again.
                retry(environment)
                try? await Task.sleep(for: .milliseconds(10))
            } else if published >= configuration.batchSize {
                retry(environment)
            }
        } catch let error as AMQPError where error.code == .unroutable {
            // Nothing declared the environment's queue (no running worker serves it, or it was deleted): its jobs
            // stay owed, and it is tried again after the back-off rather than at every pass.
            let backoff = noRoute.withLockedValue { $0.failed(environment, now: .now) }
            logger.warning(
                "no queue takes this environment's job messages; trying again later",
                metadata: ["environment": "\(environment)", "retry_in": "\(backoff)", "error": "\(error)"])
        } catch {
            let backoff = failing.withLockedValue { $0.failed(environment, now: .now) }
            logger.warning(
                "dispatch pass failed; trying again later",
                metadata: ["environment": "\(environment)", "retry_in": "\(backoff)", "error": "\(error)"])
        }
    }

    /// One dispatch pass over `environment`, then the messages of what it admitted and redispatched. If publishing
    /// fails, the pass's jobs are marked as owed again (a later pass publishes them) and the error is thrown.
    @discardableResult
    package func runOnce(environment: String) async throws -> PostgresJobStore.DispatchPass {
        let pass = try await store.dispatch(
            environment: environment, limit: configuration.batchSize,
            redispatchAfter: configuration.redispatchAfter, workerStaleAfter: configuration.workerStaleAfter)
        let jobs = pass.redispatched + pass.admitted
        guard !jobs.isEmpty else { return pass }
        let messages = jobs.map { job in
            let message = JobMessage(jobId: job.id, environment: job.environment)
            return (
                message: AMQPMessage(
                    body: message.body, headers: message.headers(trace: job.trace), contentType: "application/json",
                    messageID: job.id.description),
                routingKey: job.environment
            )
        }
        do {
            let amqp = self.amqp
            try await withDeadline(configuration.publishTimeout, operation: "dispatch publish") {
                try await amqp.publish(messages, exchange: JobQueueNames.jobsExchange)
            }
            logger.debug(
                "dispatched",
                metadata: [
                    "environment": "\(environment)", "admitted": "\(pass.admitted.count)",
                    "redispatched": "\(pass.redispatched.count)",
                ])
        } catch {
            logger.warning(
                "publishing job messages failed; they are published again later",
                metadata: ["environment": "\(environment)", "jobs": "\(jobs.count)", "error": "\(error)"])
            // Some may have gone out: a job published twice is claimed once, the other message is dropped. If
            // even this write fails, the redispatch threshold catches them.
            try await store.clearDispatch(jobs.map(\.id))
            throw error
        }
        return pass
    }
}

/// When each environment whose dispatch passes keep failing (its job messages had no queue to go to, or the pass
/// itself failed) may be tried again: from 1 s, doubling to `maximum`, reset by a pass that goes through.
struct EnvironmentBackoff: Sendable {
    var maximum: Duration
    private var waiting: [String: (until: ContinuousClock.Instant, backoff: Duration)] = [:]

    init(maximum: Duration) {
        self.maximum = maximum
    }

    func isWaiting(_ environment: String, now: ContinuousClock.Instant) -> Bool {
        waiting[environment].map { now < $0.until } ?? false
    }

    /// Records a failure; returns how long the environment is left alone.
    mutating func failed(_ environment: String, now: ContinuousClock.Instant) -> Duration {
        let backoff = waiting[environment].map { min($0.backoff * 2, maximum) } ?? .seconds(1)
        waiting[environment] = (now + backoff, backoff)
        return backoff
    }

    mutating func succeeded(_ environment: String) {
        waiting[environment] = nil
    }
}

/// Environments marked for a dispatch pass.
struct PendingEnvironments: Sendable {
    /// Named by notifications: these go before the rest of a sweep.
    var environments: Set<String> = []
    /// Passes to run again (another dispatcher was busy, or more is left to admit): in the next round, not before
    /// every step of a sweep, so one that keeps coming back cannot stall the sweep.
    var retries: Set<String> = []
    /// Every environment with unfinished jobs.
    var all = false

    var isEmpty: Bool { environments.isEmpty && retries.isEmpty && !all }

    mutating func merge(_ other: PendingEnvironments) {
        environments.formUnion(other.environments)
        retries.formUnion(other.retries)
        all = all || other.all
    }

    /// Everything pending, retries folded into the environments to pass over.
    mutating func take() -> PendingEnvironments {
        defer { self = PendingEnvironments() }
        var due = self
        due.environments.formUnion(due.retries)
        due.retries = []
        return due
    }
}
