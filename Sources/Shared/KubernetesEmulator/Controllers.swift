import Foundation

/// Work the controllers have scheduled, ordered by due time.
enum TimerAction: Sendable {
    case syncJob(String)
    case podStep(String)
    case podTerminated(String)
    case podDeadline(String)
    case collect(String)
    case foreground(String)
    case ttl(String)
}

/// A binary heap of timers: one scheduler loop drives every pod and job, instead of a task per pod.
struct TimerQueue: Sendable {
    private var heap: [(due: ContinuousClock.Instant, sequence: UInt64, action: TimerAction)] = []
    private var sequence: UInt64 = 0

    var nextDue: ContinuousClock.Instant? { heap.first?.due }

    private func less(_ left: Int, _ right: Int) -> Bool {
        heap[left].due != heap[right].due
            ? heap[left].due < heap[right].due : heap[left].sequence < heap[right].sequence
    }

    mutating func push(_ due: ContinuousClock.Instant, _ action: TimerAction) {
        sequence += 1
        heap.append((due, sequence, action))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard less(child, parent) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func popDue(_ now: ContinuousClock.Instant) -> TimerAction? {
        guard let first = heap.first, first.due <= now else { return nil }
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count && less(left, smallest) { smallest = left }
            if right < heap.count && less(right, smallest) { smallest = right }
            if smallest == parent { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        return first.action
    }
}

/// The Job controller's memory of one Job: which pods it already counted.
struct JobRuntime: Sendable {
    var counted: Set<String> = []
    /// Pods seen unfinished at the last sync; one that disappears uncounted was killed and counts as failed.
    var tracked: Set<String> = []
    var startedAt: ContinuousClock.Instant?
    var lastFailure: ContinuousClock.Instant?
    var deadlineScheduled = false
}

extension Cluster {
    static let nodeName = "c2d-emulator-node"

    func wallNow() -> Double { Date().timeIntervalSince1970 }

    /// Hooks after a create or update through the API.
    func afterWrite(_ resource: ResourceType, _ object: JSON, created: Bool) {
        guard let uid = object[["metadata", "uid"]]?.string else { return }
        switch resource {
        case .jobs:
            schedule(after: scaled(configuration.controllerDelay), .syncJob(uid))
        case .pods where created:
            podCreated(uid, object)
        case .persistentVolumeClaims where created:
            claimCreated(object)
        default:
            break
        }
    }

    // MARK: Job controller

    func setCondition(_ conditions: inout [JSON], _ type: String, reason: String, message: String) {
        guard !conditions.contains(where: { $0["type"]?.string == type }) else { return }
        let now = JSON.string(Timestamp.now())
        conditions.append([
            "type": .string(type), "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
            "reason": .string(reason), "message": .string(message),
        ])
    }

    /// The Job controller's reconcile of one Job: count its pods, then suspend, fail, complete, or create the pods
    /// it still needs, and write the status.
    func syncJob(_ uid: String) {
        guard let ref = byUID[uid], ref.resource == ResourceType.jobs.index, let stored = object(ref), !stored.deleting
        else { return }
        let job = json(stored)
        let spec = job["spec"] ?? [:]
        var status = job["status"] ?? [:]
        var conditions = status["conditions"]?.array ?? []
        let finished = conditions.contains {
            ($0["type"]?.string == "Complete" || $0["type"]?.string == "Failed") && $0["status"]?.string == "True"
        }
        if finished { return }
        var runtime = jobs[uid] ?? JobRuntime()
        let now = ContinuousClock.now
        var pods = countPods(of: uid, status: status, runtime: &runtime, now: now)
        if spec["suspend"]?.bool == true {
            for podRef in pods.active { deleteObject(podRef, policy: .background, grace: nil) }
            setCondition(&conditions, "Suspended", reason: "JobSuspended", message: "Job suspended")
            status["active"] = 0
            status["conditions"] = .array(conditions)
            writeJobStatus(ref, job, status)
            jobs[uid] = runtime
            return
        }
        if let index = conditions.firstIndex(where: {
            $0["type"]?.string == "Suspended" && $0["status"]?.string == "True"
        }) {
            // Resumed: the condition turns False and the deadline timer restarts, as the real controller does.
            conditions[index]["status"] = "False"
            conditions[index]["reason"] = "JobResumed"
            conditions[index]["message"] = "Job resumed"
            conditions[index]["lastTransitionTime"] = .string(Timestamp.now())
            status["startTime"] = nil
            runtime.startedAt = nil
            runtime.deadlineScheduled = false
        }
        if status["startTime"] == nil {
            status["startTime"] = .string(Timestamp.now())
            runtime.startedAt = now
        }
        if runtime.startedAt == nil { runtime.startedAt = now }
        var created = 0
        if let failure = failure(of: uid, spec: spec, conditions: conditions, pods: pods, runtime: &runtime, now: now) {
            setCondition(&conditions, "FailureTarget", reason: failure.reason, message: failure.message)
            terminateActive(&pods)
            pods.ready = 0
            if pods.terminating == 0 {
                setCondition(&conditions, "Failed", reason: failure.reason, message: failure.message)
                scheduleTTL(uid, spec)
            }
        } else if pods.succeeded >= Int(spec["completions"]?.int ?? 1) {
            let message = "Reached expected number of succeeded pods"
            setCondition(&conditions, "SuccessCriteriaMet", reason: "CompletionsReached", message: message)
            terminateActive(&pods)
            if pods.terminating == 0 {
                setCondition(&conditions, "Complete", reason: "CompletionsReached", message: message)
                status["completionTime"] = .string(Timestamp.now())
                scheduleTTL(uid, spec)
            }
        } else {
            created = createMissingPods(uid, job, spec: spec, pods: pods, runtime: &runtime, now: now)
        }
        let active = pods.active.count + created
        status["active"] = active == 0 ? nil : .int(Int64(active))
        status["ready"] = .int(Int64(pods.ready))
        status["terminating"] = .int(Int64(pods.terminating))
        status["succeeded"] = pods.succeeded == 0 ? nil : .int(Int64(pods.succeeded))
        status["failed"] = pods.failed == 0 ? nil : .int(Int64(pods.failed))
        status["uncountedTerminatedPods"] = [:]
        status["conditions"] = conditions.isEmpty ? nil : .array(conditions)
        jobs[uid] = runtime
        writeJobStatus(ref, job, status)
    }

    /// A Job's pods as its controller counts them.
    struct JobPods {
        var active: [ObjectRef] = []
        var terminating = 0
        var ready = 0
        var restarts = 0
        var succeeded: Int
        var failed: Int
    }

    /// Deletes a Job's running pods, which then count as terminating.
    private func terminateActive(_ pods: inout JobPods) {
        for podRef in pods.active { deleteObject(podRef, policy: .background, grace: nil) }
        pods.terminating += pods.active.count
        pods.active = []
    }

    /// Counts each finished pod once (tracking finalizers' role); a pod that vanished before finishing (deleted
    /// while running) counts as failed.
    private func countPods(
        of uid: String, status: JSON, runtime: inout JobRuntime, now: ContinuousClock.Instant
    ) -> JobPods {
        let podRefs = (dependents[uid] ?? []).filter { $0.resource == ResourceType.pods.index }
        var pods = JobPods(succeeded: Int(status["succeeded"]?.int ?? 0), failed: Int(status["failed"]?.int ?? 0))
        for podRef in podRefs {
            guard let podStored = object(podRef), podStored.controller == uid else { continue }
            let pod = json(podStored)
            let phase = pod[["status", "phase"]]?.string ?? "Pending"
            pods.restarts += (pod[["status", "containerStatuses"]]?.array ?? []).reduce(0) {
                $0 + Int($1["restartCount"]?.int ?? 0)
            }
            if phase == "Succeeded" || phase == "Failed" {
                if runtime.counted.insert(podStored.uid).inserted {
                    if phase == "Succeeded" {
                        pods.succeeded += 1
                    } else {
                        pods.failed += 1
                        runtime.lastFailure = now
                    }
                }
            } else if podStored.deleting {
                pods.terminating += 1
            } else {
                pods.active.append(podRef)
                if phase == "Running" { pods.ready += 1 }
            }
        }
        let known = Set(podRefs.compactMap { object($0)?.uid })
        for tracked in runtime.tracked where !known.contains(tracked) && !runtime.counted.contains(tracked) {
            pods.failed += 1
            runtime.lastFailure = now
        }
        runtime.counted.formIntersection(known)
        runtime.tracked = Set(
            podRefs.compactMap { podRef in
                object(podRef).flatMap { runtime.counted.contains($0.uid) ? nil : $0.uid }
            })
        return pods
    }

    /// Why the Job fails, if it does: a failure target set before, the backoff limit, or the active deadline (whose
    /// timer is set the first time it is seen).
    private func failure(
        of uid: String, spec: JSON, conditions: [JSON], pods: JobPods, runtime: inout JobRuntime,
        now: ContinuousClock.Instant
    ) -> (reason: String, message: String)? {
        if let target = conditions.first(where: { $0["type"]?.string == "FailureTarget" }) {
            return (target["reason"]?.string ?? "", target["message"]?.string ?? "")
        }
        if pods.failed + pods.restarts > Int(spec["backoffLimit"]?.int ?? 6) {
            return ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        }
        if let deadline = spec["activeDeadlineSeconds"]?.int, let started = runtime.startedAt {
            let due = started + scaled(Double(deadline))
            if now >= due { return ("DeadlineExceeded", "Job was active longer than specified deadline") }
            if !runtime.deadlineScheduled {
                runtime.deadlineScheduled = true
                timers.push(due, .syncJob(uid))
            }
        }
        return nil
    }

    /// Creates the pods parallelism and completions still call for, after the retry delay of a failed one; returns
    /// how many it made.
    private func createMissingPods(
        _ uid: String, _ job: JSON, spec: JSON, pods: JobPods, runtime: inout JobRuntime, now: ContinuousClock.Instant
    ) -> Int {
        let completions = Int(spec["completions"]?.int ?? 1)
        let parallelism = Int(spec["parallelism"]?.int ?? 1)
        let wanted = max(0, min(parallelism, completions - pods.succeeded) - pods.active.count - pods.terminating)
        guard wanted > 0 else { return 0 }
        if let retryAt = runtime.lastFailure.map({ $0 + scaled(configuration.podRetryDelay) }), retryAt > now {
            timers.push(retryAt, .syncJob(uid))
            return 0
        }
        var created = 0
        for _ in 0..<wanted {
            if let podUID = createPod(for: job) {
                created += 1
                runtime.tracked.insert(podUID)
            }
        }
        return created
    }

    func writeJobStatus(_ ref: ObjectRef, _ job: JSON, _ status: JSON) {
        guard job["status"] != status else { return }
        var updated = job
        updated["status"] = status
        commit(.jobs, updated, type: .modified)
    }

    func scheduleTTL(_ uid: String, _ spec: JSON) {
        if let ttl = spec["ttlSecondsAfterFinished"]?.int {
            schedule(after: scaled(Double(ttl)), .ttl(uid))
        }
    }

    /// Creates one pod from the Job's template, named `<job>-<5 random>`, owned by the Job.
    func createPod(for job: JSON) -> String? {
        let name = job[["metadata", "name"]]?.string ?? ""
        let namespace = job[["metadata", "namespace"]]?.string ?? ""
        let template = job[["spec", "template"]] ?? [:]
        var metadata = template["metadata"] ?? [:]
        metadata["generateName"] = .string(name + "-")
        metadata["name"] = .string(name + "-" + randomSuffix())
        metadata["ownerReferences"] = [
            [
                "apiVersion": "batch/v1", "kind": "Job", "name": .string(name), "uid": job[["metadata", "uid"]] ?? "",
                "controller": true, "blockOwnerDeletion": true,
            ]
        ]
        let pod: JSON = ["apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"] ?? [:]]
        do {
            return try create(.pods, namespace: namespace, body: pod)[["metadata", "uid"]]?.string
        } catch {
            return nil
        }
    }
}

/// RFC 6902 JSON patch: add, remove, replace, test, copy and move.
enum JSONPatch {
    static func pointer(_ path: String) throws -> [String] {
        guard path.hasPrefix("/") else {
            if path.isEmpty { return [] }
            throw APIStatus(
                code: 422, reason: "Invalid",
                message: "the server rejected our request due to an error in our request: invalid path \(path)")
        }
        return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            $0.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
        }
    }

