import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What a simulated container does. Generic containers follow `sim.c2d.io/*` annotations (first main container
/// only) or else their command: `sleep N` runs N seconds, `exit N` exits N, `echo x` logs x, `echo x > PATH` writes a
/// file (into the volume when steps run for real; those before the first `sleep` at the start, the others at the
/// end), `exec >>FILE 2>&1` sends what follows to FILE instead of the log,
/// `head -c <N>M /dev/zero | tail` holds N MiB (above the memory limit: OOMKilled); an image whose registry host ends
/// in `.invalid` (a reserved TLD, so no real registry answers) never pulls.
///
/// c2d's own steps (`c2d pod …`) are simulated by what they do to each other through the shared volume: `configure`
/// marks the inputs ready, `await-inputs` waits for that, the `signal-end` sidecar marks the algorithm's end when it
/// is stopped, `relay-log` runs until stopped, and `publish` waits for that mark (or SIGTERM: then it uploads the logs
/// only) before it ends. With a step runner they run for real instead.
struct ContainerPlan: Sendable {
    enum Behavior: Sendable, Equatable {
        case run, configure, awaitInputs, signalEnd, relayLog, publish, process
    }

    struct FileWrite: Sendable {
        var path: String
        var text: String
        var append: Bool
    }

    var behavior: Behavior = .run
    var duration: Double?
    var exitCode = 0
    var oom = false
    var imagePullFails = false
    var logs: [String] = []
    /// `exec >>FILE 2>&1`: the log goes to FILE (a path inside the container).
    var redirect: String?
    var writes: [FileWrite] = []
    /// How many of `logs` and `writes` come before the script's first `sleep`: they happen when the container
    /// starts (a follower sees them while it runs), the rest when it ends.
    var earlyLogs = 0
    var earlyWrites = 0
    var words: [String] = []
    /// The `lifecycle.postStart.exec` command, if any.
    var postStart: [String]?

    static let durationAnnotation = "sim.c2d.io/duration"
    static let exitCodeAnnotation = "sim.c2d.io/exit-code"
    static let oomAnnotation = "sim.c2d.io/oom"
    static let imagePullAnnotation = "sim.c2d.io/image-pull"
    static let logsAnnotation = "sim.c2d.io/logs"

    /// `annotations` are the pod's: `sim.c2d.io/<what>.<container>` applies to that container, plain
    /// `sim.c2d.io/<what>` to the first main container (`isFirstMain`).
    init(container: JSON, annotations podAnnotations: [String: String]?, isFirstMain: Bool, runsReal: Bool) {
        let name = container["name"]?.string ?? ""
        var annotations: [String: String]?
        for (key, value) in podAnnotations ?? [:] where key.hasPrefix("sim.c2d.io/") {
            if key.hasSuffix("." + name) {
                annotations = annotations ?? [:]
                annotations?[String(key.dropLast(name.count + 1))] = value
            } else if isFirstMain, !key.dropFirst("sim.c2d.io/".count).contains(".") {
                annotations = annotations ?? [:]
                if annotations?[key] == nil { annotations?[key] = value }
            }
        }
        words = ((container["command"]?.array ?? []) + (container["args"]?.array ?? [])).compactMap(\.string)
        postStart = container[["lifecycle", "postStart", "exec", "command"]]?.array?.compactMap(\.string)
        if let first = words.first, first == "c2d" || first.hasSuffix("/c2d"), words.count >= 3, words[1] == "pod" {
            if runsReal {
                behavior = .process
            } else {
                switch words[2] {
                case "configure": behavior = .configure
                case "await-inputs": behavior = .awaitInputs
                case "signal-end": behavior = .signalEnd
                case "relay-log": behavior = .relayLog
                case "publish": behavior = .publish
                default: behavior = .run
                }
            }
        }
        var script: [String] = []
        if behavior == .run {
            if words.first.map({ $0 == "sleep" || $0.hasSuffix("/sleep") }) == true, words.count > 1 {
                script = ["sleep " + words[1]]
            } else if words.count >= 3, words[0].hasSuffix("sh"), words[1] == "-c" {
                script = words[2].split(whereSeparator: { $0 == ";" || $0 == "\n" }).flatMap {
                    $0.components(separatedBy: "&&")
                }.map { String($0).trimmingSpaces() }
            }
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
            } else if statement.hasPrefix("exec "), let target = Self.redirectTarget(statement) {
                redirect = target
            } else if statement.hasPrefix("echo ") {
                let (text, target, append) = Self.echo(String(statement.dropFirst(5)))
                if let target {
                    writes.append(FileWrite(path: target, text: text, append: append))
                    if duration == nil { earlyWrites = writes.count }
                } else {
                    logs.append(text)
                    if duration == nil { earlyLogs = logs.count }
                }
            }
        }
        if let annotations {
            if let text = annotations[Self.durationAnnotation], let seconds = Double(text) { duration = seconds }
            if let text = annotations[Self.exitCodeAnnotation], let code = Int(text) { exitCode = code }
            if annotations[Self.oomAnnotation] == "true" {
                oom = true
                exitCode = 137
            }
            if annotations[Self.imagePullAnnotation] == "fail" { imagePullFails = true }
            if let text = annotations[Self.logsAnnotation] {
                logs = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                if logs.last == "" { logs.removeLast() }
            }
        }
        if let image = container["image"]?.string, let host = image.split(separator: "/").first, image.contains("/"),
            host.hasSuffix(".invalid")
        {
            imagePullFails = true
        }
    }

    /// MiB held by `head -c <N>M /dev/zero | tail` (tail buffers its whole input), else nil.
    static func allocation(_ statement: String) -> Double? {
        guard statement.contains("/dev/zero"), statement.contains("tail"), let range = statement.range(of: "head -c ")
        else { return nil }
        let size = statement[range.upperBound...].prefix { !$0.isWhitespace }
        guard let unit = size.last, unit == "M" || unit == "G", let number = Double(size.dropLast()) else { return nil }
        return unit == "G" ? number * 1024 : number
    }

    /// The container's memory limit in MiB (`Mi`, `Gi`, `M`, `G` or bytes).
    static func memoryLimitMiB(_ container: JSON) -> Double? {
        guard let text = container[["resources", "limits", "memory"]]?.string else { return nil }
        let units: [(String, Double)] = [("Gi", 1024), ("Mi", 1), ("Ki", 1.0 / 1024), ("G", 953.674), ("M", 0.953674)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            return Double(text.dropLast(suffix.count)).map { $0 * factor }
        }
        return Double(text).map { $0 / 1_048_576 }
    }

    /// `exec >>FILE 2>&1` or `exec >FILE 2>&1`: FILE.
    static func redirectTarget(_ statement: String) -> String? {
        let words = statement.split(separator: " ").map(String.init)
        for word in words.dropFirst() where word.hasPrefix(">") && !word.hasPrefix(">&") {
            let target = word.drop { $0 == ">" }
            if !target.isEmpty { return String(target) }
        }
        return nil
    }

    /// `echo TEXT`, `echo TEXT > FILE`, `echo TEXT >> FILE`: the text, the file and whether it appends.
    static func echo(_ rest: String) -> (String, String?, Bool) {
        var text = rest.trimmingSpaces()
        var target: String?
        var append = false
        if let range = text.range(of: ">>") ?? text.range(of: ">") {
            append = text[range] == ">>"
            target = String(text[range.upperBound...]).trimmingSpaces()
            text = String(text[..<range.lowerBound]).trimmingSpaces()
        }
        if text.count >= 2, let first = text.first, first == "\"" || first == "'", text.last == first {
            text = String(text.dropFirst().dropLast())
        }
        return (text, target.flatMap { $0.isEmpty ? nil : $0 }, append)
    }
}

