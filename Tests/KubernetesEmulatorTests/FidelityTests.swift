import AsyncHTTPClient
import Foundation
import NIOHTTP1
import Testing

@testable import KubernetesEmulator

/// What the emulator must do as a real API server and kubelet do, for the parts c2d relies on.
@Suite("Emulator fidelity")
struct FidelityTests {
    @Test("a watch from before the server's window (resourceVersion 1) answers 410; from the list's version it works")
    func watchWindow() async throws {
        try await Harness.with { h in
            #expect(try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"one"}}"#).status == 201)
            let events = try await h.watch(Harness.secrets + "?watch=true&resourceVersion=1") { _ in false }
            #expect(events.count == 1)
            #expect(events.first?["type"] == "ERROR")
            #expect(events.first?[["object", "code"]] == 410)
            #expect(events.first?[["object", "reason"]] == "Expired")
            let list = try await h.get(Harness.secrets)
            let version = list[["metadata", "resourceVersion"]]?.string ?? ""
            #expect((UInt64(version) ?? 0) > 1)
            let later = Task {
                try await h.watch(Harness.secrets + "?watch=true&resourceVersion=\(version)") { $0.count >= 1 }
            }
            try await Task.sleep(for: .milliseconds(100))
            #expect(try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"two"}}"#).status == 201)
            let seen = try await later.value
            #expect(seen.first?["type"] == "ADDED")
            #expect(seen.first?[["object", "metadata", "name"]] == "two")
        }
    }

    @Test("continue pages show the collection as of the first page, until the version is compacted (410)")
    func consistentPages() async throws {
        try await Harness.with { h in
            for index in 10..<19 {
                let body = #"{"metadata":{"name":"s-\#(index)","labels":{"v":"1"}}}"#
                #expect(try await h.call(.POST, Harness.secrets, body).status == 201)
            }
            let first = try await h.get(Harness.secrets + "?limit=3")
            let version = first[["metadata", "resourceVersion"]]
            var token = first[["metadata", "continue"]]?.string
            var names = (first["items"]?.array ?? []).compactMap { $0[["metadata", "name"]]?.string }
            // After the first page: one listed later is changed, one deleted, one created in the middle.
            let patched = try await h.call(
                .PATCH, Harness.secrets + "/s-15", #"{"metadata":{"labels":{"v":"2"}}}"#,
                contentType: "application/merge-patch+json")
            #expect(patched.status == 200)
            #expect(try await h.call(.DELETE, Harness.secrets + "/s-16").status == 200)
            #expect(try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"s-155"}}"#).status == 201)
            var labels: [String: String] = [:]
            while let next = token {
                let page = try await h.get(Harness.secrets + "?limit=3&continue=" + next)
                #expect(page[["metadata", "resourceVersion"]] == version, "every page is the first page's version")
                for item in page["items"]?.array ?? [] {
                    let name = item[["metadata", "name"]]?.string ?? ""
                    names.append(name)
                    labels[name] = item[["metadata", "labels", "v"]]?.string
                }
                token = page[["metadata", "continue"]]?.string
            }
            #expect(names == (10..<19).map { "s-\($0)" }, "the snapshot, not the current state: \(names)")
            #expect(labels["s-15"] == "1")
            // A fresh list shows the present.
            let now = try await h.get(Harness.secrets)
            let current = (now["items"]?.array ?? []).compactMap { $0[["metadata", "name"]]?.string }
            #expect(current.contains("s-155") && !current.contains("s-16"))
            // Once the history is compacted past the snapshot, its continuation answers 410 Expired.
            let stale = try await h.get(Harness.secrets + "?limit=3")
            #expect(try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"s-99"}}"#).status == 201)
            await h.emulator.compact()
            let expired = try await h.call(
                .GET, Harness.secrets + "?limit=3&continue=" + (stale[["metadata", "continue"]]?.string ?? ""))
            #expect(expired.status == 410)
        }
    }

    static func pod(
        _ name: String, initContainers: String, containers: String, volumes: String = "[]",
        annotations: String = "{}", restartPolicy: String = "Never"
    ) -> String {
        """
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "\(name)", "annotations": \(annotations)},
         "spec": {"restartPolicy": "\(restartPolicy)", "initContainers": \(initContainers),
                  "containers": \(containers), "volumes": \(volumes)}}
        """
    }

    func status(_ h: Harness, _ pod: String, _ group: String, _ container: String) async throws -> JSON? {
        let object = try await h.get(Harness.pods + "/" + pod)
        return object[["status", group]]?.array?.first { $0["name"]?.string == container }
    }

