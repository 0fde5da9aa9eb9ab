import Foundation

/// Where an object lives: its resource type's index and `namespace/name`.
struct ObjectRef: Hashable, Sendable {
    var resource: Int
    var key: String

    var type: ResourceType { ResourceType.all[resource] }
    var namespace: String { String(key[..<key.firstIndex(of: "/")!]) }
    var name: String { String(key[key.index(after: key.firstIndex(of: "/")!)...]) }
}

/// One stored object: its serialized JSON plus the fields lists, watches and the garbage collector look at.
struct StoredObject: Sendable {
    var bytes: [UInt8]
    var uid: String
    var resourceVersion: UInt64
    var fields: SelectableFields
    var owners: [String]
    var controller: String?
    var deleting: Bool

    func json() -> JSON {
        // Stored bytes were produced by the serializer, so they always parse.
        (try? JSON.parse(bytes)) ?? .null
    }
}

struct ResourceTable: Sendable {
    var objects: [String: StoredObject] = [:]
    /// Keys in order, for paginated lists; preloads append and sort once.
    var keys: [String] = []
    var sorted = true

    mutating func ensureSorted() {
        if !sorted {
            keys.sort()
            sorted = true
        }
    }

    func lowerBound(_ key: String) -> Int {
        var low = 0
        var high = keys.count
        while low < high {
            let middle = (low + high) / 2
            if keys[middle] < key { low = middle + 1 } else { high = middle }
        }
        return low
    }

    mutating func insertKey(_ key: String) {
        if !sorted {
            keys.append(key)
            return
        }
        keys.insert(key, at: lowerBound(key))
    }

    mutating func removeKey(_ key: String) {
        ensureSorted()
        let index = lowerBound(key)
        if index < keys.count, keys[index] == key { keys.remove(at: index) }
    }
}

enum EventType: String, Sendable {
    case added = "ADDED"
    case modified = "MODIFIED"
    case deleted = "DELETED"
}

struct HistoryEvent: Sendable {
    var resourceVersion: UInt64
    var resource: Int
    var type: EventType
    var bytes: [UInt8]
    /// The object as it was before this event (modified and deleted), so a continued list can show the collection
    /// as it was when the list began. Shares storage with the stored object it replaced.
    var previous: [UInt8]?
    var old: SelectableFields?
    var new: SelectableFields?
    var at: ContinuousClock.Instant
}

struct Watcher {
    var resource: ResourceType
    var selection: Selection
    var bookmarks: Bool
    var nextBookmark: ContinuousClock.Instant
    var deadline: ContinuousClock.Instant
    var continuation: AsyncStream<[UInt8]>.Continuation
}

enum Propagation: String, Sendable {
    case orphan = "Orphan"
    case background = "Background"
    case foreground = "Foreground"
}

struct DeleteOptions: Sendable {
    var propagation: Propagation?
    var gracePeriodSeconds: Int64?
    var preconditionUID: String?
    var preconditionResourceVersion: String?
    var dryRun = false

    init() {}

    init(body: JSON?, query: [String: String]) throws {
        if let policy = query["propagationPolicy"] ?? body?["propagationPolicy"]?.string {
            guard let value = Propagation(rawValue: policy) else {
                throw APIStatus.badRequest(
                    "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"\(policy)\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                )
            }
            propagation = value
        } else if let orphan = query["orphanDependents"].map({ $0 == "true" }) ?? body?["orphanDependents"]?.bool {
            propagation = orphan ? .orphan : .background
        }
        if let grace = query["gracePeriodSeconds"].flatMap({ Int64($0) }) ?? body?["gracePeriodSeconds"]?.int {
            gracePeriodSeconds = grace
        }
        preconditionUID = body?[["preconditions", "uid"]]?.string
        preconditionResourceVersion = body?[["preconditions", "resourceVersion"]]?.string
        dryRun = query["dryRun"] == "All" || body?["dryRun"]?.array?.isEmpty == false
    }
}