/// The kubelet's view of one container.
struct ContainerRuntime: Sendable {
    enum Kind: Sendable, Equatable {
        case initContainer, sidecar, main
    }

    enum Phase: Sendable, Equatable {
        /// Not started (`PodInitializing`, or a start problem in `waitingReason`).
        case waiting
        /// Being created; runs at `due`.
        case creating
        case running
        case terminated
    }

    var name: String
    var image: String
    var kind: Kind
    var plan: ContainerPlan
    var spec: JSON
    var phase: Phase = .waiting
    var waitingReason = "PodInitializing"
    var waitingMessage: String?
    /// A start problem that never resolves (image pull, configuration).
    var stuck = false
    var startedWall: Double = 0
    var runStart: ContinuousClock.Instant?
    var runSeconds: Double = 0
    /// When it next changes by itself (ends, or finishes stopping).
    var due: ContinuousClock.Instant?
    /// SIGTERM was sent.
    var signalled = false
    var restartCount = 0
    var lastTerminated: JSON?
    var terminated: JSON?
    var exitCode: Int?
    var processID: Int32?
    /// Its `postStart` hook runs: the kubelet starts no further container of the pod until it returned.
    var postStartRunning = false
    var hookProcessID: Int32?

    var isRunning: Bool { phase == .running }
    /// Running, with its `postStart` hook done (the status's `started`).
    var isStarted: Bool { phase == .running && !postStartRunning }
    var hasStarted: Bool { phase == .running || phase == .terminated }
}

/// The kubelet's view of one pod.
struct PodRuntime: Sendable {
    enum Stage: Sendable, Equatable {
        /// Not scheduled: waiting for its claims.
        case created
        case active
        /// Every container stopped; the phase is final.
        case finished
    }

    var stage: Stage = .created
    var containers: [ContainerRuntime]
    var restartPolicy: String
    /// Claims (`namespace/name`) the pod mounts, and the one mounted at `/data` (where c2d's steps coordinate).
    var claims: [String] = []
    var dataClaim: String?
    /// Volumes by name: the claim key, or nil for an emptyDir.
    var volumes: [String: String?] = [:]
    var deleting = false
    var failing = false
    var reason: String?
    var message: String?
    var startWall: Double = 0
    var podIP = ""
    var phase = "Pending"
}

extension Cluster {
    // MARK: Pod life

    func podCreated(_ uid: String, _ pod: JSON) {
        let runsReal = processes != nil
        let annotations = pod[["metadata", "annotations"]]?.stringMap
        var containers: [ContainerRuntime] = []
        for container in pod[["spec", "initContainers"]]?.array ?? [] {
            let sidecar = container["restartPolicy"]?.string == "Always"
            containers.append(
                ContainerRuntime(
                    name: container["name"]?.string ?? "", image: container["image"]?.string ?? "",
                    kind: sidecar ? .sidecar : .initContainer,
                    plan: ContainerPlan(
                        container: container, annotations: annotations, isFirstMain: false, runsReal: runsReal),
                    spec: container))
        }
        for (offset, container) in (pod[["spec", "containers"]]?.array ?? []).enumerated() {
            var runtime = ContainerRuntime(
                name: container["name"]?.string ?? "", image: container["image"]?.string ?? "", kind: .main,
                plan: ContainerPlan(
                    container: container, annotations: annotations, isFirstMain: offset == 0, runsReal: runsReal),
                spec: container)
            if !containers.contains(where: { $0.kind != .main }) { runtime.waitingReason = "ContainerCreating" }
            containers.append(runtime)
        }
        var runtime = PodRuntime(
            containers: containers, restartPolicy: pod[["spec", "restartPolicy"]]?.string ?? "Always")
        let namespace = pod[["metadata", "namespace"]]?.string ?? ""
        let name = pod[["metadata", "name"]]?.string ?? ""
        for volume in pod[["spec", "volumes"]]?.array ?? [] {
            let volumeName = volume["name"]?.string ?? ""
            var claim: String?
            if let claimName = volume[["persistentVolumeClaim", "claimName"]]?.string {
                claim = namespace + "/" + claimName
            } else if let template = volume[["ephemeral", "volumeClaimTemplate"]] {
                claim = namespace + "/" + name + "-" + volumeName
                createEphemeralClaim(pod: pod, uid: uid, volume: volumeName, template: template)
            }
            runtime.volumes[volumeName] = claim
            if let claim { runtime.claims.append(claim) }
        }
        for container in containers {
            for mount in container.spec["volumeMounts"]?.array ?? [] where mount["mountPath"]?.string == "/data" {
                if let volume = mount["name"]?.string, let claim = runtime.volumes[volume] ?? nil {
                    runtime.dataClaim = claim
                }
            }
        }
        pods[uid] = runtime
        schedule(after: scaled(configuration.schedulingDelay), .podStep(uid))
    }