    @Test("init containers run in order, a native sidecar runs beside the main container and stops after it")
    func initAndSidecar() async throws {
        try await Harness.with { h in
            let body = Self.pod(
                "p",
                initContainers: """
                    [{"name": "first", "image": "busybox", "command": ["sh", "-c", "echo first; sleep 0.2"]},
                     {"name": "side", "image": "busybox", "restartPolicy": "Always", "command": ["sleep", "3600"]}]
                    """,
                containers: """
                    [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo main; sleep 0.3; exit 3"]}]
                    """)
            #expect(try await h.call(.POST, Harness.pods, body).status == 201)
            // While the first init container runs, nothing else started.
            try await h.eventually("first runs") {
                try await status(h, "p", "initContainerStatuses", "first")?[["state", "running"]] != nil
            }
            #expect(
                try await status(h, "p", "containerStatuses", "main")?[["state", "waiting", "reason"]]
                    == "PodInitializing")
            #expect(try await h.get(Harness.pods + "/p")[["status", "phase"]] == "Pending")
            // Then the main container runs next to the sidecar.
            try await h.eventually("main runs") {
                try await status(h, "p", "containerStatuses", "main")?[["state", "running"]] != nil
            }
            #expect(
                try await status(h, "p", "initContainerStatuses", "first")?[["state", "terminated", "exitCode"]] == 0)
            #expect(try await status(h, "p", "initContainerStatuses", "side")?[["state", "running"]] != nil)
            #expect(try await h.get(Harness.pods + "/p")[["status", "phase"]] == "Running")
            // The main container's end stops the sidecar; the phase follows the main container alone.
            try await h.eventually("pod ends") {
                try await h.get(Harness.pods + "/p")[["status", "phase"]]?.string == "Failed"
            }
            #expect(try await status(h, "p", "containerStatuses", "main")?[["state", "terminated", "exitCode"]] == 3)
            #expect(try await status(h, "p", "initContainerStatuses", "side")?[["state", "terminated"]] != nil)
            // Logs per container: the name is required and selects the container.
            let unnamed = try await h.call(.GET, Harness.pods + "/p/log")
            #expect(unnamed.status == 400)
            #expect(unnamed.text.contains("choose one of: [main] or one of the init containers: [first side]"))
            #expect(try await h.call(.GET, Harness.pods + "/p/log?container=first").text == "first\n")
            #expect(try await h.call(.GET, Harness.pods + "/p/log?container=main").text == "main\n")
        }
    }

    @Test("a failed init container fails the pod; the main container never starts")
    func initFailure() async throws {
        try await Harness.with { h in
            let body = Self.pod(
                "q", initContainers: #"[{"name": "setup", "image": "busybox", "command": ["sh", "-c", "exit 31"]}]"#,
                containers: #"[{"name": "main", "image": "busybox", "command": ["sleep", "1"]}]"#)
            #expect(try await h.call(.POST, Harness.pods, body).status == 201)
            try await h.eventually("pod fails") {
                try await h.get(Harness.pods + "/q")[["status", "phase"]]?.string == "Failed"
            }
            #expect(
                try await status(h, "q", "initContainerStatuses", "setup")?[["state", "terminated", "exitCode"]] == 31)
            #expect(try await status(h, "q", "containerStatuses", "main")?[["state", "waiting"]] != nil)
            let log = try await h.call(.GET, Harness.pods + "/q/log?container=main")
            #expect(log.status == 400)
        }
    }

    @Test("an ephemeral volume's claim is created for the pod and goes with it; a missing claim keeps a pod Pending")
    func volumes() async throws {
        try await Harness.with { h in
            let ephemeral = """
                [{"name": "data", "ephemeral": {"volumeClaimTemplate": {"metadata": {"labels": {"a": "b"}},
                  "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]
                """
            let owner = Self.pod(
                "owner", initContainers: "[]",
                containers:
                    #"[{"name": "main", "image": "busybox", "command": ["sleep", "0.3"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]"#,
                volumes: ephemeral)
            // A second pod mounting the claim by name waits until it exists.
            let follower = Self.pod(
                "follower", initContainers: "[]",
                containers:
                    #"[{"name": "main", "image": "busybox", "command": ["sleep", "0.1"], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]"#,
                volumes: #"[{"name": "data", "persistentVolumeClaim": {"claimName": "owner-data"}}]"#)
            #expect(try await h.call(.POST, Harness.pods, follower).status == 201)
            try await h.eventually("follower unschedulable") {
                let condition = try await h.get(Harness.pods + "/follower")[["status", "conditions"]]?.array?.first
                return condition?["reason"]?.string == "Unschedulable"
            }
            #expect(try await h.call(.POST, Harness.pods, owner).status == 201)
            let claimPath = "/api/v1/namespaces/default/persistentvolumeclaims/owner-data"
            let claim = try await h.get(claimPath)
            #expect(claim[["metadata", "labels", "a"]] == "b")
            #expect(claim[["metadata", "ownerReferences"]]?.array?.first?["kind"] == "Pod")
            #expect(claim[["metadata", "finalizers"]] == ["kubernetes.io/pvc-protection"])
            try await h.eventually("both pods end") {
                let a = try await h.get(Harness.pods + "/owner")[["status", "phase"]]?.string
                let b = try await h.get(Harness.pods + "/follower")[["status", "phase"]]?.string
                return a == "Succeeded" && b == "Succeeded"
            }
            #expect(try await h.get(claimPath)[["status", "phase"]] == "Bound")
            // Deleting the owner pod collects its claim (once no pod uses it: pvc-protection).
            #expect(try await h.call(.DELETE, Harness.pods + "/owner").status == 200)
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await h.call(.GET, claimPath).status == 200, "the follower still uses it")
            #expect(try await h.call(.DELETE, Harness.pods + "/follower").status == 200)
            try await h.eventually("claim collected") { try await h.call(.GET, claimPath).status == 404 }
        }
    }

    @Test("init containers and native sidecars are validated like the real API server does")
    func validation() async throws {
        try await Harness.with { h in
            let sidecarOnMain = Self.pod(
                "bad", initContainers: "[]",
                containers: #"[{"name": "main", "image": "busybox", "restartPolicy": "Always"}]"#)
            let refused = try await h.call(.POST, Harness.pods, sidecarOnMain)
            #expect(refused.status == 422)
            #expect(refused.text.contains("may not be set for non-init containers"))
            let duplicate = Self.pod(
                "dup", initContainers: #"[{"name": "x", "image": "busybox"}]"#,
                containers: #"[{"name": "x", "image": "busybox"}]"#)
            #expect(try await h.call(.POST, Harness.pods, duplicate).status == 422)
            let unknownVolume = Self.pod(
                "vol", initContainers: "[]",
                containers:
                    #"[{"name": "m", "image": "busybox", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]"#)
            #expect(try await h.call(.POST, Harness.pods, unknownVolume).status == 422)
        }
    }
}