    static func failure(_ message: String) -> APIStatus {
        APIStatus(code: 422, reason: "Invalid", message: message)
    }

    static func get(_ document: JSON, _ path: [String]) throws -> JSON {
        var current = document
        for token in path {
            if let array = current.array {
                guard let index = Int(token), array.indices.contains(index) else {
                    throw failure("unable to find index \(token)")
                }
                current = array[index]
            } else if let value = current[token] {
                current = value
            } else {
                throw failure("doc is missing path: \"/\(path.joined(separator: "/"))\"")
            }
        }
        return current
    }

    enum Change {
        case add(JSON)
        case remove
    }

    static func change(_ document: inout JSON, _ path: ArraySlice<String>, _ change: Change) throws {
        guard let first = path.first else { throw failure("cannot modify the document root") }
        if path.count == 1 {
            if var array = document.array {
                switch change {
                case .add(let value):
                    if first == "-" {
                        array.append(value)
                    } else {
                        guard let index = Int(first), index >= 0, index <= array.count else {
                            throw failure("unable to find index \(first)")
                        }
                        array.insert(value, at: index)
                    }
                case .remove:
                    guard let index = Int(first), array.indices.contains(index) else {
                        throw failure("unable to find index \(first)")
                    }
                    array.remove(at: index)
                }
                document = .array(array)
            } else if case .object = document {
                switch change {
                case .add(let value): document[first] = value
                case .remove: document[first] = nil
                }
            } else {
                throw failure("doc is missing path: \"/\(path.joined(separator: "/"))\"")
            }
            return
        }
        if var array = document.array {
            guard let index = Int(first), array.indices.contains(index) else {
                throw failure("unable to find index \(first)")
            }
            try self.change(&array[index], path.dropFirst(), change)
            document = .array(array)
        } else {
            guard var child = document[first] else {
                throw failure("doc is missing path: \"/\(path.joined(separator: "/"))\"")
            }
            try self.change(&child, path.dropFirst(), change)
            document[first] = child
        }
    }