    /// The ephemeral volume controller: the claim `<pod>-<volume>`, owned by the pod.
    func createEphemeralClaim(pod: JSON, uid: String, volume: String, template: JSON) {
        let namespace = pod[["metadata", "namespace"]]?.string ?? ""
        let podName = pod[["metadata", "name"]]?.string ?? ""
        var metadata = template["metadata"] ?? [:]
        metadata["name"] = .string(podName + "-" + volume)
        metadata["ownerReferences"] = [
            [
                "apiVersion": "v1", "kind": "Pod", "name": .string(podName), "uid": .string(uid), "controller": true,
                "blockOwnerDeletion": true,
            ]
        ]
        let claim: JSON = [
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata,
            "spec": template["spec"] ?? [:],
        ]
        _ = try? create(.persistentVolumeClaims, namespace: namespace, body: claim)
    }

    func claimCreated(_ claim: JSON) {
        let key = (claim[["metadata", "namespace"]]?.string ?? "") + "/" + (claim[["metadata", "name"]]?.string ?? "")
        for uid in claimWaiters.removeValue(forKey: key) ?? [] { schedule(after: .zero, .podStep(uid)) }
    }

    func claimRemoved(_ ref: ObjectRef) {
        markers[ref.key] = nil
        markerWaiters[ref.key] = nil
        if let processes { processes.removeDirectory(processes.claimDirectory(ref.key)) }
    }

    func podRemoved(_ uid: String, _ ref: ObjectRef) {
        guard let runtime = pods.removeValue(forKey: uid) else { return }
        for container in runtime.containers where container.isRunning {
            if let pid = container.processID { processes?.signal(pid, SIGKILL) }
            if let pid = container.hookProcessID { processes?.signal(pid, SIGKILL) }
        }
        for claim in runtime.claims {
            markerWaiters[claim]?.remove(uid)
            claimWaiters[claim]?.remove(uid)
            releaseClaimProtection(claim)
        }
        if let processes { processes.removeDirectory(processes.podDirectory(uid)) }
    }

    /// `kubernetes.io/pvc-protection`: a claim being deleted goes once no pod uses it.
    func releaseClaimProtection(_ claim: String) {
        let ref = ObjectRef(resource: ResourceType.persistentVolumeClaims.index, key: claim)
        guard let stored = object(ref), stored.deleting else { return }
        if pods.values.contains(where: { $0.claims.contains(claim) }) { return }
        var object = json(stored)
        let remaining = Self.finalizers(object).filter { $0 != Validation.claimProtection }
        guard remaining.count != Self.finalizers(object).count else { return }
        object[["metadata", "finalizers"]] = remaining.isEmpty ? nil : .array(remaining.map { .string($0) })
        commit(.persistentVolumeClaims, object, type: .modified)
        if remaining.isEmpty { remove(ref) }
    }

    /// Marks a claim bound once a pod using it is scheduled (as with `WaitForFirstConsumer`).
    func bind(_ claim: String) {
        let ref = ObjectRef(resource: ResourceType.persistentVolumeClaims.index, key: claim)
        guard let stored = object(ref), !stored.deleting else { return }
        var object = json(stored)
        guard object[["status", "phase"]]?.string != "Bound" else { return }
        object["status"] = [
            "phase": "Bound", "accessModes": object[["spec", "accessModes"]] ?? [],
            "capacity": ["storage": object[["spec", "resources", "requests", "storage"]] ?? "1Gi"],
        ]
        commit(.persistentVolumeClaims, object, type: .modified)
    }

    // MARK: Markers (c2d's simulated steps)

    func setMarker(_ claim: String?, _ marker: String) {
        guard let claim else { return }
        markers[claim, default: []].insert(marker)
        for uid in markerWaiters[claim] ?? [] { schedule(after: .zero, .podStep(uid)) }
    }

    func hasMarker(_ claim: String?, _ marker: String) -> Bool {
        guard let claim else { return false }
        return markers[claim]?.contains(marker) ?? false
    }

    // MARK: The kubelet loop

    /// Advances a pod: schedules it once its claims exist, runs init containers in order (native sidecars start and
    /// keep running), then the main containers; once those ended, stops the sidecars; then the phase is final.
    func podStep(_ uid: String) {
        guard var runtime = pods[uid], let ref = byUID[uid], let stored = object(ref) else { return }
        let pod = json(stored)
        let now = ContinuousClock.now
        if runtime.stage == .created {
            let missing = runtime.claims.filter {
                tables[ResourceType.persistentVolumeClaims.index].objects[$0] == nil
            }
            if let first = missing.first {
                for claim in missing { claimWaiters[claim, default: []].insert(uid) }
                if pod[["status", "conditions"]] == nil {
                    writePod(uid) { pod in
                        pod[["status", "conditions"]] = [
                            [
                                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                "message": .string(
                                    "persistentvolumeclaim \"\(first.split(separator: "/").last ?? "")\" not found"),
                                "lastProbeTime": nil, "lastTransitionTime": .string(Timestamp.now()),
                            ]
                        ]
                    }
                }
                pods[uid] = runtime
                return
            }
            runtime.stage = .active
            runtime.startWall = wallNow()
            runtime.podIP = "10.244.0.\(Int.random(in: 2...254, using: &random))"
            for claim in runtime.claims { bind(claim) }
            if let deadline = pod[["spec", "activeDeadlineSeconds"]]?.int {
                schedule(after: scaled(Double(deadline)), .podDeadline(uid))
            }
        }
        if runtime.stage == .active {
            advance(&runtime, uid: uid, pod: pod, now: now)
        }
        pods[uid] = runtime
        writeStatus(uid, runtime)
        if runtime.stage == .finished {
            if runtime.deleting { finishTermination(uid) }
            if let job = stored.controller { schedule(after: .zero, .syncJob(job)) }
            return
        }
        if let next = runtime.containers.compactMap(\.due).min() {
            timers.push(max(next, now), .podStep(uid))
        }
        if let job = stored.controller { schedule(after: .zero, .syncJob(job)) }
    }

