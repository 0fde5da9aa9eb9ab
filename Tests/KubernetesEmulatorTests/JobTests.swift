import AsyncHTTPClient
import Foundation
import NIOHTTP1
import Testing

@testable import KubernetesEmulator

@Suite("Job controller and simulated pods")
struct JobTests {
    @Test("exit 0: the pod succeeds and the Job completes")
    func succeeds() async throws {
        try await Harness.with { h in
            #expect(try await h.call(.POST, Harness.jobs, Harness.job("ok")).status == 201)
            let job = try await h.finishedJob("ok")
            #expect(h.condition(job, "Complete") != nil)
            #expect(h.condition(job, "SuccessCriteriaMet") != nil)
            #expect(job[["status", "succeeded"]] == 1)
            #expect(job[["status", "completionTime"]] != nil)
            #expect(job[["status", "startTime"]] != nil)
            let pods = try await h.pods(ofJob: "ok")
            #expect(pods.count == 1)
            let pod = pods.first ?? .null
            let name = pod[["metadata", "name"]]?.string ?? ""
            #expect(name.hasPrefix("ok-") && name.count == 8)
            #expect(pod[["status", "phase"]] == "Succeeded")
            #expect(pod[["metadata", "labels", "job-name"]] == "ok")
            #expect(pod[["metadata", "labels", "controller-uid"]] == job[["metadata", "uid"]])
            let owner = pod[["metadata", "ownerReferences"]]?.array?.first ?? .null
            #expect(owner["uid"] == job[["metadata", "uid"]])
            #expect(owner["controller"] == true && owner["blockOwnerDeletion"] == true)
            let state = pod[["status", "containerStatuses"]]?.array?.first?[["state", "terminated"]]
            #expect(state?["exitCode"] == 0)
            #expect(state?["reason"] == "Completed")
        }
    }

    @Test("exit 3 with backoffLimit 1: two failed pods, Job Failed with BackoffLimitExceeded")
    func backoff() async throws {
        try await Harness.with { h in
            let text = Harness.job("bad", command: ["sh", "-c", "echo working; exit 3"], backoffLimit: 1)
            #expect(try await h.call(.POST, Harness.jobs, text).status == 201)
            let job = try await h.finishedJob("bad")
            let failed = h.condition(job, "Failed")
            #expect(failed?["reason"] == "BackoffLimitExceeded")
            #expect(job[["status", "failed"]] == 2)
            let pods = try await h.pods(ofJob: "bad")
            #expect(pods.count == 2)
            for pod in pods {
                #expect(pod[["status", "phase"]] == "Failed")
                let state = pod[["status", "containerStatuses"]]?.array?.first?[["state", "terminated"]]
                #expect(state?["exitCode"] == 3)
                #expect(state?["reason"] == "Error")
            }
        }
    }

    @Test("OOM annotation: terminated OOMKilled with exit 137")
    func oom() async throws {
        try await Harness.with { h in
            let text = Harness.job("oom", annotations: ["sim.c2d.io/oom": "true"])
            #expect(try await h.call(.POST, Harness.jobs, text).status == 201)
            let job = try await h.finishedJob("oom")
            #expect(h.condition(job, "Failed")?["reason"] == "BackoffLimitExceeded")
            let state = try await h.pods(ofJob: "oom").first?[["status", "containerStatuses"]]?.array?.first?[[
                "state", "terminated",
            ]]
            #expect(state?["reason"] == "OOMKilled")
            #expect(state?["exitCode"] == 137)
        }
    }

