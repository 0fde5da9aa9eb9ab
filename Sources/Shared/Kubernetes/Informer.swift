import Logging
import Synchronization

/// A projection an ``Informer`` can follow: the few fields its consumer reads, plus the object's resourceVersion.
package protocol InformerProjection: Decodable, Sendable {
    var resourceVersion: String? { get }
}

/// What an ``Informer`` tells its consumer, in order.
package enum InformerEvent<Projection: Sendable>: Sendable {
    /// A (re)list begins: what follows as ``listed(_:)`` is the whole collection; anything the consumer holds that
    /// is not listed again before ``listFinished`` was deleted while nobody watched.
    case listStarted
    case listed(Projection)
    case listFinished
    case added(Projection)
    case modified(Projection)
    case deleted(Projection)
}

/// Keeps a consumer's view of one kind current, the way client-go's reflector does: list (page by page; a continue
/// token that expired restarts the list), then watch from the list's resourceVersion, reopen the watch from the last
/// version seen when the server ends it, and relist on 410 Gone. Only the projection is decoded, so memory follows
/// the fields the consumer keeps, not whole objects; pages are handed over as they arrive, so a relist of 100,000
/// objects never holds more than one page of them.
///
/// The consumer's `deliver` is called synchronously from the informer's task, one batch at a time and in order.
package final class Informer<R: KubernetesResource, Projection: InformerProjection>: Sendable {
    package struct Configuration: Sendable {
        package var namespace: String?
        package var labelSelector: String?
        /// Items per list page. Default 500.
        package var pageSize: Int = 500
        /// The server ends each watch after this long; it is then reopened from the last resourceVersion.
        /// Default 300 s.
        package var watchTimeoutSeconds: Int = 300

        package init(namespace: String?, labelSelector: String?, pageSize: Int = 500, watchTimeoutSeconds: Int = 300) {
            self.namespace = namespace
            self.labelSelector = labelSelector
            self.pageSize = max(1, pageSize)
            self.watchTimeoutSeconds = watchTimeoutSeconds
        }
    }

    /// Counters for tests, benchmarks and metrics.
    package struct Statistics: Sendable, Hashable {
        package var lists = 0
        package var listPages = 0
        package var watches = 0
        package var gone = 0
        package var events = 0
        /// The last list or watch request succeeded: what the consumer holds is current. False from the first
        /// failure until a request succeeds again (an outage: the consumer's view may be stale).
        package var connected = false
    }

    package let configuration: Configuration
    private let client: KubernetesClient
    private let logger: Logger
    private let deliver: @Sendable ([InformerEvent<Projection>]) -> Void
    private let counters = Mutex(Statistics())

    package init(
        client: KubernetesClient, configuration: Configuration, logger: Logger,
        deliver: @escaping @Sendable ([InformerEvent<Projection>]) -> Void
    ) {
        self.client = client
        self.configuration = configuration
        self.logger = logger
        self.deliver = deliver
    }

    package var statistics: Statistics { counters.withLock { $0 } }

    /// Lists and watches until cancelled.
    package func run() async {
        var resourceVersion: String?
        var delay = Duration.milliseconds(200)
        while !Task.isCancelled {
            do {
                if resourceVersion == nil { resourceVersion = try await list() }
                counters.withLock { $0.watches += 1 }
                let stream = try await client.watch(
                    R.self, as: Projection.self, namespace: configuration.namespace,
                    options: WatchOptions(
                        labelSelector: configuration.labelSelector, resourceVersion: resourceVersion,
                        timeoutSeconds: configuration.watchTimeoutSeconds))
                counters.withLock { $0.connected = true }
                for try await event in stream {
                    let delivered: InformerEvent<Projection>
                    switch event {
                    case .added(let object): delivered = .added(object)
                    case .modified(let object): delivered = .modified(object)
                    case .deleted(let object): delivered = .deleted(object)
                    case .bookmark(let version):
                        if !version.isEmpty { resourceVersion = version }
                        continue
                    }
                    if let version = event.object?.resourceVersion { resourceVersion = version }
                    counters.withLock { $0.events += 1 }
                    deliver([delivered])
                }
                delay = .milliseconds(200)
            } catch let error as KubernetesError where error.code == .gone {
                // The history we would resume from is gone: start over from a fresh list.
                counters.withLock {
                    $0.gone += 1
                    $0.connected = false
                }
                logger.info("watch expired; relisting", metadata: ["k8s.kind": "\(R.resource.kind)"])
                resourceVersion = nil
            } catch is CancellationError {
                return
            } catch {
                if Task.isCancelled { return }
                counters.withLock { $0.connected = false }
                logger.warning(
                    "watch failed; retrying", metadata: ["k8s.kind": "\(R.resource.kind)", "error": "\(error)"])
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(10))
            }
        }
    }

    /// One complete list, page by page; answers its resourceVersion. A continue token that expired mid-way (410)
    /// restarts the list: the pages already delivered are superseded by the new ``InformerEvent/listStarted``.
    private func list() async throws -> String? {
        while true {
            counters.withLock { $0.lists += 1 }
            deliver([.listStarted])
            var options = ListOptions(labelSelector: configuration.labelSelector, limit: configuration.pageSize)
            var resourceVersion: String?
            do {
                repeat {
                    let page = try await client.list(
                        R.self, as: Projection.self, namespace: configuration.namespace, options: options)
                    counters.withLock { $0.listPages += 1 }
                    if resourceVersion == nil { resourceVersion = page.metadata.resourceVersion }
                    deliver(page.items.map { .listed($0) })
                    options.continueToken = page.metadata.continue.flatMap { $0.isEmpty ? nil : $0 }
                } while options.continueToken != nil
            } catch let error as KubernetesError where error.code == .gone {
                counters.withLock { $0.gone += 1 }
                logger.info("list continuation expired; listing again", metadata: ["k8s.kind": "\(R.resource.kind)"])
                continue
            }
            deliver([.listFinished])
            counters.withLock { $0.connected = true }
            return resourceVersion
        }
    }
}