    /// One step of a pod's life: containers whose time came move on, running ones notice the marks they wait for,
    /// the next containers are created in order, and a pod whose work is over stops what still runs and ends.
    func advance(_ runtime: inout PodRuntime, uid: String, pod: JSON, now: ContinuousClock.Instant) {
        let namespace = pod[["metadata", "namespace"]]?.string ?? ""
        fireDueContainers(&runtime, uid: uid, pod: pod, now: now)
        for index in runtime.containers.indices where runtime.containers[index].isRunning {
            watchMarkers(&runtime, index, uid: uid, now: now)
        }
        if !runtime.failing && !runtime.deleting {
            if startInitContainers(&runtime, namespace: namespace, now: now) && !runtime.failing {
                startMainContainers(&runtime, namespace: namespace, now: now)
            }
        }
        endIfOver(&runtime, now: now)
    }

    /// Containers whose time came: created ones start, running ones end, a failing pull backs off.
    private func fireDueContainers(_ runtime: inout PodRuntime, uid: String, pod: JSON, now: ContinuousClock.Instant) {
        for index in runtime.containers.indices {
            guard let due = runtime.containers[index].due, due <= now else { continue }
            runtime.containers[index].due = nil
            switch runtime.containers[index].phase {
            case .creating:
                start(&runtime, index, uid: uid, pod: pod, now: now)
            case .running:
                end(&runtime, index, uid: uid, pod: pod)
            case .waiting:
                if runtime.containers[index].stuck && runtime.containers[index].waitingReason == "ErrImagePull" {
                    runtime.containers[index].waitingReason = "ImagePullBackOff"
                    runtime.containers[index].waitingMessage =
                        "Back-off pulling image \"\(runtime.containers[index].image)\""
                }
            case .terminated:
                break
            }
        }
    }

    /// Init containers run one at a time, in order (a native sidecar only has to have started); returns whether
    /// all of them are done, so the main containers may start. A failed init container fails the pod.
    private func startInitContainers(
        _ runtime: inout PodRuntime, namespace: String, now: ContinuousClock.Instant
    ) -> Bool {
        for index in runtime.containers.indices where runtime.containers[index].kind != .main {
            let container = runtime.containers[index]
            switch container.kind {
            case .initContainer:
                if container.phase == .terminated {
                    if container.exitCode == 0 { continue }
                    runtime.failing = true
                } else if container.phase == .waiting {
                    create(&runtime, index, namespace: namespace, now: now)
                }
            case .sidecar:
                if container.isStarted { continue }
                if container.isRunning { break }
                if container.phase == .waiting { create(&runtime, index, namespace: namespace, now: now) }
                if container.phase == .terminated { continue }
            case .main:
                continue
            }
            return false
        }
        return true
    }

    /// Main containers start together; one that ended and restarts (per the restart policy) backs off first.
    private func startMainContainers(_ runtime: inout PodRuntime, namespace: String, now: ContinuousClock.Instant) {
        for index in runtime.containers.indices where runtime.containers[index].kind == .main {
            let container = runtime.containers[index]
            if container.phase == .waiting && !container.stuck {
                create(&runtime, index, namespace: namespace, now: now)
            } else if container.phase == .terminated && restarts(runtime, container) {
                var restarted = container
                restarted.restartCount += 1
                restarted.lastTerminated = container.terminated
                restarted.terminated = nil
                restarted.exitCode = nil
                restarted.phase = .creating
                restarted.waitingReason = "CrashLoopBackOff"
                restarted.waitingMessage = "back-off restarting failed container"
                restarted.due = now + scaled(configuration.podRetryDelay)
                runtime.containers[index] = restarted
            }
        }
    }

    /// Once the main containers ended (or the pod fails or is deleted), stop what still runs — main containers
    /// first, sidecars after them — and when nothing runs, the pod's phase is final.
    private func endIfOver(_ runtime: inout PodRuntime, now: ContinuousClock.Instant) {
        let mains = runtime.containers.filter { $0.kind == .main }
        let mainsOver = mains.allSatisfy { $0.phase == .terminated && !restarts(runtime, $0) || !$0.hasStarted }
        let mainsEnded = mains.allSatisfy { $0.phase == .terminated && !restarts(runtime, $0) }
        guard runtime.failing || runtime.deleting || mainsEnded else { return }
        for index in runtime.containers.indices where runtime.containers[index].kind != .sidecar {
            if runtime.containers[index].isRunning { signal(&runtime, index, now: now) }
            if runtime.containers[index].phase == .creating { runtime.containers[index].phase = .waiting }
        }
        let othersStopped = runtime.containers.allSatisfy { $0.kind == .sidecar || !$0.isRunning }
        if othersStopped && mainsOver {
            for index in runtime.containers.indices where runtime.containers[index].kind == .sidecar {
                if runtime.containers[index].isRunning { signal(&runtime, index, now: now) }
                if runtime.containers[index].phase == .creating { runtime.containers[index].phase = .waiting }
            }
        }
        if runtime.containers.allSatisfy({ !$0.isRunning && $0.phase != .creating }) {
            let succeeded =
                !runtime.failing && !mains.isEmpty && mains.allSatisfy { $0.phase == .terminated && $0.exitCode == 0 }
            runtime.phase = succeeded ? "Succeeded" : "Failed"
            runtime.stage = .finished
        }
    }