    static func apply(_ patch: JSON, to document: JSON) throws -> JSON {
        guard let operations = patch.array else {
            throw APIStatus.badRequest("json patch must be an array of operations")
        }
        var document = document
        for operation in operations {
            let op = operation["op"]?.string ?? ""
            let path = try pointer(operation["path"]?.string ?? "")
            switch op {
            case "add":
                let value = operation["value"] ?? .null
                if path.isEmpty { document = value } else { try addValue(&document, path, value) }
            case "remove":
                _ = try get(document, path)
                try removeValue(&document, path)
            case "replace":
                _ = try get(document, path)
                try removeValue(&document, path)
                try addValue(&document, path, operation["value"] ?? .null)
            case "test":
                guard try get(document, path) == operation["value"] ?? .null else {
                    throw failure("testing value failed")
                }
            case "copy", "move":
                let from = try pointer(operation["from"]?.string ?? "")
                let value = try get(document, from)
                if op == "move" { try removeValue(&document, from) }
                try addValue(&document, path, value)
            default:
                throw APIStatus.badRequest("Unexpected kind: \(op)")
            }
        }
        return document
    }

    static func addValue(_ document: inout JSON, _ path: [String], _ value: JSON) throws {
        try change(&document, path[...], .add(value))
    }

    static func removeValue(_ document: inout JSON, _ path: [String]) throws {
        try change(&document, path[...], .remove)
    }
}
