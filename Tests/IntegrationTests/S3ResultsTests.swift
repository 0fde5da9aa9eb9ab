import AsyncHTTPClient
import ChildProcesses
import Domain
import Foundation
import Gateway
import Logging
import NIOCore
import NIOHTTP1
import Persistence
import Storage
import TestSupport
import Testing

/// A deployment whose results live in an S3-compatible store (moto_server on loopback, started by
/// `scripts/s3-server`): jobs publish there, the gateway streams downloads from there with `Range` kept, owners get
/// presigned URLs and nobody else does, and expiry deletes the objects.
@Suite("Results in S3", .serialized)
struct S3ResultsTests {
    static var endpoint: String { TestEnvironment.s3Endpoint }

    /// Starts moto (idempotent) and makes a bucket for the test; returns the deployment's environment for it.
    static func bucket() async throws -> (bucket: String, environment: [String: String]) {
        try await TestEnvironment.startS3Server()
        let bucket = "c2d-it-\(UUID().uuidString.lowercased().prefix(18))"
        var request = HTTPClientRequest(url: "\(endpoint)/\(bucket)")
        request.method = .PUT
        let created = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        guard created.status == .ok else { throw TestFailure("cannot create bucket \(bucket): \(created.status)") }
        return (
            bucket,
            [
                "C2D_RESULT_STORE": "s3", "C2D_S3_ENDPOINT": endpoint, "C2D_S3_BUCKET": bucket,
                "C2D_S3_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "C2D_S3_PRESIGN_SECONDS": "120",
            ]
        )
    }