    func restarts(_ runtime: PodRuntime, _ container: ContainerRuntime) -> Bool {
        guard container.kind == .main, !runtime.deleting, !runtime.failing, let code = container.exitCode else {
            return false
        }
        return runtime.restartPolicy == "Always" || (runtime.restartPolicy == "OnFailure" && code != 0)
    }

    /// Pulls the image and creates the container; it runs after the start delay. An image that does not pull shows
    /// `ErrImagePull`, then `ImagePullBackOff`, for good; an unresolvable Secret reference `CreateContainerConfigError`.
    func create(_ runtime: inout PodRuntime, _ index: Int, namespace: String, now: ContinuousClock.Instant) {
        var container = runtime.containers[index]
        guard !container.stuck else { return }
        if container.plan.imagePullFails {
            container.waitingReason = "ErrImagePull"
            container.waitingMessage = "failed to pull and unpack image \"\(container.image)\": not found"
            container.stuck = true
            container.due = now + scaled(configuration.containerStartDelay)
            runtime.containers[index] = container
            return
        }
        if let problem = environmentProblem(container.spec, namespace: namespace) {
            container.waitingReason = "CreateContainerConfigError"
            container.waitingMessage = problem
            container.stuck = true
            runtime.containers[index] = container
            return
        }
        container.phase = .creating
        container.waitingReason = container.restartCount > 0 ? "CrashLoopBackOff" : "ContainerCreating"
        container.due = now + scaled(configuration.containerStartDelay)
        runtime.containers[index] = container
    }

    /// A Secret reference that does not resolve, as the kubelet reports it; nil when the environment is fine.
    func environmentProblem(_ container: JSON, namespace: String) -> String? {
        for variable in container["env"]?.array ?? [] {
            guard let reference = variable[["valueFrom", "secretKeyRef"]] else { continue }
            if reference["optional"]?.bool == true { continue }
            let name = reference["name"]?.string ?? ""
            guard let secret = tables[ResourceType.secrets.index].objects[namespace + "/" + name].map(json) else {
                return "secret \"\(name)\" not found"
            }
            let key = reference["key"]?.string ?? ""
            if secret[["data", key]] == nil { return "couldn't find key \(key) in Secret \(namespace)/\(name)" }
        }
        return nil
    }

    func start(_ runtime: inout PodRuntime, _ index: Int, uid: String, pod: JSON, now: ContinuousClock.Instant) {
        var container = runtime.containers[index]
        container.phase = .running
        container.runStart = now
        container.startedWall = wallNow()
        let plan = container.plan
        switch plan.behavior {
        case .run, .configure:
            let duration = plan.duration.map { scaled($0) } ?? scaled(configuration.defaultPodDuration)
            container.runSeconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
            container.due = now + duration
            if plan.behavior == .run { writeFiles(plan, container: container, runtime: runtime, uid: uid, early: true) }
        case .awaitInputs, .publish, .signalEnd, .relayLog:
            // They run until a mark appears on the volume, or until stopped.
            container.runSeconds = 0
            container.due = nil
            if let claim = runtime.dataClaim { markerWaiters[claim, default: []].insert(uid) }
        case .process:
            let namespace = pod[["metadata", "namespace"]]?.string ?? ""
            let environment = processEnvironment(container, runtime: runtime, uid: uid, namespace: namespace)
            let name = container.name
            let result = processes?.start(plan.words, environment: environment, uid: uid, container: name) {
                [weak self] code in
                Task { await self?.processExited(uid, name, code) }
            }
            switch result {
            case .success(let pid)?:
                container.processID = pid
            case .failure(let error)?:
                container.phase = .terminated
                container.exitCode = 128
                container.terminated = terminatedState(
                    container, exitCode: 128, reason: "StartError", message: "\(error)")
            case nil:
                break
            }
        }
        if container.isRunning, let hook = plan.postStart {
            startPostStart(&container, hook, runtime: runtime, uid: uid, pod: pod)
        }
        runtime.containers[index] = container
    }

    /// A `postStart` exec hook: c2d's own commands run for real in the container's environment when steps do (so a
    /// hook that waits for something really waits); anything else returns at once.
    func startPostStart(
        _ container: inout ContainerRuntime, _ hook: [String], runtime: PodRuntime, uid: String, pod: JSON
    ) {
        guard let processes, processes.runs(hook) else { return }
        let namespace = pod[["metadata", "namespace"]]?.string ?? ""
        let environment = processEnvironment(container, runtime: runtime, uid: uid, namespace: namespace)
        let name = container.name
        let result = processes.start(hook, environment: environment, uid: uid, container: name + ".postStart") {
            [weak self] code in
            Task { await self?.postStartExited(uid, name, code) }
        }
        if case .success(let pid) = result {
            container.postStartRunning = true
            container.hookProcessID = pid
        }
    }

    /// The hook returned: the container counts as started, or, when the hook failed, the kubelet kills it
    /// (`FailedPostStartHook`).
    func postStartExited(_ uid: String, _ name: String, _ code: Int) {
        guard var runtime = pods[uid], let index = runtime.containers.firstIndex(where: { $0.name == name }),
            runtime.containers[index].postStartRunning
        else { return }
        runtime.containers[index].postStartRunning = false
        runtime.containers[index].hookProcessID = nil
        if code != 0 {
            if let pid = runtime.containers[index].processID { processes?.signal(pid, SIGKILL) }
        }
        pods[uid] = runtime
        podStep(uid)
    }