    @Test("activeDeadlineSeconds: the running pod is killed and the Job fails with DeadlineExceeded")
    func deadline() async throws {
        try await Harness.with { h in
            let text = Harness.job("slow", command: ["sleep", "600"], extraSpec: #", "activeDeadlineSeconds": 1"#)
            #expect(try await h.call(.POST, Harness.jobs, text).status == 201)
            let job = try await h.finishedJob("slow")
            #expect(h.condition(job, "Failed")?["reason"] == "DeadlineExceeded")
            #expect(job[["status", "active"]] == nil)
            try await h.eventually("the killed pod is gone") { try await h.pods(ofJob: "slow").isEmpty }
        }
    }

    @Test("image pull failure: the pod stays Pending with ErrImagePull / ImagePullBackOff; logs answer 400")
    func imagePull() async throws {
        try await Harness.with { h in
            let text = Harness.job("pull", annotations: ["sim.c2d.io/image-pull": "fail"])
            #expect(try await h.call(.POST, Harness.jobs, text).status == 201)
            var pod: JSON = .null
            var reasons: Set<String> = []
            try await h.eventually("the pod reports ImagePullBackOff") {
                pod = try await h.pods(ofJob: "pull").first ?? .null
                if let reason = pod[["status", "containerStatuses"]]?.array?.first?[["state", "waiting", "reason"]]?
                    .string
                {
                    reasons.insert(reason)
                }
                return reasons.contains("ImagePullBackOff")
            }
            #expect(pod[["status", "phase"]] == "Pending")
            let name = pod[["metadata", "name"]]?.string ?? ""
            let logs = try await h.call(.GET, Harness.pods + "/\(name)/log")
            #expect(logs.status == 400)
            #expect(logs.json["message"]?.string?.contains("is waiting to start") == true)
            let job = try await h.get(Harness.jobs + "/pull")
            #expect(job[["status", "active"]] == 1)
        }
    }

    @Test("pod log follow streams lines until the container terminates")
    func logFollow() async throws {
        try await Harness.with { h in
            let text = Harness.job(
                "logs", annotations: ["sim.c2d.io/logs": "one\\ntwo\\nthree", "sim.c2d.io/duration": "0.6"])
            #expect(try await h.call(.POST, Harness.jobs, text).status == 201)
            var name = ""
            try await h.eventually("the pod runs") {
                let pod = try await h.pods(ofJob: "logs").first ?? .null
                name = pod[["metadata", "name"]]?.string ?? ""
                return pod[["status", "phase"]] == "Running"
            }
            let followed = try await h.call(.GET, Harness.pods + "/\(name)/log?follow=true&container=main")
            #expect(followed.status == 200)
            #expect(followed.text == "one\ntwo\nthree\n")
            let stamped = try await h.call(.GET, Harness.pods + "/\(name)/log?timestamps=true&limitBytes=10")
            #expect(stamped.bytes.count == 10)
            let wrong = try await h.call(.GET, Harness.pods + "/\(name)/log?container=nope")
            #expect(wrong.status == 400)
        }
    }

    @Test("foreground delete of an owning Secret removes its Job and the Job's pod first")
    func cascade() async throws {
        try await Harness.with { h in
            let secret = try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"owner"}}"#).json
            let uid = secret[["metadata", "uid"]]?.string ?? ""
            let text = Harness.job("owned", command: ["sleep", "600"], ownerUID: uid)
            #expect(try await h.call(.POST, Harness.jobs, text).status == 201)
            try await h.eventually("the job's pod exists") { try await !h.pods(ofJob: "owned").isEmpty }
            let version = try await h.get(Harness.secrets)[["metadata", "resourceVersion"]]?.string ?? ""
            let deleted = try await h.call(.DELETE, Harness.secrets + "/owner", #"{"propagationPolicy":"Foreground"}"#)
            #expect(deleted.status == 200)
            try await h.eventually("secret, job and pod are gone") {
                let secretGone = try await h.call(.GET, Harness.secrets + "/owner").status == 404
                let jobGone = try await h.call(.GET, Harness.jobs + "/owned").status == 404
                let podsGone = try await h.pods(ofJob: "owned").isEmpty
                return secretGone && jobGone && podsGone
            }
            let events = try await h.watch(Harness.secrets + "?watch=true&resourceVersion=" + version) {
                $0.contains { $0["type"] == "DELETED" }
            }
            #expect(events.first?["type"] == "MODIFIED")
            #expect(events.first?[["object", "metadata", "finalizers"]] == ["foregroundDeletion"])
            #expect(events.first?[["object", "metadata", "deletionTimestamp"]] != nil)
            #expect(events.last?["type"] == "DELETED")
        }
    }

    @Test("background delete of a Job garbage-collects its pods; ttlSecondsAfterFinished deletes finished Jobs")
    func backgroundAndTTL() async throws {
        try await Harness.with { h in
            #expect(try await h.call(.POST, Harness.jobs, Harness.job("bg", command: ["sleep", "600"])).status == 201)
            try await h.eventually("pod exists") { try await !h.pods(ofJob: "bg").isEmpty }
            #expect(try await h.call(.DELETE, Harness.jobs + "/bg?propagationPolicy=Background").status == 200)
            try await h.eventually("pods collected") { try await h.pods(ofJob: "bg").isEmpty }
            let ttl = Harness.job("ttl", extraSpec: #", "ttlSecondsAfterFinished": 0"#)
            #expect(try await h.call(.POST, Harness.jobs, ttl).status == 201)
            try await h.eventually("finished job deleted") {
                try await h.call(.GET, Harness.jobs + "/ttl").status == 404
            }
        }
    }
}

@Suite("Deletion defaults and faults")
struct FaultTests {
    @Test("deleting a Job with no policy orphans its pods (batch/v1 legacy default)")
    func orphanDefault() async throws {
        try await Harness.with { h in
            #expect(
                try await h.call(.POST, Harness.jobs, Harness.job("orph", command: ["sleep", "600"])).status == 201)
            try await h.eventually("pod exists") { try await !h.pods(ofJob: "orph").isEmpty }
            #expect(try await h.call(.DELETE, Harness.jobs + "/orph").status == 200)
            let pods = try await h.pods(ofJob: "orph")
            #expect(pods.count == 1)
            #expect(pods.first?[["metadata", "ownerReferences"]] == nil)
        }
    }

    @Test("suspended Jobs create no pods until resumed")
    func suspend() async throws {
        try await Harness.with { h in
            let text = Harness.job("sus", extraSpec: #", "suspend": true"#)
            #expect(try await h.call(.POST, Harness.jobs, text).status == 201)
            try await h.eventually("suspended condition") {
                try await h.condition(h.get(Harness.jobs + "/sus"), "Suspended") != nil
            }
            #expect(try await h.pods(ofJob: "sus").isEmpty)
            let resumed = try await h.call(
                .PATCH, Harness.jobs + "/sus", #"{"spec":{"suspend":false}}"#,
                contentType: "application/merge-patch+json")
            #expect(resumed.status == 200)
            let job = try await h.finishedJob("sus")
            #expect(h.condition(job, "Complete") != nil)
        }
    }

    @Test("injected 500s, and dropping watches ends open streams")
    func serverErrorsAndDrops() async throws {
        try await Harness.with { h in
            let set = try await h.call(.POST, "/_emulator/faults", #"{"serverErrorFraction": 1}"#)
            #expect(set.status == 200)
            let failed = try await h.call(.GET, Harness.pods)
            #expect(failed.status == 500)
            #expect(failed.json["reason"] == "InternalError")
            #expect(try await h.call(.POST, "/_emulator/faults", "{}").status == 200)
            async let events = h.watch(Harness.pods + "?watch=true&timeoutSeconds=60") { _ in false }
            try await h.eventually("the watch is open") { await h.emulator.statistics().openWatches == 1 }
            await h.emulator.dropWatches()
            #expect(try await events.isEmpty)
        }
    }
}
