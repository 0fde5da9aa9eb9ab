import Foundation
import TestSupport
import Testing

/// Images through the whole system: the gateway refuses at submit what the environment cannot run, and a worker
/// runs an image it can from the operator's OCI layout.
@Suite("Images end to end", .serialized)
struct ImagesTests {
    /// `<directory>/layout`: an OCI layout with `busybox-test:test` (static busybox and `/etc/marker`).
    static func makeLayout(in directory: URL) throws {
        let layout = directory.appendingPathComponent("layout").path
        let bundle = directory.appendingPathComponent("bundle").path
        func umoci(_ arguments: String...) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/umoci")
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw TestFailure("umoci \(arguments) failed") }
        }
        try umoci("init", "--layout", layout)
        try umoci("new", "--image", "\(layout):test")
        try umoci("unpack", "--rootless", "--image", "\(layout):test", bundle)
        let root = URL(fileURLWithPath: bundle).appendingPathComponent("rootfs")
        try FileManager.default.createDirectory(
            at: root.appendingPathComponent("bin"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            at: root.appendingPathComponent("etc"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: "/bin/busybox", toPath: root.appendingPathComponent("bin/busybox").path)
        for applet in ["sh", "cat"] {
            try FileManager.default.createSymbolicLink(
                atPath: root.appendingPathComponent("bin/\(applet)").path, withDestinationPath: "busybox")
        }
        try "inside the image\n".write(to: root.appendingPathComponent("etc/marker"), atomically: true, encoding: .utf8)
        try umoci("repack", "--image", "\(layout):test", bundle)
        try umoci("config", "--image", "\(layout):test", "--config.env", "PATH=/bin")
    }

    static func request(_ deployment: Deployment, image: String, tag: String, checksum: String? = nil) -> [String: Any]
    {
        var container: [String: Any] = ["entrypoint": "sh $ALGO", "image": image, "tag": tag]
        if let checksum { container["checksum"] = checksum }
        return [
            "environment": deployment.environmentID,
            "workflow": [
                "stages": [
                    [
                        "input": [Any](),
                        "algorithm": ["rawcode": "cat /etc/marker > /data/outputs/marker.txt", "container": container],
                    ]
                ]
            ],
        ]
    }

    @Test("the gateway refuses an image the environment does not provide; a provided one runs in its own root")
    func submitAndRun() async throws {
        let images = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-it-images-\(UUID())")
        try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: images) }
        try Self.makeLayout(in: images)
        try await Deployment.with(
            extraEnvironment: [
                "C2D_IMAGES_DIR": images.path, "C2D_IMAGE_CACHE_DIR": images.appendingPathComponent("cache").path,
            ],
            environmentFields: #""images": [{"image": "busybox-test", "tag": "test", "layout": "layout"}]"#
        ) { deployment in
            try await deployment.startDev()
            let listed = try await deployment.get("/v1/environments")
            let environment = (listed.json["environments"] as? [[String: Any]])?.first
            #expect((environment?["images"] as? [[String: Any]])?.first?["image"] as? String == "busybox-test")

            let id = try await deployment.submit(Self.request(deployment, image: "busybox-test", tag: "test"))
            let job = try await deployment.waitForJob(id)
            #expect(job["outcome"] as? String == "succeeded", "\(job)\n\(deployment.logs)")
            #expect(try await deployment.download(id, name: "marker.txt") == "inside the image\n")

            for (image, tag, checksum, code) in [
                ("python", "3.11", nil, "image_not_available"), ("busybox-test", "other", nil, "image_not_available"),
                ("busybox-test", "test", "sha256:nope", "invalid_image_checksum"),
            ] {
                let refused = try await deployment.post(
                    "/v1/jobs", json: Self.request(deployment, image: image, tag: tag, checksum: checksum))
                #expect(refused.status == 400, "\(image):\(tag) \(refused.text)")
                #expect(refused.json["code"] as? String == code, "\(refused.text)")
            }
            let message =
                try await deployment.post(
                    "/v1/jobs", json: Self.request(deployment, image: "python", tag: "3.11")
                ).json["message"] as? String ?? ""
            #expect(
                message.contains("busybox-test:test"), "the refusal names what the environment provides: \(message)")

            let batch = try await deployment.post(
                "/v1/batches",
                json: [
                    "environment": deployment.environmentID,
                    "jobs": [
                        ["workflow": Self.request(deployment, image: "busybox-test", tag: "test")["workflow"]!],
                        ["workflow": Self.request(deployment, image: "node", tag: "20")["workflow"]!],
                    ],
                ])
            #expect(batch.status == 400)
            let errors = batch.json["errors"] as? [[String: Any]] ?? []
            #expect(errors.map { $0["index"] as? Int } == [1])
            #expect(errors.first?["code"] as? String == "image_not_available")
        }
    }
}