    /// The environment of a real step: literal values and resolved Secret keys, with paths under the container's
    /// mounts moved to the directories that stand for them.
    func processEnvironment(
        _ container: ContainerRuntime, runtime: PodRuntime, uid: String, namespace: String
    ) -> [String: String] {
        guard let processes else { return [:] }
        var mounts: [(path: String, host: URL)] = []
        for mount in container.spec["volumeMounts"]?.array ?? [] {
            guard let name = mount["name"]?.string, let path = mount["mountPath"]?.string else { continue }
            var host =
                (runtime.volumes[name] ?? nil).map { processes.claimDirectory($0) }
                ?? processes.podDirectory(uid).appendingPathComponent("volumes").appendingPathComponent(name)
            if let subPath = mount["subPath"]?.string, !subPath.isEmpty { host.appendPathComponent(subPath) }
            try? FileManager.default.createDirectory(at: host, withIntermediateDirectories: true)
            mounts.append((path, host))
        }
        func remap(_ value: String) -> String {
            for mount in mounts.sorted(by: { $0.path.count > $1.path.count }) {
                if value == mount.path { return mount.host.path }
                if value.hasPrefix(mount.path + "/") { return mount.host.path + value.dropFirst(mount.path.count) }
            }
            return value
        }
        var environment: [String: String] = [:]
        for variable in container.spec["env"]?.array ?? [] {
            guard let name = variable["name"]?.string else { continue }
            if let value = variable["value"]?.string {
                environment[name] = remap(value)
            } else if let reference = variable[["valueFrom", "secretKeyRef"]],
                let secret = tables[ResourceType.secrets.index].objects[
                    namespace + "/" + (reference["name"]?.string ?? "")
                ].map(json),
                let encoded = secret[["data", reference["key"]?.string ?? ""]]?.string,
                let data = Data(base64Encoded: encoded)
            {
                environment[name] = String(decoding: data, as: UTF8.self)
            }
        }
        environment["C2D_TERMINATION_LOG"] = processes.terminationFile(uid, container.name).path
        return environment
    }

    func processExited(_ uid: String, _ name: String, _ code: Int) {
        guard var runtime = pods[uid], let index = runtime.containers.firstIndex(where: { $0.name == name }),
            runtime.containers[index].isRunning
        else { return }
        var message: String?
        if let processes, let data = FileManager.default.contents(atPath: processes.terminationFile(uid, name).path),
            !data.isEmpty
        {
            message = String(decoding: data.prefix(4096), as: UTF8.self)
        }
        var container = runtime.containers[index]
        if let hook = container.hookProcessID { processes?.signal(hook, SIGKILL) }
        container.postStartRunning = false
        container.hookProcessID = nil
        container.phase = .terminated
        container.exitCode = code
        container.processID = nil
        container.terminated = terminatedState(
            container, exitCode: code, reason: code == 0 ? "Completed" : "Error", message: message)
        runtime.containers[index] = container
        pods[uid] = runtime
        podStep(uid)
    }

    func watchMarkers(_ runtime: inout PodRuntime, _ index: Int, uid: String, now: ContinuousClock.Instant) {
        var container = runtime.containers[index]
        guard container.due == nil else { return }
        let claim = runtime.dataClaim
        switch container.plan.behavior {
        case .awaitInputs:
            if hasMarker(claim, "configure-failed") {
                container.plan.exitCode = 1
                container.due = now
            } else if hasMarker(claim, "configured") {
                container.due = now
            }
        case .publish:
            if hasMarker(claim, "algorithm-ended") {
                container.due = now + scaled(configuration.defaultPodDuration)
            }
        default:
            return
        }
        runtime.containers[index] = container
    }

    /// SIGTERM: c2d's steps finish what they do on it; anything else stops after the termination delay with 143.
    func signal(_ runtime: inout PodRuntime, _ index: Int, now: ContinuousClock.Instant) {
        var container = runtime.containers[index]
        guard container.isRunning, !container.signalled else { return }
        container.signalled = true
        if let pid = container.processID {
            processes?.signal(pid, SIGTERM)
        } else {
            container.due = now + scaled(configuration.podTerminationDelay)
        }
        runtime.containers[index] = container
    }

    /// The container's own end (or its end after SIGTERM).
    func end(_ runtime: inout PodRuntime, _ index: Int, uid: String, pod: JSON) {
        var container = runtime.containers[index]
        guard container.isRunning, container.processID == nil else { return }
        let plan = container.plan
        var code = plan.exitCode
        var reason = code == 0 ? "Completed" : "Error"
        var message: String?
        switch plan.behavior {
        case .run:
            if container.signalled {
                code = 143
                reason = "Error"
            } else if plan.oom {
                code = 137
                reason = "OOMKilled"
            }
            writeFiles(plan, container: container, runtime: runtime, uid: uid, early: false)
        case .configure:
            if container.signalled {
                code = 143
                reason = "Error"
            } else {
                setMarker(runtime.dataClaim, code == 0 ? "configured" : "configure-failed")
            }
        case .awaitInputs:
            if container.signalled {
                code = 143
                reason = "Error"
            } else if code != 0 {
                message = "the configure step failed; the algorithm does not run"
            }
        case .signalEnd:
            setMarker(runtime.dataClaim, "algorithm-ended")
            code = 0
            reason = "Completed"
        case .relayLog, .publish:
            code = 0
            reason = "Completed"
        case .process:
            return
        }
        if let claim = runtime.dataClaim { markerWaiters[claim]?.remove(uid) }
        container.phase = .terminated
        container.exitCode = code
        container.terminated = terminatedState(container, exitCode: code, reason: reason, message: message)
        runtime.containers[index] = container
    }

