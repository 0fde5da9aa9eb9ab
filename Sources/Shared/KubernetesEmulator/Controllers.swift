import Foundation

/// Work the controllers have scheduled, ordered by due time.
enum TimerAction: Sendable {
    case syncJob(String)
    case podStep(String)
    case podTerminated(String)
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

/// What a simulated container does, from `sim.c2d.io/*` annotations or else its command and image:
/// `sleep N` runs N seconds, `exit N` exits N, `echo x` logs x, `head -c <N>M /dev/zero | tail` holds N MiB (above
/// the container's memory limit: OOMKilled), and an image whose registry host ends in `.invalid` (a reserved TLD,
/// so no real registry answers) never pulls.
struct PodPlan: Sendable {
    var duration: Double?
    var exitCode = 0
    var oom = false
    var imagePullFails = false
    var logs: [String] = []

    static let durationAnnotation = "sim.c2d.io/duration"
    static let exitCodeAnnotation = "sim.c2d.io/exit-code"
    static let oomAnnotation = "sim.c2d.io/oom"
    static let imagePullAnnotation = "sim.c2d.io/image-pull"
    static let logsAnnotation = "sim.c2d.io/logs"

    init(pod: JSON) {
        let annotations = pod[["metadata", "annotations"]]?.stringMap ?? [:]
        let container = pod[["spec", "containers"]]?.array?.first ?? [:]
        let words = ((container["command"]?.array ?? []) + (container["args"]?.array ?? [])).compactMap(\.string)
        var script: [String] = []
        if words.first.map({ $0 == "sleep" || $0.hasSuffix("/sleep") }) == true, words.count > 1 {
            script = ["sleep " + words[1]]
        } else if words.count >= 3, words[0].hasSuffix("sh"), words[1] == "-c" {
            script = words[2].split(whereSeparator: { $0 == ";" || $0 == "\n" }).flatMap {
                $0.components(separatedBy: "&&")
            }.map { String($0).trimmingSpaces() }
        }
        for statement in script {
            if statement.hasPrefix("sleep "), let seconds = Double(statement.dropFirst(6).trimmingSpaces()) {
                duration = (duration ?? 0) + seconds
            } else if statement.hasPrefix("exit "), let code = Int(statement.dropFirst(5).trimmingSpaces()) {
                exitCode = code
            } else if let mebibytes = Self.allocation(statement), let limit = Self.memoryLimitMiB(container),
                mebibytes > limit
            {
                oom = true
                exitCode = 137
            } else if statement.hasPrefix("echo ") {
                var text = statement.dropFirst(5).trimmingSpaces()
                if text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first {
                    text = String(text.dropFirst().dropLast())
                }
                logs.append(text)
            }
        }
        if let text = annotations[Self.durationAnnotation], let seconds = Double(text) { duration = seconds }
        if let text = annotations[Self.exitCodeAnnotation], let code = Int(text) { exitCode = code }
        if annotations[Self.oomAnnotation] == "true" {
            oom = true
            exitCode = 137
        }
        imagePullFails = annotations[Self.imagePullAnnotation] == "fail"
        if let image = container["image"]?.string, let host = image.split(separator: "/").first, image.contains("/"),
            host.hasSuffix(".invalid")
        {
            imagePullFails = true
        }
        if let text = annotations[Self.logsAnnotation] {
            logs = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if logs.last == "" { logs.removeLast() }
        }
    }
}

extension PodPlan {
    /// MiB held by `head -c <N>M /dev/zero | tail` (tail buffers its whole input), else nil.
    static func allocation(_ statement: String) -> Double? {
        guard statement.contains("/dev/zero"), statement.contains("tail"), let range = statement.range(of: "head -c ")
        else { return nil }
        let size = statement[range.upperBound...].prefix { !$0.isWhitespace }
        guard let unit = size.last, unit == "M" || unit == "G", let number = Double(size.dropLast()) else { return nil }
        return unit == "G" ? number * 1024 : number
    }

    /// The first container's memory limit in MiB (`Mi`, `Gi`, `M`, `G` or bytes).
    static func memoryLimitMiB(_ container: JSON) -> Double? {
        guard let text = container[["resources", "limits", "memory"]]?.string else { return nil }
        let units: [(String, Double)] = [("Gi", 1024), ("Mi", 1), ("Ki", 1.0 / 1024), ("G", 953.674), ("M", 0.953674)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            return Double(text.dropLast(suffix.count)).map { $0 * factor }
        }
        return Double(text).map { $0 / 1_048_576 }
    }
}

/// The kubelet's view of one pod.
struct PodRuntime: Sendable {
    enum Stage: Sendable {
        case created, creating, pullFailing, stuck, running, terminated, terminating
    }

