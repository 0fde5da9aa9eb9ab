import AsyncHTTPClient
import NIOHTTP1
import Testing

@testable import KubernetesEmulator

@Suite("API semantics")
struct APITests {
    @Test("create, get, 409 AlreadyExists, 404 NotFound, 422 Invalid bodies")
    func crud() async throws {
        try await Harness.with { h in
            let secret =
                #"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s1","labels":{"a":"b"}},"stringData":{"k":"v"}}"#
            let created = try await h.call(.POST, Harness.secrets, secret)
            #expect(created.status == 201)
            #expect(created.json[["metadata", "uid"]]?.string?.count == 36)
            #expect(UInt64(created.json[["metadata", "resourceVersion"]]?.string ?? "") != nil)
            #expect(created.json[["metadata", "creationTimestamp"]]?.string?.hasSuffix("Z") == true)
            #expect(created.json[["data", "k"]]?.string == "dg==")
            let duplicate = try await h.call(.POST, Harness.secrets, secret)
            #expect(duplicate.status == 409)
            #expect(duplicate.json["kind"] == "Status")
            #expect(duplicate.json["status"] == "Failure")
            #expect(duplicate.json["reason"] == "AlreadyExists")
            #expect(duplicate.json["message"] == "secrets \"s1\" already exists")
            #expect(duplicate.json[["details", "name"]] == "s1")
            #expect(duplicate.json["code"] == 409)
            let jobText = Harness.job("j1")
            #expect(try await h.call(.POST, Harness.jobs, jobText).status == 201)
            let jobDuplicate = try await h.call(.POST, Harness.jobs, jobText)
            #expect(jobDuplicate.json["message"] == "jobs.batch \"j1\" already exists")
            #expect(jobDuplicate.json[["details", "group"]] == "batch")
            let missing = try await h.call(.GET, Harness.jobs + "/nope")
            #expect(missing.status == 404)
            #expect(missing.json["reason"] == "NotFound")
            #expect(missing.json["message"] == "jobs.batch \"nope\" not found")
            #expect(try await h.call(.DELETE, Harness.secrets + "/nope").status == 404)

            let badName = try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"Bad_Name"}}"#)
            #expect(badName.status == 422)
            #expect(badName.json["reason"] == "Invalid")
            #expect(badName.json[["details", "causes"]]?.array?.first?["field"] == "metadata.name")
            let noName = try await h.call(.POST, Harness.secrets, #"{"metadata":{}}"#)
            #expect(
                noName.json["message"]
                    == "Secret \"\" is invalid: metadata.name: Required value: name or generateName is required")
            let badLabel = try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"x","labels":{"a":"b c"}}}"#)
            #expect(badLabel.status == 422)
            let noContainers = try await h.call(
                .POST, Harness.jobs,
                #"{"metadata":{"name":"j2"},"spec":{"template":{"spec":{"restartPolicy":"Never"}}}}"#)
            #expect(noContainers.status == 422)
            #expect(
                noContainers.json["message"]
                    == "Job.batch \"j2\" is invalid: spec.template.spec.containers: Required value")
            let always = try await h.call(
                .POST, Harness.jobs,
                #"{"metadata":{"name":"j3"},"spec":{"template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}}"#)
            #expect(always.status == 422)
            #expect(always.json["message"]?.string?.contains("Unsupported value: \"Always\"") == true)
            let noImage = try await h.call(
                .POST, Harness.jobs,
                #"{"metadata":{"name":"j4"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c"}]}}}}"#
            )
            #expect(
                noImage.json[["details", "causes"]]?.array?.first?["field"] == "spec.template.spec.containers[0].image")
            let wrongKind = try await h.call(
                .POST, Harness.secrets, #"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"y"}}"#)
            #expect(wrongKind.status == 400)
            let generated = try await h.call(.POST, Harness.secrets, #"{"metadata":{"generateName":"gen-"}}"#)
            #expect(generated.status == 201)
            #expect(generated.json[["metadata", "name"]]?.string?.count == 9)
        }
    }

    @Test("stale PUT is 409 Conflict; merge patch; Job template is immutable")
    func updates() async throws {
        try await Harness.with { h in
            let created = try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"s"},"data":{"a":"YQ=="}}"#)
                .json
            var first = created
            first[["metadata", "labels"]] = ["x": "1"]
            let updated = try await h.call(.PUT, Harness.secrets + "/s", first.text)
            #expect(updated.status == 200)
            #expect(updated.json[["metadata", "resourceVersion"]] != created[["metadata", "resourceVersion"]])
            var stale = created
            stale[["metadata", "labels"]] = ["x": "2"]
            let conflict = try await h.call(.PUT, Harness.secrets + "/s", stale.text)
            #expect(conflict.status == 409)
            #expect(conflict.json["reason"] == "Conflict")
            #expect(
                conflict.json["message"]
                    == "Operation cannot be fulfilled on secrets \"s\": the object has been modified; please apply your changes to the latest version and try again"
            )
            let patched = try await h.call(
                .PATCH, Harness.secrets + "/s", #"{"metadata":{"labels":{"y":"2","x":null}}}"#,
                contentType: "application/merge-patch+json")
            #expect(patched.status == 200)
            #expect(patched.json[["metadata", "labels"]] == ["y": "2"])
            #expect(
                try await h.call(.POST, Harness.jobs, Harness.job("j", annotations: ["sim.c2d.io/duration": "30"]))
                    .status == 201)
            let immutable = try await h.call(
                .PATCH, Harness.jobs + "/j", #"{"spec":{"template":{"spec":{"restartPolicy":"OnFailure"}}}}"#,
                contentType: "application/strategic-merge-patch+json")
            #expect(immutable.status == 422)
            #expect(immutable.json["message"]?.string?.contains("field is immutable") == true)
        }
    }

    @Test("list pages with limit/continue, selectors, and 410 for a compacted token")
    func listing() async throws {
        try await Harness.with { h in
            for index in 0..<12 {
                let tier = index % 3 == 0 ? "a" : "b"
                let body = #"{"metadata":{"name":"s-\#(String(index + 10))","labels":{"tier":"\#(tier)"}}}"#
                #expect(try await h.call(.POST, Harness.secrets, body).status == 201)
            }
            #expect(try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"plain"}}"#).status == 201)
            var names: [String] = []
            var token: String?
            var pages = 0
            repeat {
                let path = Harness.secrets + "?limit=5" + (token.map { "&continue=\($0)" } ?? "")
                let page = try await h.get(path)
                #expect(page["kind"] == "SecretList")
                #expect(page["apiVersion"] == "v1")
                if pages == 0 { #expect(page[["metadata", "remainingItemCount"]] == 8) }
                names += (page["items"]?.array ?? []).compactMap { $0[["metadata", "name"]]?.string }
                token = page[["metadata", "continue"]]?.string
                pages += 1
            } while token != nil
            #expect(pages == 3)
            #expect(names.count == 13)
            #expect(names == names.sorted())
            let inA = try await h.get(Harness.secrets + "?labelSelector=tier+in+(a)")
            #expect(inA["items"]?.array?.count == 4)
            let notA = try await h.get(Harness.secrets + "?labelSelector=tier!%3Da")
            #expect(notA["items"]?.array?.count == 9)
            let noTier = try await h.get(Harness.secrets + "?labelSelector=!tier")
            #expect(noTier["items"]?.array?.count == 1)
            let both = try await h.get(Harness.secrets + "?labelSelector=tier,tier%20notin%20(b)")
            #expect(both["items"]?.array?.count == 4)
            let byName = try await h.get(Harness.secrets + "?fieldSelector=metadata.name%3Dplain")
            #expect(byName["items"]?.array?.count == 1)
            let badSelector = try await h.call(.GET, Harness.secrets + "?labelSelector=a+b+c")
            #expect(badSelector.status == 400)
            let first = try await h.get(Harness.secrets + "?limit=2")
            let old = first[["metadata", "continue"]]?.string ?? ""
            #expect(try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"later"}}"#).status == 201)
            await h.emulator.compact()
            let expired = try await h.call(.GET, Harness.secrets + "?limit=2&continue=" + old)
            #expect(expired.status == 410)
            #expect(expired.json["reason"] == "Expired")
        }
    }

    @Test("watch from a resourceVersion streams later events in order, then bookmarks")
    func watchOrder() async throws {
        try await Harness.with { h in
            #expect(try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"before"}}"#).status == 201)
            let version = try await h.get(Harness.secrets)[["metadata", "resourceVersion"]]?.string ?? ""
            for name in ["w1", "w2", "w3"] {
                #expect(
                    try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"\#(name)","labels":{"k":"v"}}}"#)
                        .status == 201)
            }
            _ = try await h.call(
                .PATCH, Harness.secrets + "/w2", #"{"metadata":{"labels":{"m":"1"}}}"#,
                contentType: "application/merge-patch+json")
            #expect(try await h.call(.DELETE, Harness.secrets + "/w3").status == 200)
            let events = try await h.watch(
                Harness.secrets + "?watch=true&allowWatchBookmarks=true&timeoutSeconds=20&resourceVersion=" + version
            ) { events in events.contains { $0["type"] == "BOOKMARK" } }
            let types = events.compactMap { $0["type"]?.string }
            #expect(Array(types.prefix(5)) == ["ADDED", "ADDED", "ADDED", "MODIFIED", "DELETED"])
            #expect(types.last == "BOOKMARK")
            let versions = events.prefix(5).compactMap {
                UInt64($0[["object", "metadata", "resourceVersion"]]?.string ?? "")
            }
            #expect(versions == versions.sorted() && Set(versions).count == 5)
            #expect(events.last?[["object", "kind"]] == "Secret")
            // A label-selected watch sees an object that stops matching as DELETED.
            let selected = try await h.get(Harness.secrets)[["metadata", "resourceVersion"]]?.string ?? ""
            _ = try await h.call(
                .PATCH, Harness.secrets + "/w1", #"{"metadata":{"labels":{"k":"other"}}}"#,
                contentType: "application/merge-patch+json")
            let filtered = try await h.watch(
                Harness.secrets + "?watch=1&labelSelector=k%3Dv&timeoutSeconds=20&resourceVersion=" + selected
            ) { !$0.isEmpty }
            #expect(filtered.first?["type"] == "DELETED")
            // With no resourceVersion the watch starts with ADDED for current objects.
            let initial = try await h.watch(Harness.secrets + "?watch=true&timeoutSeconds=20") { $0.count >= 3 }
            #expect(initial.allSatisfy { $0["type"] == "ADDED" })
        }
    }

    @Test("a watch from a compacted resourceVersion gets one ERROR 410 Expired event")
    func watchExpired() async throws {
        try await Harness.with { h in
            let created = try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"a"}}"#).json
            let version = created[["metadata", "resourceVersion"]]?.string ?? ""
            #expect(try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"b"}}"#).status == 201)
            let faults = try await h.call(.POST, "/_emulator/faults", #"{"compact": true}"#)
            #expect(faults.status == 200)
            let events = try await h.watch(Harness.secrets + "?watch=true&resourceVersion=" + version) { _ in false }
            #expect(events.count == 1)
            #expect(events.first?["type"] == "ERROR")
            #expect(events.first?[["object", "code"]] == 410)
            #expect(events.first?[["object", "reason"]] == "Expired")
            #expect(
                events.first?[["object", "message"]]?.string?.hasPrefix("too old resource version: \(version) (")
                    == true)
        }
    }

    @Test("a 429 storm answers 429 with Retry-After; stats count requests")
    func throttling() async throws {
        try await Harness.with { h in
            var faults = KubernetesEmulatorFaults()
            faults.throttle = .init(fraction: 1, durationSeconds: 60)
            faults.retryAfterSeconds = 2
            await h.emulator.setFaults(faults)
            let reply = try await h.call(.GET, Harness.jobs)
            #expect(reply.status == 429)
            #expect(reply.headers["retry-after"] == "2")
            #expect(reply.json["reason"] == "TooManyRequests")
            await h.emulator.setFaults(KubernetesEmulatorFaults())
            #expect(try await h.call(.GET, Harness.jobs).status == 200)
            var limited = KubernetesEmulatorFaults()
            limited.qpsLimit = 1
            limited.qpsBurst = 1
            await h.emulator.setFaults(limited)
            var statuses: [Int] = []
            for _ in 0..<3 { statuses.append(try await h.call(.GET, Harness.jobs).status) }
            #expect(statuses.contains(429))
            let stats = await h.emulator.statistics()
            #expect(stats.requests(verb: "list", resource: "jobs") == 5)
            let remote = try await h.get("/_emulator/stats")
            #expect(remote[["requests", "list jobs"]] == 5)
        }
    }

    @Test("discovery documents")
    func discovery() async throws {
        try await Harness.with { h in
            #expect(try await h.get("/version")["gitVersion"]?.string?.hasPrefix("v1.32") == true)
            #expect(try await h.get("/api")["versions"] == ["v1"])
            let batch = try await h.get("/apis/batch/v1")
            #expect(batch["kind"] == "APIResourceList")
            #expect(batch["resources"]?.array?.contains { $0["name"] == "jobs" && $0["namespaced"] == true } == true)
            #expect(try await h.get("/apis")["groups"]?.array?.count == 2)
            #expect(
                try await h.call(.POST, Harness.secrets, #"{"metadata":{"name":"t"},"data":{"a":"YQ=="}}"#).status
                    == 201)
            let table = try await h.call(
                .GET, Harness.secrets, accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
            #expect(table.json["kind"] == "Table")
            #expect(table.json["rows"]?.array?.first?["cells"]?.array?.prefix(3) == ["t", "Opaque", "1"])
        }
    }

    @Test("preloading 20,000 jobs lists in pages of 500")
    func preload() async throws {
        try await Harness.with { h in
            #expect(try await h.emulator.preloadJobs(count: 20_000, labels: ["bench": "yes"]) == 20_000)
            var total = 0
            var token: String?
            repeat {
                let page = try await h.get(Harness.jobs + "?limit=500" + (token.map { "&continue=\($0)" } ?? ""))
                total += page["items"]?.array?.count ?? 0
                token = page[["metadata", "continue"]]?.string
            } while token != nil
            #expect(total == 20_000)
        }
    }
}