/// A deterministic generator (SplitMix64), so a seed reproduces fault and name choices.
struct SeededGenerator: RandomNumberGenerator, Sendable {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

/// The API server's state: objects, the global resourceVersion, event history, watchers, and the simulated
/// controllers (Job controller, kubelet, garbage collector, TTL controller), all serialized by one actor so every
/// write gets the next resourceVersion and reaches watchers in order.
actor Cluster {
    let configuration: KubernetesEmulatorConfiguration
    var tables: [ResourceTable] = Array(repeating: ResourceTable(), count: ResourceType.all.count)
    var resourceVersion: UInt64 = 1
    /// Watches and continue tokens from a resourceVersion below this one answer 410 Expired.
    var compactedRevision: UInt64 = 1
    var history: [HistoryEvent] = []
    var historyStart = 0
    /// Per list in progress (resource and resourceVersion): the objects changed since, as they were then.
    var listSnapshots: [String: ListSnapshot] = [:]
    var watchers: [Int: Watcher] = [:]
    var nextWatcherID = 0
    /// Per watcher, the lines written since the last flush: delivered together, so a burst of events (a tick that
    /// advances many pods) costs one write per watch, not one per event. Kept apart from `watchers`, which the
    /// fan-out iterates while lines are appended.
    var pending: [Int: [UInt8]] = [:]
    var unflushed: [Int] = []
    var flushScheduled = false
    var byUID: [String: ObjectRef] = [:]
    var dependents: [String: Set<ObjectRef>] = [:]
    var random: SeededGenerator
    var timers = TimerQueue()
    var pods: [String: PodRuntime] = [:]
    var jobs: [String: JobRuntime] = [:]
    var faults: KubernetesEmulatorFaults
    var stormUntil: ContinuousClock.Instant?
    var tokens: Double = 0
    var tokensAt = ContinuousClock.now
    var requestCounts: [String: Int] = [:]
    var stopped = false
    /// Pods waiting for a claim (`namespace/name`) to exist before they can be scheduled.
    var claimWaiters: [String: Set<String>] = [:]
    /// Coordination files c2d's simulated steps wrote on each claim, and the pods waiting for them.
    var markers: [String: Set<String>] = [:]
    var markerWaiters: [String: Set<String>] = [:]
    /// Real step processes, when configured.
    let processes: StepProcesses?
    /// Recently written objects as parsed JSON, by uid, with the resourceVersion they stand for: the controllers
    /// read, change and write back the objects they just wrote (a pod's status several times a second), and
    /// parsing the stored bytes again each time was a fifth of the emulator's CPU. Bounded by
    /// ``parsedCacheLimit``; a miss parses the bytes as before.
    var parsed: [String: (resourceVersion: UInt64, object: JSON)] = [:]
    static let parsedCacheLimit = 4_096

    init(configuration: KubernetesEmulatorConfiguration) {
        self.configuration = configuration
        self.processes = configuration.stepRunner.map(StepProcesses.init)
        self.resourceVersion = max(1, configuration.initialResourceVersion)
        self.compactedRevision = max(1, configuration.initialResourceVersion)
        self.random = SeededGenerator(state: configuration.seed)
        self.faults = configuration.faults
        self.tokens = Double(configuration.faults.qpsBurst)
        if configuration.faults.throttle.durationSeconds > 0 {
            stormUntil = .now + .seconds(configuration.faults.throttle.durationSeconds)
        }
    }

    // MARK: Clock and helpers

    func scaled(_ seconds: Double) -> Duration {
        .nanoseconds(Int64(max(0, seconds * configuration.timeScale) * 1e9))
    }

    func scaled(_ duration: Duration) -> Duration { duration * configuration.timeScale }

    func newUID() -> String {
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &random) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map { String($0, radix: 16).leftPadded(2) }.joined()
        let characters = Array(hex)
        return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(characters[$0]) }.joined(separator: "-")
    }

    func randomSuffix(_ count: Int = 5) -> String {
        String((0..<count).map { _ in Names.generatedAlphabet.randomElement(using: &random)! })
    }

    func object(_ ref: ObjectRef) -> StoredObject? { tables[ref.resource].objects[ref.key] }

    /// The stored object as JSON: from ``parsed`` when it holds this version, else parsed from its bytes.
    func json(_ stored: StoredObject) -> JSON {
        if let hit = parsed[stored.uid], hit.resourceVersion == stored.resourceVersion { return hit.object }
        let object = stored.json()
        remember(stored, object)
        return object
    }

    func remember(_ stored: StoredObject, _ object: JSON) {
        guard !stored.uid.isEmpty else { return }
        if parsed.count >= Self.parsedCacheLimit { parsed.removeAll(keepingCapacity: true) }
        parsed[stored.uid] = (stored.resourceVersion, object)
    }

    static func fields(of object: JSON, _ resource: ResourceType) -> SelectableFields {
        SelectableFields(
            name: object[["metadata", "name"]]?.string ?? "",
            namespace: object[["metadata", "namespace"]]?.string ?? "",
            labels: object[["metadata", "labels"]]?.stringMap ?? [:],
            phase: resource == .pods ? object[["status", "phase"]]?.string : nil)
    }

    // MARK: Writes

    /// Stores `object` at the next resourceVersion, records the event and fans it out to watchers.
    @discardableResult
    func commit(_ resource: ResourceType, _ object: JSON, type: EventType) -> JSON {
        resourceVersion += 1
        var object = object
        object[["metadata", "resourceVersion"]] = .string(String(resourceVersion))
        let key =
            (object[["metadata", "namespace"]]?.string ?? "") + "/" + (object[["metadata", "name"]]?.string ?? "")
        let ref = ObjectRef(resource: resource.index, key: key)
        let previous = tables[resource.index].objects[key]
        let stored = makeStored(object, resource)
        if let previous {
            for owner in previous.owners { dependents[owner]?.remove(ref) }
        } else {
            tables[resource.index].insertKey(key)
        }
        for owner in stored.owners { dependents[owner, default: []].insert(ref) }
        tables[resource.index].objects[key] = stored
        byUID[stored.uid] = ref
        // Only a value that reads back the same from its bytes stands in for them (an integral double is
        // written as an integer and would read back as one).
        if object.survivesSerialization { remember(stored, object) }
        record(resource, type, stored.bytes, old: previous?.fields, new: stored.fields, previous: previous?.bytes)
        return object
    }

    func makeStored(_ object: JSON, _ resource: ResourceType) -> StoredObject {
        let references = object[["metadata", "ownerReferences"]]?.array ?? []
        return StoredObject(
            bytes: object.serialized(), uid: object[["metadata", "uid"]]?.string ?? "",
            resourceVersion: UInt64(object[["metadata", "resourceVersion"]]?.string ?? "") ?? 0,
            fields: Self.fields(of: object, resource), owners: references.compactMap { $0["uid"]?.string },
            controller: references.first { $0["controller"]?.bool == true }?["uid"]?.string,
            deleting: object[["metadata", "deletionTimestamp"]] != nil)
    }

    /// Removes an object for good: a DELETED event at a new resourceVersion, then the controllers react.
    func remove(_ ref: ObjectRef) {
        guard let stored = object(ref) else { return }
        resourceVersion += 1
        var object = json(stored)
        object[["metadata", "resourceVersion"]] = .string(String(resourceVersion))
        let bytes = object.serialized()
        tables[ref.resource].objects[ref.key] = nil
        tables[ref.resource].removeKey(ref.key)
        byUID[stored.uid] = nil
        parsed[stored.uid] = nil
        for owner in stored.owners { dependents[owner]?.remove(ref) }
        record(ref.type, .deleted, bytes, old: stored.fields, new: stored.fields, previous: stored.bytes)
        afterRemoval(ref, stored)
    }

    func record(
        _ resource: ResourceType, _ type: EventType, _ bytes: [UInt8], old: SelectableFields?, new: SelectableFields?,
        previous: [UInt8]? = nil
    ) {
        let event = HistoryEvent(
            resourceVersion: resourceVersion, resource: resource.index, type: type, bytes: bytes,
            previous: type == .added ? nil : previous,
            old: type == .added ? nil : old, new: new, at: .now)
        history.append(event)
        if history.count - historyStart > configuration.compaction.maxEvents {
            compact(upTo: history.count - configuration.compaction.maxEvents)
        }
        for (id, watcher) in watchers where watcher.resource.index == resource.index {
            if let line = Self.line(for: event, watcher.selection) { send(id, line) }
        }
    }

    /// Queues a line for a watcher; the lines of one actor turn go out together right after it.
    func send(_ id: Int, _ line: [UInt8]) {
        guard watchers[id] != nil else { return }
        if pending[id] == nil {
            unflushed.append(id)
            if !flushScheduled {
                flushScheduled = true
                Task { self.flushWatches() }
            }
        }
        pending[id, default: []].append(contentsOf: line)
    }

    func flushWatches() {
        flushScheduled = false
        let ids = unflushed
        unflushed = []
        for id in ids { flush(id) }
    }

    /// Delivers the watcher's pending lines (before anything that ends the watch).
    func flush(_ id: Int) {
        guard let lines = pending.removeValue(forKey: id), let watcher = watchers[id] else { return }
        if case .terminated = watcher.continuation.yield(lines) { watchers[id] = nil }
    }

    /// The watch line a watcher with `selection` sees for `event`, or nil; an object that stops matching a
    /// selector is delivered as DELETED and one that starts matching as ADDED, as the watch cache does.
    static func line(for event: HistoryEvent, _ selection: Selection) -> [UInt8]? {
        let oldMatch = event.old.map(selection.matches) ?? false
        let newMatch = event.new.map(selection.matches) ?? false
        let type: EventType
        switch event.type {
        case .added:
            guard newMatch else { return nil }
            type = .added
        case .modified:
            switch (oldMatch, newMatch) {
            case (true, true): type = .modified
            case (false, true): type = .added
            case (true, false): type = .deleted
            case (false, false): return nil
            }
        case .deleted:
            guard oldMatch || newMatch else { return nil }
            type = .deleted
        }
        return watchLine(type.rawValue, event.bytes)
    }

    static func watchLine(_ type: String, _ object: [UInt8]) -> [UInt8] {
        var line = Array("{\"type\":\"\(type)\",\"object\":".utf8)
        line.append(contentsOf: object)
        line.append(contentsOf: "}\n".utf8)
        return line
    }

    /// Drops the oldest `count` retained events; their resourceVersions become too old to watch from.
    func compact(upTo index: Int) {
        guard index > historyStart else { return }
        compactedRevision = max(compactedRevision, history[index - 1].resourceVersion)
        historyStart = index
        if historyStart > 4096 && historyStart * 2 > history.count {
            history.removeFirst(historyStart)
            historyStart = 0
        }
    }

    func compactAll() {
        compact(upTo: history.count)
        compactedRevision = resourceVersion
    }

    // MARK: API verbs

    func create(_ resource: ResourceType, namespace: String, body: JSON, dryRun: Bool = false) throws -> JSON {
        guard case .object = body else { throw APIStatus.badRequest("the body of the request was not a JSON object") }
        var object = body
        try Self.checkType(object, resource)
        object["kind"] = .string(resource.kind)
        object["apiVersion"] = .string(resource.apiVersion)
        if let bodyNamespace = object[["metadata", "namespace"]]?.string, !bodyNamespace.isEmpty,
            bodyNamespace != namespace
        {
            throw APIStatus.badRequest(
                "the namespace of the provided object does not match the namespace sent on the request")
        }
        if let version = object[["metadata", "resourceVersion"]]?.string, !version.isEmpty {
            throw APIStatus.badRequest("resourceVersion should not be set on objects to be created")
        }
        guard Names.isDNSLabel(namespace) else {
            throw APIStatus.badRequest("namespace \"\(namespace)\" is invalid: \(Names.labelMessage)")
        }
        var metadata = object["metadata"] ?? [:]
        if (metadata["name"]?.string ?? "").isEmpty, let prefix = metadata["generateName"]?.string, !prefix.isEmpty {
            metadata["name"] = .string(String(prefix.prefix(58)) + randomSuffix())
        }
        let uid = newUID()
        metadata["namespace"] = .string(namespace)
        metadata["uid"] = .string(uid)
        metadata["creationTimestamp"] = .string(Timestamp.now())
        metadata["generation"] = 1
        metadata["deletionTimestamp"] = nil
        metadata["deletionGracePeriodSeconds"] = nil
        metadata["resourceVersion"] = nil
        object["metadata"] = metadata
        Validation.applyDefaults(&object, resource, uid: uid)
        try Validation.validate(object, resource)
        let name = metadata["name"]?.string ?? ""
        guard tables[resource.index].objects[namespace + "/" + name] == nil else {
            throw APIStatus.alreadyExists(resource, name)
        }
        if dryRun { return object }
        let stored = commit(resource, object, type: .added)
        afterWrite(resource, stored, created: true)
        return stored
    }

    static func checkType(_ object: JSON, _ resource: ResourceType) throws {
        if let version = object["apiVersion"]?.string, !version.isEmpty, version != resource.apiVersion {
            throw APIStatus.badRequest(
                "the API version in the data (\(version)) does not match the expected API version (\(resource.apiVersion))"
            )
        }
        if let kind = object["kind"]?.string, !kind.isEmpty, kind != resource.kind {
            throw APIStatus.badRequest(
                "the kind in the data (\(kind)) does not match the expected kind (\(resource.kind))")
        }
    }

    func get(_ resource: ResourceType, namespace: String, name: String) throws -> [UInt8] {
        guard let stored = tables[resource.index].objects[namespace + "/" + name] else {
            throw APIStatus.notFound(resource, name)
        }
        return stored.bytes
    }

    func list(_ resource: ResourceType, selection: Selection, limit: Int?, continueToken: String?) throws -> [UInt8] {
        var listVersion = resourceVersion
        var startKey: String?
        if let continueToken, !continueToken.isEmpty {
            let token = try ContinueToken(decoding: continueToken)
            if token.resourceVersion < compactedRevision {
                throw APIStatus.expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
                )
            }
            listVersion = token.resourceVersion
            startKey = token.start
        }
        tables[resource.index].ensureSorted()
        // A continued list shows the collection as of its first page (etcd serves it at that revision): objects
        // changed since are shown as they were then, from the history.
        let snapshot = listVersion < resourceVersion ? listSnapshot(resource, at: listVersion) : nil
        let table = tables[resource.index]
        let prefix = selection.namespace.map { $0 + "/" } ?? ""
        var index = table.lowerBound(max(prefix, startKey ?? ""))
        if let startKey, index < table.keys.count, table.keys[index] == startKey { index += 1 }
        var changed = snapshot.map { $0.lowerBound(max(prefix, startKey ?? "")) } ?? 0
        if let startKey, let snapshot, changed < snapshot.keys.count, snapshot.keys[changed] == startKey {
            changed += 1
        }
        var out = Array(
            "{\"kind\":\"\(resource.listKind)\",\"apiVersion\":\"\(resource.apiVersion)\",\"metadata\":{".utf8)
        var items: [UInt8] = []
        var count = 0
        var lastKey: String?
        var more = false
        let filtered = !selection.labels.requirements.isEmpty || !selection.fields.requirements.isEmpty
        while true {
            // The next key in order from the live table or from the objects changed since the list began.
            let live = index < table.keys.count ? table.keys[index] : nil
            let old = snapshot.flatMap { changed < $0.keys.count ? $0.keys[changed] : nil }
            guard let key = [live, old].compactMap({ $0 }).min() else { break }
            if !prefix.isEmpty && !key.hasPrefix(prefix) { break }
            if let limit, limit > 0, count >= limit {
                more = true
                break
            }
            if key == live { index += 1 }
            if key == old { changed += 1 }
            let object: (bytes: [UInt8], fields: SelectableFields)?
            if let snapshot, let then = snapshot.objects[key] {
                object = then
            } else {
                object = table.objects[key].map { ($0.bytes, $0.fields) }
            }
            if let object, selection.matches(object.fields) {
                if count > 0 { items.append(UInt8(ascii: ",")) }
                items.append(contentsOf: object.bytes)
                count += 1
            }
            lastKey = key
        }
        out.append(contentsOf: "\"resourceVersion\":\"\(listVersion)\"".utf8)
        if more, let lastKey {
            let token = ContinueToken(resourceVersion: listVersion, start: lastKey).encoded
            out.append(contentsOf: ",\"continue\":\"\(token)\"".utf8)
            if !filtered && snapshot == nil {
                var remaining = 0
                if prefix.isEmpty {
                    remaining = table.keys.count - index
                } else {
                    let end = table.lowerBound(String(prefix.dropLast()) + "0")
                    remaining = end - index
                }
                out.append(contentsOf: ",\"remainingItemCount\":\(remaining)".utf8)
            }
        }
        out.append(contentsOf: "},\"items\":[".utf8)
        out.append(contentsOf: items)
        out.append(contentsOf: "]}".utf8)
        return out
    }

    /// The objects of `resource` changed after `version`, as they were at `version` (nil: they did not exist yet),
    /// kept up to date incrementally while the list goes on.
    func listSnapshot(_ resource: ResourceType, at version: UInt64) -> ListSnapshot {
        let id = "\(resource.index)/\(version)"
        var snapshot = listSnapshots[id] ?? ListSnapshot(scannedThrough: version)
        if listSnapshots[id] == nil && listSnapshots.count >= 16 { listSnapshots.removeAll() }
        guard snapshot.scannedThrough < resourceVersion else { return snapshot }
        var low = historyStart
        var high = history.count
        while low < high {
            let middle = (low + high) / 2
            if history[middle].resourceVersion <= snapshot.scannedThrough { low = middle + 1 } else { high = middle }
        }
        var added = false
        for event in history[low...] where event.resource == resource.index {
            guard let fields = event.old ?? event.new else { continue }
            let key = fields.namespace + "/" + fields.name
            guard snapshot.objects.index(forKey: key) == nil else { continue }
            if event.type == .added {
                snapshot.objects[key] = .some(nil)
            } else if let previous = event.previous, let old = event.old {
                snapshot.objects[key] = (previous, old)
            }
            added = true
        }
        snapshot.scannedThrough = resourceVersion
        if added { snapshot.keys = snapshot.objects.keys.sorted() }
        listSnapshots[id] = snapshot
        return snapshot
    }

    enum UpdateKind {
        case main, status
    }

    func update(
        _ resource: ResourceType, namespace: String, name: String, body: JSON, kind: UpdateKind = .main,
        dryRun: Bool = false
    ) throws -> JSON {
        guard case .object = body else { throw APIStatus.badRequest("the body of the request was not a JSON object") }
        guard let stored = tables[resource.index].objects[namespace + "/" + name] else {
            throw APIStatus.notFound(resource, name)
        }
        try Self.checkType(body, resource)
        if let bodyName = body[["metadata", "name"]]?.string, bodyName != name {
            throw APIStatus.badRequest(
                "the name of the object (\(bodyName)) does not match the name on the URL (\(name))")
        }
        if let bodyNamespace = body[["metadata", "namespace"]]?.string, !bodyNamespace.isEmpty,
            bodyNamespace != namespace
        {
            throw APIStatus.badRequest(
                "the namespace of the provided object does not match the namespace sent on the request")
        }
        if let version = body[["metadata", "resourceVersion"]]?.string, !version.isEmpty,
            version != String(stored.resourceVersion)
        {
            throw APIStatus.conflict(resource, name, APIStatus.staleObject)
        }
        if let uid = body[["metadata", "uid"]]?.string, !uid.isEmpty, uid != stored.uid {
            throw APIStatus.conflict(
                resource, name, "Precondition failed: UID in precondition: \(uid), UID in object meta: \(stored.uid)")
        }
        let old = json(stored)
        var new = body
        new["kind"] = .string(resource.kind)
        new["apiVersion"] = .string(resource.apiVersion)
        switch kind {
        case .status:
            var merged = old
            merged["status"] = new["status"]
            new = merged
        case .main:
            if resource.hasStatus { new["status"] = old["status"] }
            for key in [
                "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                "namespace", "name",
            ] {
                new[["metadata", key]] = old[["metadata", key]]
            }
        }
        new[["metadata", "resourceVersion"]] = old[["metadata", "resourceVersion"]]
        var errors = FieldErrors()
        if stored.deleting {
            let before = Set((old[["metadata", "finalizers"]]?.array ?? []).compactMap(\.string))
            let after = Set((new[["metadata", "finalizers"]]?.array ?? []).compactMap(\.string))
            if !after.isSubset(of: before) {
                errors.forbidden("metadata.finalizers", "no new finalizers can be added if the object is being deleted")
            }
        }
        Validation.applyDefaults(&new, resource, uid: stored.uid)
        try Validation.validate(new, resource)
        Self.checkImmutable(resource, old: old, new: new, errors: &errors)
        try errors.check(resource, name)
        if new["spec"] != old["spec"] || (resource == .secrets && new["data"] != old["data"]) {
            new[["metadata", "generation"]] = .int((old[["metadata", "generation"]]?.int ?? 1) + 1)
        }
        // A no-op write does not bump the resourceVersion, as with the real storage layer.
        if new == old || dryRun { return new }
        let result = commit(resource, new, type: .modified)
        if stored.deleting && (result[["metadata", "finalizers"]]?.array ?? []).isEmpty {
            remove(ObjectRef(resource: resource.index, key: namespace + "/" + name))
            return result
        }
        afterWrite(resource, result, created: false)
        return result
    }

    static func checkImmutable(_ resource: ResourceType, old: JSON, new: JSON, errors: inout FieldErrors) {
        switch resource {
        case .jobs:
            for field in ["template", "selector", "completionMode"] where old[["spec", field]] != new[["spec", field]] {
                let value = (new[["spec", field]] ?? .null).text
                errors.invalid("spec.\(field)", value, "field is immutable")
            }
            if old[["spec", "completions"]] != new[["spec", "completions"]] {
                errors.invalid("spec.completions", (new[["spec", "completions"]] ?? .null).text, "field is immutable")
            }
        case .pods:
            var oldSpec = old["spec"] ?? [:]
            var newSpec = new["spec"] ?? [:]
            oldSpec["activeDeadlineSeconds"] = nil
            newSpec["activeDeadlineSeconds"] = nil
            oldSpec["nodeName"] = nil
            newSpec["nodeName"] = nil
            if var containers = newSpec["containers"]?.array, let oldContainers = oldSpec["containers"]?.array,
                containers.count == oldContainers.count
            {
                for offset in containers.indices { containers[offset]["image"] = oldContainers[offset]["image"] }
                newSpec["containers"] = .array(containers)
            }
            if oldSpec != newSpec {
                errors.forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
                )
            }
        case .persistentVolumeClaims:
            var oldSpec = old["spec"] ?? [:]
            var newSpec = new["spec"] ?? [:]
            oldSpec[["resources", "requests", "storage"]] = nil
            newSpec[["resources", "requests", "storage"]] = nil
            oldSpec["volumeName"] = nil
            newSpec["volumeName"] = nil
            if oldSpec != newSpec {
                errors.forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
                )
            }
        default:
            break
        }
    }

    func patch(
        _ resource: ResourceType, namespace: String, name: String, patch: JSON, contentType: String,
        kind: UpdateKind = .main, dryRun: Bool = false
    ) throws -> JSON {
        guard let stored = tables[resource.index].objects[namespace + "/" + name] else {
            throw APIStatus.notFound(resource, name)
        }
        var old = json(stored)
        let patched: JSON
        if contentType.hasPrefix("application/merge-patch+json")
            || contentType.hasPrefix("application/strategic-merge-patch+json")
        {
            guard case .object = patch else { throw APIStatus.badRequest("patch body must be a JSON object") }
            // The result keeps the stored resourceVersion unless the patch names one, which is then a precondition.
            old[["metadata", "resourceVersion"]] = nil
            patched = old.mergePatched(with: patch)
        } else if contentType.hasPrefix("application/json-patch+json") {
            patched = try JSONPatch.apply(patch, to: old)
        } else {
            throw APIStatus(
                code: 415, reason: "UnsupportedMediaType",
                message:
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
            )
        }
        return try update(resource, namespace: namespace, name: name, body: patched, kind: kind, dryRun: dryRun)
    }

    /// Deletes as the registry and garbage collector do; answers the HTTP status and body.
    func delete(_ resource: ResourceType, namespace: String, name: String, options: DeleteOptions) throws -> JSON {
        let ref = ObjectRef(resource: resource.index, key: namespace + "/" + name)
        guard let stored = object(ref) else { throw APIStatus.notFound(resource, name) }
        if let uid = options.preconditionUID, uid != stored.uid {
            throw APIStatus.conflict(
                resource, name, "Precondition failed: UID in precondition: \(uid), UID in object meta: \(stored.uid)")
        }
        if let version = options.preconditionResourceVersion, version != String(stored.resourceVersion) {
            throw APIStatus.conflict(
                resource, name,
                "Precondition failed: ResourceVersion in precondition: \(version), ResourceVersion in meta: \(stored.resourceVersion)"
            )
        }
        if options.dryRun { return json(stored) }
        // Jobs keep the legacy default of batch/v1 (orphan their pods); everything else cascades in the background.
        let policy = options.propagation ?? (resource == .jobs ? .orphan : .background)
        return deleteObject(ref, policy: policy, grace: options.gracePeriodSeconds)
    }

    func successStatus(_ resource: ResourceType, _ name: String, uid: String) -> JSON {
        [
            "kind": "Status", "apiVersion": "v1", "metadata": [:], "status": "Success",
            "details": [
                "name": .string(name), "group": .string(resource.group), "kind": .string(resource.name),
                "uid": .string(uid),
            ],
        ]
    }

    @discardableResult
    func deleteObject(_ ref: ObjectRef, policy: Propagation, grace: Int64?) -> JSON {
        guard let stored = object(ref) else { return .null }
        let resource = ref.type
        var object = json(stored)
        if stored.deleting {
            // Already being deleted: a foreground request still adds its finalizer.
            if policy == .foreground, !Self.finalizers(object).contains("foregroundDeletion") {
                object[["metadata", "finalizers"]] = .array(
                    (Self.finalizers(object) + ["foregroundDeletion"]).map { .string($0) })
                object = commit(resource, object, type: .modified)
                schedule(after: scaled(configuration.garbageCollectionDelay), .foreground(stored.uid))
            }
            return resource.returnsDeletedObject ? object : successStatus(resource, ref.name, uid: stored.uid)
        }
        if policy == .orphan { orphanDependents(of: stored.uid) }
        var finalizers = Self.finalizers(object)
        if policy == .foreground { finalizers.append("foregroundDeletion") }
        let running =
            resource == .pods && !Self.isTerminal(object) && (grace ?? 30) > 0 && object[["spec", "nodeName"]] != nil
        if !finalizers.isEmpty || running {
            object[["metadata", "deletionTimestamp"]] = .string(Timestamp.now())
            object[["metadata", "deletionGracePeriodSeconds"]] = .int(
                running ? (grace ?? object[["spec", "terminationGracePeriodSeconds"]]?.int ?? 30) : 0)
            object[["metadata", "finalizers"]] = finalizers.isEmpty ? nil : .array(finalizers.map { .string($0) })
            object = commit(resource, object, type: .modified)
            if policy == .foreground {
                schedule(after: scaled(configuration.garbageCollectionDelay), .foreground(stored.uid))
            }
            if running { beginTermination(stored.uid) }
            if resource == .persistentVolumeClaims { releaseClaimProtection(ref.key) }
            return resource.returnsDeletedObject ? object : successStatus(resource, ref.name, uid: stored.uid)
        }
        remove(ref)
        if resource.returnsDeletedObject {
            var final = object
            final[["metadata", "resourceVersion"]] = .string(String(resourceVersion))
            return final
        }
        return successStatus(resource, ref.name, uid: stored.uid)
    }

    static func finalizers(_ object: JSON) -> [String] {
        (object[["metadata", "finalizers"]]?.array ?? []).compactMap(\.string)
    }

    static func isTerminal(_ pod: JSON) -> Bool {
        let phase = pod[["status", "phase"]]?.string
        return phase == "Succeeded" || phase == "Failed"
    }

    func orphanDependents(of uid: String) {
        for ref in dependents[uid] ?? [] {
            guard let stored = object(ref) else { continue }
            var object = json(stored)
            let references = (object[["metadata", "ownerReferences"]]?.array ?? []).filter { $0["uid"]?.string != uid }
            object[["metadata", "ownerReferences"]] = references.isEmpty ? nil : .array(references)
            commit(ref.type, object, type: .modified)
        }
        dependents[uid] = nil
    }

    func deleteCollection(_ resource: ResourceType, selection: Selection, options: DeleteOptions) throws -> [UInt8] {
        tables[resource.index].ensureSorted()
        let refs = tables[resource.index].keys.compactMap { key -> ObjectRef? in
            guard let stored = tables[resource.index].objects[key], selection.matches(stored.fields) else { return nil }
            return ObjectRef(resource: resource.index, key: key)
        }
        var items: [UInt8] = []
        for ref in refs {
            let result = try delete(resource, namespace: ref.namespace, name: ref.name, options: options)
            if result["kind"]?.string == resource.kind {
                if !items.isEmpty { items.append(UInt8(ascii: ",")) }
                items.append(contentsOf: result.serialized())
            }
        }
        var out = Array(
            "{\"kind\":\"\(resource.listKind)\",\"apiVersion\":\"\(resource.apiVersion)\",\"metadata\":{\"resourceVersion\":\"\(resourceVersion)\"},\"items\":["
                .utf8)
        out.append(contentsOf: items)
        out.append(contentsOf: "]}".utf8)
        return out
    }

    // MARK: Watch

    func watch(
        _ resource: ResourceType, selection: Selection, from version: String?, bookmarks: Bool, timeout: Duration?
    ) throws -> AsyncStream<[UInt8]> {
        let (stream, continuation) = AsyncStream<[UInt8]>.makeStream()
        if stopped {
            continuation.finish()
            return stream
        }
        if let version, !version.isEmpty, version != "0" {
            guard let start = UInt64(version) else {
                throw APIStatus.badRequest(
                    "resourceVersion: Invalid value: \"\(version)\": must be a non-negative integer")
            }
            if start < compactedRevision {
                let status = APIStatus.expired("too old resource version: \(start) (\(compactedRevision))")
                var object = status.json
                object["status"] = "Failure"
                continuation.yield(Self.watchLine("ERROR", object.serialized()))
                continuation.finish()
                return stream
            }
            var low = historyStart
            var high = history.count
            while low < high {
                let middle = (low + high) / 2
                if history[middle].resourceVersion <= start { low = middle + 1 } else { high = middle }
            }
            for event in history[low...] where event.resource == resource.index {
                if let line = Self.line(for: event, selection) { continuation.yield(line) }
            }
        } else {
            tables[resource.index].ensureSorted()
            let table = tables[resource.index]
            for key in table.keys {
                let stored = table.objects[key]!
                if selection.matches(stored.fields) { continuation.yield(Self.watchLine("ADDED", stored.bytes)) }
            }
        }
        let id = nextWatcherID
        nextWatcherID += 1
        let now = ContinuousClock.now
        watchers[id] = Watcher(
            resource: resource, selection: selection, bookmarks: bookmarks,
            nextBookmark: now + configuration.bookmarkInterval,
            deadline: now + (timeout ?? configuration.defaultWatchTimeout),
            continuation: continuation)
        continuation.onTermination = { [weak self] _ in
            Task { await self?.removeWatcher(id) }
        }
        return stream
    }

    func removeWatcher(_ id: Int) {
        watchers[id] = nil
    }

    /// What an API server does when its watch cache loses the history its watchers stand on (etcd compaction
    /// past them, a cache re-initialisation): each open watch gets an `ERROR` event with 410 Expired and ends, and
    /// the history is compacted, so the client must relist.
    func expireWatches() {
        compactAll()
        let status = APIStatus.expired(
            "too old resource version: the watch cache was reinitialised (\(compactedRevision))")
        var object = status.json
        object["status"] = "Failure"
        for (id, watcher) in watchers {
            flush(id)
            watcher.continuation.yield(Self.watchLine("ERROR", object.serialized()))
            watcher.continuation.finish()
        }
        watchers = [:]
    }

    func dropWatches() {
        for (id, watcher) in watchers {
            flush(id)
            watcher.continuation.finish()
        }
        watchers = [:]
    }

    func bookmarkLine(_ resource: ResourceType) -> [UInt8] {
        let object: JSON = [
            "kind": .string(resource.kind), "apiVersion": .string(resource.apiVersion),
            "metadata": ["resourceVersion": .string(String(resourceVersion)), "creationTimestamp": nil],
        ]
        return Self.watchLine("BOOKMARK", object.serialized())
    }

    /// Stops streams so a graceful shutdown is not held open by watches and log follows.
    func stop() {
        stopped = true
        dropWatches()
        processes?.killAll()
    }

    // MARK: Housekeeping

    /// Runs due timers, bookmarks, watch timeouts and time-based compaction; answers how long to sleep.
    func tick() -> Duration {
        let now = ContinuousClock.now
        var budget = 10_000
        while budget > 0, let due = timers.popDue(now) {
            run(due)
            budget -= 1
        }
        for (id, watcher) in watchers {
            if now >= watcher.deadline {
                flush(id)
                watcher.continuation.finish()
                watchers[id] = nil
            } else if watcher.bookmarks && now >= watcher.nextBookmark {
                watchers[id]?.nextBookmark = now + configuration.bookmarkInterval
                send(id, bookmarkLine(watcher.resource))
            }
        }
        let horizon = now - configuration.compaction.window
        var index = historyStart
        while index < history.count, history[index].at < horizon { index += 1 }
        if index > historyStart { compact(upTo: index) }
        let next = timers.nextDue.map { $0 - now } ?? .milliseconds(50)
        return min(max(next, .zero), .milliseconds(20))
    }

    func schedule(after delay: Duration, _ action: TimerAction) {
        timers.push(.now + delay, action)
    }

    func run(_ action: TimerAction) {
        switch action {
        case .syncJob(let uid): syncJob(uid)
        case .podStep(let uid): podStep(uid)
        case .podTerminated(let uid): finishTermination(uid)
        case .podDeadline(let uid): podDeadlinePassed(uid)
        case .collect(let uid): collectDependents(of: uid)
        case .foreground(let uid): processForeground(uid)
        case .ttl(let uid):
            if let ref = byUID[uid] { deleteObject(ref, policy: .background, grace: nil) }
        }
    }

    // MARK: Garbage collector

    func afterRemoval(_ ref: ObjectRef, _ stored: StoredObject) {
        if dependents[stored.uid]?.isEmpty == false {
            schedule(after: scaled(configuration.garbageCollectionDelay), .collect(stored.uid))
        }
        for owner in stored.owners {
            if let ownerRef = byUID[owner], self.object(ownerRef)?.deleting == true {
                schedule(after: scaled(configuration.garbageCollectionDelay), .foreground(owner))
            }
        }
        if ref.resource == ResourceType.pods.index {
            podRemoved(stored.uid, ref)
            if let job = stored.controller { schedule(after: .zero, .syncJob(job)) }
        }
        if ref.resource == ResourceType.persistentVolumeClaims.index { claimRemoved(ref) }
        if ref.resource == ResourceType.jobs.index { jobs[stored.uid] = nil }
    }

    /// Background collection: dependents with no remaining owner are deleted; dangling references are dropped.
    func collectDependents(of uid: String) {
        guard byUID[uid] == nil else { return }
        for ref in dependents[uid] ?? [] {
            guard let stored = object(ref) else { continue }
            let remaining = stored.owners.filter { $0 != uid && byUID[$0] != nil }
            if remaining.isEmpty {
                deleteObject(ref, policy: .background, grace: nil)
            } else {
                var object = json(stored)
                let references = (object[["metadata", "ownerReferences"]]?.array ?? []).filter {
                    $0["uid"]?.string != uid
                }
                object[["metadata", "ownerReferences"]] = .array(references)
                commit(ref.type, object, type: .modified)
            }
        }
        dependents[uid] = nil
    }

    /// Foreground deletion: delete dependents (themselves in the foreground), and remove the owner once none remain.
    func processForeground(_ uid: String) {
        guard let ref = byUID[uid], let stored = object(ref), stored.deleting else { return }
        var object = json(stored)
        guard Self.finalizers(object).contains("foregroundDeletion") else { return }
        let waiting = (dependents[uid] ?? []).filter { self.object($0) != nil }
        for dependent in waiting where self.object(dependent)?.deleting == false {
            deleteObject(dependent, policy: .foreground, grace: nil)
        }
        if (dependents[uid] ?? []).contains(where: { self.object($0) != nil }) { return }
        let remaining = Self.finalizers(object).filter { $0 != "foregroundDeletion" }
        if remaining.isEmpty {
            remove(ref)
        } else {
            object[["metadata", "finalizers"]] = .array(remaining.map { .string($0) })
            commit(ref.type, object, type: .modified)
        }
    }

    // MARK: Faults and statistics

    enum Admission {
        case proceed
        case reject(APIStatus)
    }

    func admit(verb: String, resource: String) -> (Admission, Duration) {
        requestCounts["\(verb) \(resource)", default: 0] += 1
        let latency = Duration.nanoseconds(Int64(faults.latencyMilliseconds * 1e6))
        let now = ContinuousClock.now
        if let stormUntil, now < stormUntil,
            Double.random(in: 0..<1, using: &random) < faults.throttle.fraction
        {
            return (.reject(.tooManyRequests(retryAfter: faults.retryAfterSeconds)), latency)
        }
        if let qps = faults.qpsLimit, qps > 0 {
            let elapsed = now - tokensAt
            tokensAt = now
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            tokens = min(Double(max(faults.qpsBurst, 1)), tokens + seconds * qps)
            if tokens < 1 {
                let wait = Int(((1 - tokens) / qps).rounded(.up))
                return (.reject(.tooManyRequests(retryAfter: max(1, wait))), latency)
            }
            tokens -= 1
        }
        if faults.serverErrorFraction > 0, Double.random(in: 0..<1, using: &random) < faults.serverErrorFraction {
            return (.reject(.internalError("injected fault")), latency)
        }
        return (.proceed, latency)
    }

    func setFaults(_ faults: KubernetesEmulatorFaults) {
        self.faults = faults
        stormUntil = faults.throttle.durationSeconds > 0 ? .now + .seconds(faults.throttle.durationSeconds) : nil
        tokens = Double(max(faults.qpsBurst, 1))
        tokensAt = .now
    }

    func statistics() -> KubernetesEmulatorStatistics {
        var objects: [String: Int] = [:]
        for type in ResourceType.all { objects[type.name] = tables[type.index].objects.count }
        return KubernetesEmulatorStatistics(
            requests: requestCounts, openWatches: watchers.count, objects: objects,
            resourceVersion: resourceVersion, compactedResourceVersion: compactedRevision,
            retainedEvents: history.count - historyStart)
    }

    // MARK: Preload

    /// Stores objects without events or controller work, as if they had existed before history began.
    func preload(_ resource: ResourceType, namespace: String, objects: [JSON]) throws -> Int {
        var count = 0
        for var object in objects {
            try Self.checkType(object, resource)
            object["kind"] = .string(resource.kind)
            object["apiVersion"] = .string(resource.apiVersion)
            let uid = object[["metadata", "uid"]]?.string ?? newUID()
            object[["metadata", "uid"]] = .string(uid)
            object[["metadata", "namespace"]] = .string(namespace)
            if object[["metadata", "creationTimestamp"]] == nil {
                object[["metadata", "creationTimestamp"]] = .string(Timestamp.now())
            }
            if object[["metadata", "generation"]] == nil { object[["metadata", "generation"]] = 1 }
            Validation.applyDefaults(&object, resource, uid: uid)
            try Validation.validate(object, resource)
            let name = object[["metadata", "name"]]?.string ?? ""
            let key = namespace + "/" + name
            guard tables[resource.index].objects[key] == nil else { throw APIStatus.alreadyExists(resource, name) }
            resourceVersion += 1
            object[["metadata", "resourceVersion"]] = .string(String(resourceVersion))
            let stored = makeStored(object, resource)
            tables[resource.index].objects[key] = stored
            tables[resource.index].keys.append(key)
            tables[resource.index].sorted = false
            byUID[uid] = ObjectRef(resource: resource.index, key: key)
            for owner in stored.owners {
                dependents[owner, default: []].insert(ObjectRef(resource: resource.index, key: key))
            }
            count += 1
        }
        compactAll()
        return count
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

/// What a continued list needs to show the collection as of its first page.
struct ListSnapshot: Sendable {
    /// Objects changed since: their state then (the inner nil: created since, so absent then).
    var objects: [String: (bytes: [UInt8], fields: SelectableFields)?] = [:]
    /// Their keys, sorted.
    var keys: [String] = []
    var scannedThrough: UInt64

    init(scannedThrough: UInt64) {
        self.scannedThrough = scannedThrough
    }

    func lowerBound(_ key: String) -> Int {
        var low = 0
        var high = keys.count
        while low < high {
            let middle = (low + high) / 2
            if keys[middle] < key { low = middle + 1 } else { high = middle }
        }
        return low
    }
}

/// The `continue` token: base64 of the same JSON shape the real server uses.
struct ContinueToken {
    var resourceVersion: UInt64
    var start: String

    init(resourceVersion: UInt64, start: String) {
        self.resourceVersion = resourceVersion
        self.start = start
    }

    init(decoding text: String) throws {
        guard let data = Data(base64Encoded: text), let json = try? JSON.parse(Array(data)),
            json["v"]?.string == "meta.k8s.io/v1", let version = json["rv"]?.int, let start = json["start"]?.string
        else {
            throw APIStatus.badRequest(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
        }
        resourceVersion = UInt64(version)
        self.start = start.hasSuffix("\u{0}") ? String(start.dropLast()) : start
    }

    var encoded: String {
        let json: JSON = ["v": "meta.k8s.io/v1", "rv": .int(Int64(resourceVersion)), "start": .string(start + "\u{0}")]
        return Data(json.serialized()).base64EncodedString()
    }
}

/// RFC 3339 times as the API server writes them (UTC, seconds; nanoseconds for log lines).
enum Timestamp {
    static func now() -> String { format(Date().timeIntervalSince1970) }

    static func format(_ seconds: Double, fractional: Bool = false) -> String {
        let whole = Int64(seconds.rounded(.down))
        var days = whole / 86_400
        let secondOfDay = whole - days * 86_400
        // Howard Hinnant's civil-from-days.
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ value: Int64, _ width: Int) -> String { String(value).leftPadded(width) }
        var text = "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):"
        text += "\(pad(secondOfDay % 3600 / 60, 2)):\(pad(secondOfDay % 60, 2))"
        if fractional {
            let nanos = Int64(((seconds - Double(whole)) * 1e9).rounded(.down))
            text += "." + pad(max(0, min(nanos, 999_999_999)), 9)
        }
        return text + "Z"
    }
}