    /// The store the deployment uses, seen from the test.
    static func withStore(bucket: String, _ body: (S3ResultStore) async throws -> Void) async throws {
        let configuration = S3Configuration(
            endpoint: endpoint, bucket: bucket, credentials: S3Credentials(accessKeyID: "test", secretAccessKey: "test")
        )
        let client = S3ResultStore.makeHTTPClient(configuration: configuration)
        do {
            try await body(try S3ResultStore(configuration: configuration, httpClient: client))
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    @Test("results go to S3; downloads keep Range; presigned URLs go to the owner only; others get nothing")
    func downloads() async throws {
        let (bucket, environment) = try await Self.bucket()
        try await Deployment.with(extraEnvironment: environment) { deployment in
            try await deployment.startDev()
            let owner = "s3-owner-\(UUID())"
            let ownerToken = try await deployment.token(owner: owner, scopes: [.submit, .read])
            let viewerName = "s3-viewer-\(UUID())"
            let viewer = try await deployment.token(owner: viewerName, scopes: [.read])
            let stranger = try await deployment.token(owner: "s3-stranger-\(UUID())", scopes: [.submit, .read])
            var request = deployment.jobRequest(
                code: "open('/data/outputs/numbers.txt', 'w').write(''.join(str(i % 10) for i in range(100000)))")
            request["owner"] = nil
            request["viewers"] = [viewerName]
            let created = try await deployment.post("/v1/jobs", json: request, token: ownerToken)
            #expect(created.status == 201, "\(created.text)")
            let id = try #require(created.json["id"] as? String)
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "succeeded", "\(job)\n\(deployment.logs)")

            let results = try await deployment.get("/v1/jobs/\(id)/results", token: ownerToken)
            let list = results.json["results"] as? [[String: Any]] ?? []
            let output = try #require(list.first { $0["filename"] as? String == "numbers.txt" })
            let index = try #require(output["index"] as? Int)
            #expect(output["filesize"] as? Int == 100_000)

            // Through the gateway, whole and by range.
            let whole = try await deployment.get("/v1/jobs/\(id)/results/\(index)", token: ownerToken)
            #expect(whole.status == 200)
            #expect(whole.body.count == 100_000)
            let ranged = try await deployment.get(
                "/v1/jobs/\(id)/results/\(index)",
                headers: ["authorization": "Bearer \(ownerToken)", "range": "bytes=99990-"])
            #expect(ranged.status == 206)
            #expect(ranged.text == "0123456789")
            #expect(
                ranged.headers.contains { $0.0.lowercased() == "content-range" && $0.1 == "bytes 99990-99999/100000" })
            let beyond = try await deployment.get(
                "/v1/jobs/\(id)/results/\(index)",
                headers: ["authorization": "Bearer \(ownerToken)", "range": "bytes=200000-"])
            #expect(beyond.status == 416)
            // HEAD: the size without the bytes, and the store's answer dropped, not left hanging.
            for _ in 0..<3 {
                let head = try await deployment.request(
                    .HEAD, "/v1/jobs/\(id)/results/\(index)", headers: ["authorization": "Bearer \(ownerToken)"])
                #expect(head.status == 200)
                #expect(head.body.isEmpty)
                #expect(head.headers.contains { $0.0.lowercased() == "content-length" && $0.1 == "100000" })
            }
            // The viewer may download through the gateway.
            #expect(try await deployment.get("/v1/jobs/\(id)/results/\(index)", token: viewer).status == 200)

            // A presigned URL: the owner gets one that works without any token; the viewer and others do not.
            let link = try await deployment.get("/v1/jobs/\(id)/results/\(index)/url", token: ownerToken)
            #expect(link.status == 200, "\(link.text)")
            let url = try #require(link.json["url"] as? String)
            #expect(url.hasPrefix(Self.endpoint + "/" + bucket + "/"))
            #expect(link.json["expiresAt"] is String)
            let direct = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            #expect(direct.status == .ok)
            #expect(try await direct.body.collect(upTo: 1 << 20).readableBytes == 100_000)
            let viewerLink = try await deployment.get("/v1/jobs/\(id)/results/\(index)/url", token: viewer)
            #expect(viewerLink.status == 403)
            #expect(viewerLink.json["code"] as? String == "owner_only")
            let strangerLink = try await deployment.get("/v1/jobs/\(id)/results/\(index)/url", token: stranger)
            #expect(strangerLink.status == 404)
            #expect(try await deployment.get("/v1/jobs/\(id)/results/\(index)", token: stranger).status == 404)

            // The object is where the store says, with its digest.
            try await Self.withStore(bucket: bucket) { store in
                let stored = try await store.describe(location: "\(id)/1/outputs/numbers.txt")
                #expect(stored?.size == 100_000)
                #expect(stored?.sha256 == output["sha256"] as? String)
            }
        }
    }

    @Test("expiry deletes a finished job's objects from the bucket")
    func expiry() async throws {
        let (bucket, environment) = try await Self.bucket()
        try await Deployment.with(
            extraEnvironment: environment.merging(["C2D_SCHEDULER_RECONCILE_INTERVAL_SECONDS": "1"]) { $1 },
            environmentFields: #""storageExpiry": 2, "images": [{"image": "python", "host": true}]"#
        ) { deployment in
            try await deployment.startDev()
            let id = try await deployment.submit(
                deployment.jobRequest(code: "open('/data/outputs/a.txt', 'w').write('a')"))
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "succeeded")
            let location = "\(id)/1/outputs/a.txt"
            try await Self.withStore(bucket: bucket) { store in
                #expect(try await store.describe(location: location) != nil, "published to the bucket")
                let deadline = ContinuousClock.now + .seconds(60)
                while ContinuousClock.now < deadline, try await store.describe(location: location) != nil {
                    try await Task.sleep(for: .milliseconds(500))
                }
                #expect(try await store.describe(location: location) == nil, "\(deployment.logs)")
                #expect(try await store.describe(location: "\(id)/1/logs/algorithm.log") == nil)
            }
        }
    }
}