    var stage: Stage = .created
    var plan: PodPlan
    var restartCount = 0
    var runStart: ContinuousClock.Instant?
    var runStartWall: Double = 0
    var runSeconds: Double = 0
    var lastTerminated: JSON?
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
            pods[uid] = PodRuntime(plan: PodPlan(pod: object))
            schedule(after: scaled(configuration.schedulingDelay), .podStep(uid))
        default:
            break
        }
    }

    // MARK: Kubelet

    func podDuration(_ plan: PodPlan) -> Duration {
        plan.duration.map { scaled($0) } ?? scaled(configuration.defaultPodDuration)
    }

    func containerStatuses(_ pod: JSON, state: JSON, ready: Bool, runtime: PodRuntime) -> JSON {
        let containers = pod[["spec", "containers"]]?.array ?? []
        let started = state["waiting"] == nil
        return .array(
            containers.map { container in
                let image = container["image"]?.string ?? ""
                var status: JSON = [
                    "name": container["name"] ?? "", "image": .string(image), "imageID": "",
                    "ready": .bool(ready), "restartCount": .int(Int64(runtime.restartCount)),
                    "started": .bool(started && ready),
                    "state": state, "lastState": runtime.lastTerminated.map { ["terminated": $0] } ?? [:],
                ]
                if started {
                    status["imageID"] = .string(
                        "docker.io/library/\(image)@sha256:" + String(repeating: "0", count: 64))
                    status["containerID"] = .string("containerd://" + String(repeating: "c", count: 64))
                }
                return status
            })
    }

    func podConditions(scheduled: Bool, initialized: Bool, ready: Bool, reason: String?, containers: [String]) -> JSON {
        let now = JSON.string(Timestamp.now())
        func condition(_ type: String, _ value: Bool, _ reason: String? = nil) -> JSON {
            var condition: JSON = [
                "type": .string(type), "status": value ? "True" : "False", "lastProbeTime": nil,
                "lastTransitionTime": now,
            ]
            if let reason, !value {
                condition["reason"] = .string(reason)
                if reason == "ContainersNotReady" {
                    condition["message"] = .string(
                        "containers with unready status: [\(containers.joined(separator: " "))]")
                }
            }
            return condition
        }
        var list: [JSON] = []
        if initialized {
            list.append(condition("PodReadyToStartContainers", true))
            list.append(condition("Initialized", true))
            list.append(condition("Ready", ready, reason))
            list.append(condition("ContainersReady", ready, reason))
        }
        if scheduled { list.append(condition("PodScheduled", true)) }
        return .array(list)
    }

    func writePod(_ uid: String, _ change: (inout JSON) -> Void) {
        guard let ref = byUID[uid], let stored = object(ref) else { return }
        var pod = stored.json()
        change(&pod)
        commit(.pods, pod, type: .modified)
    }

    /// Advances a pod through Pending (scheduled, creating) → Running → Succeeded/Failed.
    func podStep(_ uid: String) {
        guard var runtime = pods[uid], let ref = byUID[uid], let stored = object(ref) else { return }
        let pod = stored.json()
        let names = (pod[["spec", "containers"]]?.array ?? []).compactMap { $0["name"]?.string }
        switch runtime.stage {
        case .created:
            runtime.stage = runtime.plan.imagePullFails ? .pullFailing : .creating
            let reason: JSON =
                runtime.plan.imagePullFails
                ? [
                    "reason": "ErrImagePull",
                    "message": .string(
                        "failed to pull and unpack image \"\(pod[["spec", "containers"]]?.array?.first?["image"]?.string ?? "")\": not found"
                    ),
                ] : ["reason": "ContainerCreating"]
            let state: JSON = ["waiting": reason]
            let octet = Int.random(in: 2...254, using: &random)
            writePod(uid) { pod in
                pod[["spec", "nodeName"]] = .string(Self.nodeName)
                var status = pod["status"] ?? [:]
                status["phase"] = "Pending"
                status["conditions"] = podConditions(
                    scheduled: true, initialized: true, ready: false, reason: "ContainersNotReady", containers: names)
                status["hostIP"] = "10.0.0.10"
                status["hostIPs"] = [["ip": "10.0.0.10"]]
                status["podIP"] = .string("10.244.0.\(octet)")
                status["podIPs"] = [["ip": .string("10.244.0.\(octet)")]]
                status["startTime"] = .string(Timestamp.now())
                status["containerStatuses"] = containerStatuses(pod, state: state, ready: false, runtime: runtime)
                pod["status"] = status
            }
            pods[uid] = runtime
            schedule(after: scaled(configuration.containerStartDelay), .podStep(uid))
        case .pullFailing:
            runtime.stage = .stuck
            pods[uid] = runtime
            let image = pod[["spec", "containers"]]?.array?.first?["image"]?.string ?? ""
            writePod(uid) { pod in
                pod[["status", "containerStatuses"]] = containerStatuses(
                    pod,
                    state: [
                        "waiting": [
                            "reason": "ImagePullBackOff", "message": .string("Back-off pulling image \"\(image)\""),
                        ]
                    ],
                    ready: false, runtime: runtime)
            }
        case .creating:
            runtime.stage = .running
            runtime.runStart = .now
            runtime.runStartWall = wallNow()
            let duration = podDuration(runtime.plan)
            runtime.runSeconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
            pods[uid] = runtime
            let started = JSON.string(Timestamp.now())
            writePod(uid) { pod in
                pod[["status", "phase"]] = "Running"
                pod[["status", "conditions"]] = podConditions(
                    scheduled: true, initialized: true, ready: true, reason: nil, containers: names)
                pod[["status", "containerStatuses"]] = containerStatuses(
                    pod, state: ["running": ["startedAt": started]], ready: true, runtime: runtime)
            }
            schedule(after: duration, .podStep(uid))
            if let job = stored.controller { schedule(after: .zero, .syncJob(job)) }
        case .running:
            let plan = runtime.plan
            let terminated: JSON = [
                "exitCode": .int(Int64(plan.exitCode)),
                "reason": .string(plan.oom ? "OOMKilled" : plan.exitCode == 0 ? "Completed" : "Error"),
                "startedAt": .string(Timestamp.format(runtime.runStartWall)), "finishedAt": .string(Timestamp.now()),
                "containerID": .string("containerd://" + String(repeating: "c", count: 64)),
            ]
            let policy = pod[["spec", "restartPolicy"]]?.string ?? "Always"
            let restarts = policy == "Always" || (policy == "OnFailure" && plan.exitCode != 0)
            if restarts {
                // The kubelet restarts the container in place; the Job controller counts restarts against backoffLimit.
                runtime.restartCount += 1
                runtime.lastTerminated = terminated
                runtime.stage = .creating
                pods[uid] = runtime
                writePod(uid) { pod in
                    pod[["status", "containerStatuses"]] = containerStatuses(
                        pod,
                        state: [
                            "waiting": [
                                "reason": "CrashLoopBackOff", "message": "back-off restarting failed container",
                            ]
                        ],
                        ready: false, runtime: runtime)
                    pod[["status", "conditions"]] = podConditions(
                        scheduled: true, initialized: true, ready: false, reason: "ContainersNotReady",
                        containers: names)
                }
                schedule(after: scaled(configuration.podRetryDelay), .podStep(uid))
            } else {
                runtime.stage = .terminated
                pods[uid] = runtime
                let phase = plan.exitCode == 0 ? "Succeeded" : "Failed"
                writePod(uid) { pod in
                    pod[["status", "phase"]] = .string(phase)
                    pod[["status", "conditions"]] = podConditions(
                        scheduled: true, initialized: true, ready: false,
                        reason: phase == "Succeeded" ? "PodCompleted" : "PodFailed",
                        containers: names)
                    pod[["status", "containerStatuses"]] = containerStatuses(
                        pod, state: ["terminated": terminated], ready: false, runtime: runtime)
                }
            }
            if let job = stored.controller { schedule(after: .zero, .syncJob(job)) }
        case .stuck, .terminated, .terminating:
            break
        }
    }

    /// A graceful pod deletion: the kubelet stops the containers, then the pod object goes away.
    func beginTermination(_ uid: String) {
        if var runtime = pods[uid] {
            runtime.stage = .terminating
            pods[uid] = runtime
        }
        schedule(after: scaled(configuration.podTerminationDelay), .podTerminated(uid))
    }

    func finishTermination(_ uid: String) {
        guard let ref = byUID[uid], let stored = object(ref) else { return }
        var pod = stored.json()
        if !Self.isTerminal(pod) {
            let runtime = pods[uid] ?? PodRuntime(plan: PodPlan(pod: pod))
            let wasRunning = pod[["status", "phase"]]?.string == "Running"
            let state: JSON = [
                "terminated": [
                    "exitCode": wasRunning ? 143 : 0, "reason": wasRunning ? "Error" : "ContainerStatusUnknown",
                    "startedAt": .string(Timestamp.format(runtime.runStartWall > 0 ? runtime.runStartWall : wallNow())),
                    "finishedAt": .string(Timestamp.now()),
                ]
            ]
            pod[["status", "phase"]] = "Failed"
            pod[["status", "containerStatuses"]] = containerStatuses(pod, state: state, ready: false, runtime: runtime)
            pod = commit(.pods, pod, type: .modified)
        }
        let finalizers = Self.finalizers(pod).filter { $0 != "foregroundDeletion" }
        if finalizers.isEmpty {
            if Self.finalizers(pod).contains("foregroundDeletion") {
                processForeground(uid)
            } else {
                remove(ref)
            }
        }
    }

    // MARK: Pod logs

    struct LogChunk: Sendable {
        var lines: [(time: Double, text: String)]
        var finished: Bool
    }

    func podLog(namespace: String, name: String, container: String?, from index: Int) throws -> LogChunk {
        guard let stored = tables[ResourceType.pods.index].objects[namespace + "/" + name] else {
            throw APIStatus.notFound(.pods, name)
        }
        let pod = stored.json()
        let names = (pod[["spec", "containers"]]?.array ?? []).compactMap { $0["name"]?.string }
        let chosen: String
        if let container, !container.isEmpty {
            guard names.contains(container) else {
                throw APIStatus.badRequest("container \(container) is not valid for pod \(name)")
            }
            chosen = container
        } else if names.count == 1 {
            chosen = names[0]
        } else {
            throw APIStatus.badRequest(
                "a container name must be specified for pod \(name), choose one of: [\(names.joined(separator: " "))]")
        }
        let runtime = pods[stored.uid]
        switch runtime?.stage {
        case .created?, .creating?:
            if runtime?.restartCount == 0 {
                throw APIStatus.badRequest(
                    "container \"\(chosen)\" in pod \"\(name)\" is waiting to start: ContainerCreating")
            }
        case .pullFailing?, .stuck?:
            throw APIStatus.badRequest(
                "container \"\(chosen)\" in pod \"\(name)\" is waiting to start: trying and failing to pull image")
        default:
            break
        }
        guard let runtime else { return LogChunk(lines: [], finished: true) }
        let lines = runtime.plan.logs
        let finished = runtime.stage == .terminated || runtime.stage == .terminating || runtime.stage == .stuck
        var chunk = LogChunk(lines: [], finished: finished)
        let elapsed = runtime.runStart.map { ContinuousClock.now - $0 } ?? .zero
        let elapsedSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        var offset = index
        while offset < lines.count {
            // Lines appear evenly over the run, so a follower sees them arrive.
            let at = lines.count <= 1 ? 0 : runtime.runSeconds * Double(offset) / Double(lines.count)
            guard finished || at <= elapsedSeconds else { break }
            chunk.lines.append((runtime.runStartWall + at, lines[offset]))
            offset += 1
        }
        if offset < lines.count { chunk.finished = false }
        return chunk
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

    func syncJob(_ uid: String) {
        guard let ref = byUID[uid], ref.resource == ResourceType.jobs.index, let stored = object(ref), !stored.deleting
        else { return }
        let job = stored.json()
        let spec = job["spec"] ?? [:]
        var status = job["status"] ?? [:]
        var conditions = status["conditions"]?.array ?? []
        let finished = conditions.contains {
            ($0["type"]?.string == "Complete" || $0["type"]?.string == "Failed") && $0["status"]?.string == "True"
        }
        if finished { return }
        var runtime = jobs[uid] ?? JobRuntime()
        let now = ContinuousClock.now
        let podRefs = (dependents[uid] ?? []).filter { $0.resource == ResourceType.pods.index }
        var active: [ObjectRef] = []
        var terminating = 0
        var ready = 0
        var restarts = 0
        var succeeded = Int(status["succeeded"]?.int ?? 0)
        var failed = Int(status["failed"]?.int ?? 0)
        for podRef in podRefs {
            guard let podStored = object(podRef), podStored.controller == uid else { continue }
            let pod = podStored.json()
            let phase = pod[["status", "phase"]]?.string ?? "Pending"
            restarts += (pod[["status", "containerStatuses"]]?.array ?? []).reduce(0) {
                $0 + Int($1["restartCount"]?.int ?? 0)
            }
            if phase == "Succeeded" || phase == "Failed" {
                if runtime.counted.insert(podStored.uid).inserted {
                    if phase == "Succeeded" {
                        succeeded += 1
                    } else {
                        failed += 1
                        runtime.lastFailure = now
                    }
                }
            } else if podStored.deleting {
                terminating += 1
            } else {
                active.append(podRef)
                if phase == "Running" { ready += 1 }
            }
        }
        // A pod that vanished before finishing (deleted while running) counts as failed, as with tracking finalizers.
        let known = Set(podRefs.compactMap { object($0)?.uid })
        for tracked in runtime.tracked where !known.contains(tracked) && !runtime.counted.contains(tracked) {
            failed += 1
            runtime.lastFailure = now
        }
        runtime.counted.formIntersection(known)
        runtime.tracked = Set(
            podRefs.compactMap { podRef in
                object(podRef).flatMap { runtime.counted.contains($0.uid) ? nil : $0.uid }
            })
        if spec["suspend"]?.bool == true {
            for podRef in active { deleteObject(podRef, policy: .background, grace: nil) }
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
        let backoffLimit = Int(spec["backoffLimit"]?.int ?? 6)
        let completions = Int(spec["completions"]?.int ?? 1)
        let parallelism = Int(spec["parallelism"]?.int ?? 1)
        var failure: (reason: String, message: String)?
        if let target = conditions.first(where: { $0["type"]?.string == "FailureTarget" }) {
            failure = (target["reason"]?.string ?? "", target["message"]?.string ?? "")
        } else if failed + restarts > backoffLimit {
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        } else if let deadline = spec["activeDeadlineSeconds"]?.int, let started = runtime.startedAt {
            let due = started + scaled(Double(deadline))
            if now >= due {
                failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
            } else if !runtime.deadlineScheduled {
                runtime.deadlineScheduled = true
                timers.push(due, .syncJob(uid))
            }
        }
        var created = 0
        if let failure {
            setCondition(&conditions, "FailureTarget", reason: failure.reason, message: failure.message)
            for podRef in active { deleteObject(podRef, policy: .background, grace: nil) }
            terminating += active.count
            active = []
            ready = 0
            if terminating == 0 {
                setCondition(&conditions, "Failed", reason: failure.reason, message: failure.message)
                scheduleTTL(uid, spec)
            }
        } else if succeeded >= completions {
            setCondition(
                &conditions, "SuccessCriteriaMet", reason: "CompletionsReached",
                message: "Reached expected number of succeeded pods")
            for podRef in active { deleteObject(podRef, policy: .background, grace: nil) }
            terminating += active.count
            active = []
            if terminating == 0 {
                setCondition(
                    &conditions, "Complete", reason: "CompletionsReached",
                    message: "Reached expected number of succeeded pods")
                status["completionTime"] = .string(Timestamp.now())
                scheduleTTL(uid, spec)
            }
        } else {
            let wanted = max(0, min(parallelism, completions - succeeded) - active.count - terminating)
            if wanted > 0 {
                let retryAt = runtime.lastFailure.map { $0 + scaled(configuration.podRetryDelay) }
                if let retryAt, retryAt > now {
                    timers.push(retryAt, .syncJob(uid))
                } else {
                    for _ in 0..<wanted {
                        if let podUID = createPod(for: job) {
                            created += 1
                            runtime.tracked.insert(podUID)
                        }
                    }
                }
            }
        }
        status["active"] = active.count + created == 0 ? nil : .int(Int64(active.count + created))
        status["ready"] = .int(Int64(ready))
        status["terminating"] = .int(Int64(terminating))
        status["succeeded"] = succeeded == 0 ? nil : .int(Int64(succeeded))
        status["failed"] = failed == 0 ? nil : .int(Int64(failed))
        status["uncountedTerminatedPods"] = [:]
        status["conditions"] = conditions.isEmpty ? nil : .array(conditions)
        jobs[uid] = runtime
        writeJobStatus(ref, job, status)
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