    /// In step-runner mode a simulated container's `echo … > FILE` and redirected log land in the volume: those
    /// before the script's first `sleep` when it starts (`early`), the others when it ends.
    func writeFiles(
        _ plan: ContainerPlan, container: ContainerRuntime, runtime: PodRuntime, uid: String, early: Bool
    ) {
        guard let processes else { return }
        func host(_ path: String) -> URL? {
            var best: (length: Int, url: URL)?
            for mount in container.spec["volumeMounts"]?.array ?? [] {
                guard let mountPath = mount["mountPath"]?.string, let name = mount["name"]?.string,
                    path == mountPath || path.hasPrefix(mountPath + "/"), mountPath.count > (best?.length ?? -1)
                else { continue }
                var url =
                    (runtime.volumes[name] ?? nil).map { processes.claimDirectory($0) }
                    ?? processes.podDirectory(uid).appendingPathComponent("volumes").appendingPathComponent(name)
                if let subPath = mount["subPath"]?.string, !subPath.isEmpty { url.appendPathComponent(subPath) }
                let rest = path.dropFirst(mountPath.count).drop { $0 == "/" }
                if !rest.isEmpty { url.appendPathComponent(String(rest)) }
                best = (mountPath.count, url)
            }
            return best?.url
        }
        func write(_ text: String, to url: URL, append: Bool) {
            try? FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            let data = Data((text + "\n").utf8)
            if append, let handle = try? FileHandle(forWritingTo: url) {
                handle.seekToEndOfFile()
                handle.write(data)
                try? handle.close()
            } else {
                try? data.write(to: url)
            }
        }
        let writes = early ? plan.writes.prefix(plan.earlyWrites) : plan.writes.dropFirst(plan.earlyWrites)
        for file in writes {
            if let url = host(file.path) { write(file.text, to: url, append: file.append) }
        }
        let logs = early ? plan.logs.prefix(plan.earlyLogs) : plan.logs.dropFirst(plan.earlyLogs)
        if let redirect = plan.redirect, let url = host(redirect), !logs.isEmpty {
            write(logs.joined(separator: "\n"), to: url, append: true)
        }
    }

    func terminatedState(_ container: ContainerRuntime, exitCode: Int, reason: String, message: String?) -> JSON {
        var state: JSON = [
            "exitCode": .int(Int64(exitCode)), "reason": .string(reason),
            "startedAt": .string(Timestamp.format(container.startedWall > 0 ? container.startedWall : wallNow())),
            "finishedAt": .string(Timestamp.now()),
            "containerID": .string("containerd://" + String(repeating: "c", count: 64)),
        ]
        if let message, !message.isEmpty { state["message"] = .string(message) }
        return state
    }

    /// `activeDeadlineSeconds` passed: the kubelet stops every container and fails the pod.
    func podDeadlinePassed(_ uid: String) {
        guard var runtime = pods[uid], runtime.stage == .active, !runtime.failing else { return }
        runtime.failing = true
        runtime.reason = "DeadlineExceeded"
        runtime.message = "Pod was active on the node longer than the specified deadline"
        pods[uid] = runtime
        podStep(uid)
    }

    /// A graceful deletion: the kubelet stops the containers (SIGTERM, main containers first), then the pod object
    /// goes away; after the grace period whatever still runs is killed.
    func beginTermination(_ uid: String) {
        guard var runtime = pods[uid] else {
            schedule(after: .zero, .podTerminated(uid))
            return
        }
        runtime.deleting = true
        pods[uid] = runtime
        if runtime.stage == .created {
            runtime.stage = .finished
            pods[uid] = runtime
            finishTermination(uid)
            return
        }
        let grace =
            byUID[uid].flatMap { object($0).map(json)?[["metadata", "deletionGracePeriodSeconds"]]?.int } ?? 30
        schedule(after: scaled(Double(max(grace, 0))) + scaled(configuration.podTerminationDelay), .podTerminated(uid))
        podStep(uid)
    }

    /// The end of a deletion: kill what still runs, write the final state, remove the object.
    func finishTermination(_ uid: String) {
        guard let ref = byUID[uid], let stored = object(ref), stored.deleting else { return }
        if var runtime = pods[uid], runtime.stage != .finished {
            for index in runtime.containers.indices where runtime.containers[index].isRunning {
                if let pid = runtime.containers[index].processID { processes?.signal(pid, SIGKILL) }
                var container = runtime.containers[index]
                container.phase = .terminated
                container.exitCode = 137
                container.processID = nil
                container.terminated = terminatedState(container, exitCode: 137, reason: "Error", message: nil)
                runtime.containers[index] = container
            }
            for index in runtime.containers.indices where runtime.containers[index].phase == .creating {
                runtime.containers[index].phase = .waiting
            }
            runtime.phase = "Failed"
            runtime.stage = .finished
            pods[uid] = runtime
            writeStatus(uid, runtime)
        }
        guard let current = object(ref) else { return }
        let pod = json(current)
        let finalizers = Self.finalizers(pod).filter { $0 != "foregroundDeletion" }
        if finalizers.isEmpty {
            if Self.finalizers(pod).contains("foregroundDeletion") {
                processForeground(uid)
            } else {
                remove(ref)
            }
        }
    }

    // MARK: Status

    func writePod(_ uid: String, _ change: (inout JSON) -> Void) {
        guard let ref = byUID[uid], let stored = object(ref) else { return }
        var pod = json(stored)
        let before = pod
        change(&pod)
        guard pod != before else { return }
        commit(.pods, pod, type: .modified)
    }