extension S3ResultsTests {
    @Test("a publish pod with the S3 settings uploads straight to the bucket and registers each file with the gateway")
    func directPublish() async throws {
        let (bucket, environment) = try await Self.bucket()
        // Uploads through the gateway would be refused (1 byte): everything must go straight to the bucket.
        try await Deployment.with(extraEnvironment: environment.merging(["C2D_MAX_UPLOAD_BYTES": "1"]) { $1 }) {
            deployment in
            try await TestDatabase.migrate(deployment.postgres)
            try deployment.start("gateway", ["gateway", "--port", String(deployment.port)])
            try await deployment.waitUntilHealthy()
            let store = PostgresJobStore(client: deployment.postgres)
            let text = try await deployment.submit(deployment.jobRequest(code: "print(1)"))
            let id = try #require(JobID(text))
            try await store.markAdmitted([id])
            guard case .claimed(let job) = try await store.claim(jobID: id, workerID: "s3-pod", lease: .seconds(600))
            else {
                throw TestFailure("job \(id) could not be claimed")
            }
            let token = UploadToken.generate()
            try await store.registerUploadToken(jobID: id, attempt: job.attempt, hash: UploadToken.hash(token))

            let data = deployment.directory.appendingPathComponent("pod-data")
            let files = ["outputs/big.bin": String(repeating: "z", count: 70_000), "logs/algorithm.log": "ran\n"]
            for (path, contents) in files {
                let url = data.appendingPathComponent(path)
                try FileManager.default.createDirectory(
                    at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(contents.utf8).write(to: url)
            }
            let publish = try C2DProcess(
                name: "publish-s3",
                arguments: [
                    "pod", "publish", "--data", data.path, "--results-url", deployment.baseURL, "--job-id", "\(id)",
                    "--attempt", "\(job.attempt)", "--termination-log",
                    deployment.directory.appendingPathComponent("termination").path,
                ],
                environment: environment.merging(["C2D_UPLOAD_TOKEN": token]) { $1 },
                logDirectory: deployment.directory)
            #expect(await publish.waitForExit(timeout: .seconds(60)))
            #expect(publish.exitCode == 0, "\(publish.log)\n\(deployment.logs)")

            let uploads = try await store.uploads(jobID: id, attempt: job.attempt)
            #expect(uploads.map(\.name) == ["big.bin", "algorithm.log", "publish.log"])
            let big = try #require(uploads.first)
            #expect(big.location == "\(id)/\(job.attempt)/outputs/big.bin")
            #expect(big.size == 70_000)
            try await Self.withStore(bucket: bucket) { objects in
                let described = try await objects.describe(location: big.location)
                #expect(described?.size == 70_000)
                #expect(described?.sha256 == big.sha256)
            }

            // The gateway registers only the location it would have used, and only what the bucket holds.
            let base = "/internal/v1/jobs/\(id)/attempts/\(job.attempt)/stored-results/output"
            func register(_ name: String, _ body: [String: Any]) async throws -> Deployment.HTTPResult {
                try await deployment.request(
                    .POST, "\(base)/\(name)", body: try JSONSerialization.data(withJSONObject: body),
                    headers: ["authorization": "Bearer \(token)", "content-type": "application/json"],
                    authorize: false)
            }
            let elsewhere = try await register(
                "x.bin", ["location": big.location, "size": big.size, "sha256": big.sha256])
            #expect(elsewhere.status == 400, "\(elsewhere.text)")
            let missing = try await register(
                "x.bin", ["location": "\(id)/\(job.attempt)/outputs/x.bin", "size": 1, "sha256": big.sha256])
            #expect(missing.status == 409, "\(missing.text)")
            let wrongSize = try await register(
                "big.bin", ["location": big.location, "size": 5, "sha256": big.sha256])
            #expect(wrongSize.status == 422, "\(wrongSize.text)")
            let wrongToken = try await deployment.request(
                .POST, "\(base)/big.bin",
                body: try JSONSerialization.data(withJSONObject: [
                    "location": big.location, "size": big.size, "sha256": big.sha256,
                ]),
                headers: ["authorization": "Bearer \(UploadToken.generate())"], authorize: false)
            #expect(wrongToken.status == 401)
        }
    }
}