    func writeStatus(_ uid: String, _ runtime: PodRuntime) {
        guard runtime.stage != .created else { return }
        writePod(uid) { pod in
            var status = pod["status"] ?? [:]
            let previousConditions = status["conditions"]?.array ?? []
            pod[["spec", "nodeName"]] = .string(Self.nodeName)
            let started = runtime.containers.contains { $0.kind == .main && $0.hasStarted }
            status["phase"] = .string(runtime.stage == .finished ? runtime.phase : started ? "Running" : "Pending")
            status["hostIP"] = "10.0.0.10"
            status["hostIPs"] = [["ip": "10.0.0.10"]]
            status["podIP"] = .string(runtime.podIP)
            status["podIPs"] = [["ip": .string(runtime.podIP)]]
            if status["startTime"] == nil { status["startTime"] = .string(Timestamp.format(runtime.startWall)) }
            if let reason = runtime.reason { status["reason"] = .string(reason) }
            if let message = runtime.message { status["message"] = .string(message) }
            let inits = runtime.containers.filter { $0.kind != .main }
            let mains = runtime.containers.filter { $0.kind == .main }
            let initialized = inits.allSatisfy {
                $0.kind == .sidecar
                    ? ($0.isStarted || $0.phase == .terminated) : ($0.phase == .terminated && $0.exitCode == 0)
            }
            let ready =
                runtime.stage != .finished && mains.allSatisfy(\.isRunning)
                && inits.allSatisfy { $0.kind != .sidecar || $0.isStarted }
            status["conditions"] = Self.conditions(
                previous: previousConditions, initialized: initialized, ready: ready,
                notReady: runtime.stage == .finished ? "PodCompleted" : "ContainersNotReady",
                unready: mains.filter { !$0.isRunning }.map(\.name))
            if !inits.isEmpty {
                status["initContainerStatuses"] = .array(inits.map { Self.containerStatus($0, pod: pod) })
            }
            status["containerStatuses"] = .array(mains.map { Self.containerStatus($0, pod: pod) })
            pod["status"] = status
        }
    }

    static func conditions(
        previous: [JSON], initialized: Bool, ready: Bool, notReady: String, unready: [String]
    ) -> JSON {
        func condition(_ type: String, _ value: Bool, _ reason: String? = nil, _ message: String? = nil) -> JSON {
            let old = previous.first { $0["type"]?.string == type }
            let changed = old?["status"]?.string != (value ? "True" : "False")
            var condition: JSON = [
                "type": .string(type), "status": value ? "True" : "False", "lastProbeTime": nil,
                "lastTransitionTime": changed ? .string(Timestamp.now()) : old?["lastTransitionTime"] ?? nil,
            ]
            if let reason, !value { condition["reason"] = .string(reason) }
            if let message, !value { condition["message"] = .string(message) }
            return condition
        }
        let message = "containers with unready status: [\(unready.joined(separator: " "))]"
        return [
            condition("PodReadyToStartContainers", true),
            condition("Initialized", initialized, "ContainersNotInitialized"),
            condition("Ready", ready, notReady, notReady == "ContainersNotReady" ? message : nil),
            condition("ContainersReady", ready, notReady, notReady == "ContainersNotReady" ? message : nil),
            condition("PodScheduled", true),
        ]
    }

    static func containerStatus(_ container: ContainerRuntime, pod: JSON) -> JSON {
        var state: JSON
        switch container.phase {
        case .waiting, .creating:
            var waiting: JSON = ["reason": .string(container.waitingReason)]
            if let message = container.waitingMessage { waiting["message"] = .string(message) }
            state = ["waiting": waiting]
        case .running:
            state = ["running": ["startedAt": .string(Timestamp.format(container.startedWall))]]
        case .terminated:
            state = ["terminated": container.terminated ?? ["exitCode": 0]]
        }
        var status: JSON = [
            "name": .string(container.name), "image": .string(container.image), "imageID": "",
            "ready": .bool(container.isStarted), "restartCount": .int(Int64(container.restartCount)),
            "started": .bool(container.isStarted), "state": state,
            "lastState": container.lastTerminated.map { ["terminated": $0] } ?? [:],
        ]
        if container.hasStarted {
            status["imageID"] = .string(
                "docker.io/library/\(container.image)@sha256:" + String(repeating: "0", count: 64))
            status["containerID"] = .string("containerd://" + String(repeating: "c", count: 64))
        }
        return status
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
        let pod = json(stored)
        let mains = (pod[["spec", "containers"]]?.array ?? []).compactMap { $0["name"]?.string }
        let inits = (pod[["spec", "initContainers"]]?.array ?? []).compactMap { $0["name"]?.string }
        let chosen: String
        if let container, !container.isEmpty {
            guard mains.contains(container) || inits.contains(container) else {
                throw APIStatus.badRequest("container \(container) is not valid for pod \(name)")
            }
            chosen = container
        } else if mains.count == 1 && inits.isEmpty {
            chosen = mains[0]
        } else {
            var message =
                "a container name must be specified for pod \(name), choose one of: [\(mains.joined(separator: " "))]"
            if !inits.isEmpty { message += " or one of the init containers: [\(inits.joined(separator: " "))]" }
            throw APIStatus.badRequest(message)
        }
        guard let runtime = pods[stored.uid], let box = runtime.containers.first(where: { $0.name == chosen }) else {
            return LogChunk(lines: [], finished: true)
        }
        if !box.hasStarted && box.restartCount == 0 {
            let why = box.plan.imagePullFails ? "trying and failing to pull image" : box.waitingReason
            throw APIStatus.badRequest("container \"\(chosen)\" in pod \"\(name)\" is waiting to start: \(why)")
        }
        let finished = box.phase == .terminated
        if let processes,
            box.plan.behavior == .process
                || FileManager.default.fileExists(
                    atPath: processes.logFile(stored.uid, chosen).path)
        {
            let text = (try? String(contentsOf: processes.logFile(stored.uid, chosen), encoding: .utf8)) ?? ""
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.last == "" { lines.removeLast() }
            let start = min(index, lines.count)
            return LogChunk(
                lines: lines[start...].map { (box.startedWall, $0) }, finished: finished)
        }
        let lines = box.plan.redirect == nil ? box.plan.logs : []
        var chunk = LogChunk(lines: [], finished: finished)
        let elapsed = box.runStart.map { ContinuousClock.now - $0 } ?? .zero
        let elapsedSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        var offset = index
        while offset < lines.count {
            // Lines appear evenly over the run, so a follower sees them arrive.
            let at = lines.count <= 1 ? 0 : box.runSeconds * Double(offset) / Double(lines.count)
            guard finished || at <= elapsedSeconds else { break }
            chunk.lines.append((box.startedWall + at, lines[offset]))
            offset += 1
        }
        if offset < lines.count { chunk.finished = false }
        return chunk
    }
}
