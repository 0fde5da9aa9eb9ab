import AsyncHTTPClient
import Domain
import Foundation
import Runtime
import Storage
import Testing

/// Jobs that name an image run in that image's root filesystem, from an OCI layout unpacked with umoci, or not at
/// all (status 11). The layout is made here from Debian's static busybox: no registry is involved.
@Suite("Images", .serialized)
struct ImageTests {
    /// An OCI layout `<directory>/layout` holding `busybox-test:test`: static busybox with a few applets, `PATH=/bin`,
    /// and `/etc/marker`, a file the host does not have. Returns the manifest digest.
    static func makeLayout(in directory: URL) throws -> String {
        let layout = directory.appendingPathComponent("layout").path
        let bundle = directory.appendingPathComponent("bundle").path
        try run("/usr/bin/umoci", ["init", "--layout", layout])
        try run("/usr/bin/umoci", ["new", "--image", "\(layout):test"])
        try run("/usr/bin/umoci", ["unpack", "--rootless", "--image", "\(layout):test", bundle])
        let root = URL(fileURLWithPath: bundle).appendingPathComponent("rootfs")
        let bin = root.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            at: root.appendingPathComponent("etc"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "/bin/busybox", toPath: bin.appendingPathComponent("busybox").path)
        for applet in ["sh", "cat", "echo", "ls", "test", "["] {
            try FileManager.default.createSymbolicLink(
                atPath: bin.appendingPathComponent(applet).path, withDestinationPath: "busybox")
        }
        try "inside the image\n".write(to: root.appendingPathComponent("etc/marker"), atomically: true, encoding: .utf8)
        try run("/usr/bin/umoci", ["repack", "--image", "\(layout):test", bundle])
        try run("/usr/bin/umoci", ["config", "--image", "\(layout):test", "--config.env", "PATH=/bin"])
        let index =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: layout).appendingPathComponent("index.json")))
            as? [String: Any]
        let manifests = index?["manifests"] as? [[String: Any]] ?? []
        return manifests.compactMap { $0["digest"] as? String }.last ?? ""
    }

    static func run(_ executable: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ImageError(
                "\(executable) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
        }
    }

    /// A fixture whose executor finds layouts in `<base>/images` and caches roots in `<base>/cache`.
    struct World {
        let base: URL
        let digest: String
        let store: FileResultStore
        let client: HTTPClient
        let executor: LocalExecutor

        static func with(_ body: (World) async throws -> Void) async throws {
            let base = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-images-\(UUID())")
            let images = base.appendingPathComponent("images")
            try FileManager.default.createDirectory(at: images, withIntermediateDirectories: true)
            let digest = try ImageTests.makeLayout(in: images)
            var configuration = LocalExecutorConfiguration(
                workRoot: base.appendingPathComponent("work"), dataDirectory: nil)
            configuration.images = ImageStoreConfiguration(
                imagesDirectory: images, cacheDirectory: base.appendingPathComponent("cache"))
            let client = Provisioner.makeHTTPClient(configuration: configuration.provisioner)
            let store = FileResultStore(root: base.appendingPathComponent("results"))
            let world = World(
                base: base, digest: digest, store: store, client: client,
                executor: LocalExecutor(configuration: configuration, httpClient: client, resultStore: store))
            do {
                try await body(world)
            } catch {
                try? await client.shutdown()
                try? FileManager.default.removeItem(at: base)
                throw error
            }
            try? await client.shutdown()
            try? FileManager.default.removeItem(at: base)
        }

        func run(_ container: Workflow.Container, rawcode: String, environment: ComputeEnvironment) async throws
            -> ExecutionResult
        {
            let workflow = Workflow(stages: [
                Workflow.Stage(input: [], algorithm: Workflow.Algorithm(rawcode: rawcode, container: container))
            ])
            let job = Job(id: JobID(), environment: environment.id, owner: "owner", attempt: 1, workflow: workflow)
            return try await executor.execute(job: job, environment: environment) { _ in }
        }

        func text(_ result: ExecutionResult, _ name: String) throws -> String? {
            guard let file = result.results.first(where: { $0.name == name }) else { return nil }
            return try String(contentsOf: store.file(at: file.location), encoding: .utf8)
        }
    }

    static func environment(_ images: [EnvironmentImage]) -> ComputeEnvironment {
        var environment = ComputeEnvironment(id: "images", maxJobDuration: 60, memoryMiB: 512, diskMiB: 64)
        environment.images = images
        return environment
    }

    static let script = """
        cat /etc/marker > /data/outputs/marker.txt
        if [ -e /usr/bin/python3 ]; then echo "the host's /usr is visible" > /data/outputs/leak.txt; fi
        ls /data/inputs > /dev/null
        echo "ran in the image"
        """

    @Test("a job naming an image runs in that image's root filesystem, not on the host's system")
    func runsInTheImage() async throws {
        try await World.with { world in
            let environment = Self.environment([EnvironmentImage(image: "busybox-test", tag: "test", layout: "layout")])
            let container = Workflow.Container(entrypoint: "sh $ALGO", image: "busybox-test", tag: "test")
            let result = try await world.run(container, rawcode: Self.script, environment: environment)
            let log = try world.text(result, "algorithm.log") ?? ""
            #expect(result.outcome == .succeeded, "\(result.failureReason ?? "") \(log)")
            #expect(try world.text(result, "marker.txt") == "inside the image\n")
            #expect(try world.text(result, "leak.txt") == nil)
            #expect(try world.text(result, "algorithm.log")?.contains("ran in the image") == true)
            let configure = try world.text(result, "configure.log") ?? ""
            #expect(configure.contains("image busybox-test:test: OCI layout 'layout' at 'test', \(world.digest)"))

            // Pinned by the workflow to the right digest: runs again, from the cache.
            let pinned = Workflow.Container(
                entrypoint: "sh $ALGO", image: "busybox-test", tag: "test", checksum: world.digest)
            let again = try await world.run(pinned, rawcode: Self.script, environment: environment)
            #expect(again.outcome == .succeeded, "\(again.failureReason ?? "")")
            let cached = try FileManager.default.contentsOfDirectory(
                atPath: world.base.appendingPathComponent("cache").path)
            #expect(cached == [String(world.digest.dropFirst("sha256:".count))], "one unpacked root per digest")
        }
    }

    @Test("an image the worker cannot provide ends the job with status 11 and says why; nothing runs")
    func refusedImages() async throws {
        try await World.with { world in
            let layout = EnvironmentImage(image: "busybox-test", tag: "test", layout: "layout")
            let wrongDigest = "sha256:" + String(repeating: "0", count: 64)
            let cases: [(ComputeEnvironment, Workflow.Container, String)] = [
                // The workflow pins another digest than the layout holds.
                (
                    Self.environment([layout]),
                    Workflow.Container(
                        entrypoint: "sh $ALGO", image: "busybox-test", tag: "test", checksum: wrongDigest),
                    "this worker has \(world.digest)"
                ),
                // The environment pins a digest the layout does not hold.
                (
                    Self.environment([
                        EnvironmentImage(image: "busybox-test", tag: "test", layout: "layout", digest: wrongDigest)
                    ]),
                    Workflow.Container(entrypoint: "sh $ALGO", image: "busybox-test", tag: "test"),
                    "not the pinned"
                ),
                // The layout has no such reference.
                (
                    Self.environment([EnvironmentImage(image: "busybox-test", layout: "layout")]),
                    Workflow.Container(entrypoint: "sh $ALGO", image: "busybox-test", tag: "other"),
                    "has no image 'other'"
                ),
                // No layout where the environment says.
                (
                    Self.environment([EnvironmentImage(image: "busybox-test", tag: "test", layout: "missing")]),
                    Workflow.Container(entrypoint: "sh $ALGO", image: "busybox-test", tag: "test"),
                    "not an OCI image layout"
                ),
                // The environment does not provide the image at all (the gateway refuses this at submit).
                (
                    Self.environment([layout]),
                    Workflow.Container(entrypoint: "python3 $ALGO", image: "python", tag: "3.11"),
                    "cannot run image 'python:3.11'"
                ),
            ]
            for (environment, container, reason) in cases {
                let result = try await world.run(
                    container, rawcode: "echo ran > /data/outputs/ran.txt", environment: environment)
                #expect(result.status == .imagePullFailed, "\(container)")
                #expect(result.outcome == .failed)
                #expect(result.failureReason?.contains(reason) == true, "\(result.failureReason ?? "")")
                #expect(try world.text(result, "ran.txt") == nil)
                #expect(try world.text(result, "configure.log")?.contains(reason) == true)
            }
        }
    }

    @Test("an image the environment maps to the host runs there, and the configure log says so")
    func hostMapped() async throws {
        try await World.with { world in
            let environment = Self.environment([EnvironmentImage(image: "python", host: true)])
            let container = Workflow.Container(entrypoint: "python3 $ALGO", image: "python", tag: "3.11")
            let result = try await world.run(
                container, rawcode: "print('on the host')", environment: environment)
            #expect(result.outcome == .succeeded, "\(result.failureReason ?? "")")
            #expect(
                try world.text(result, "configure.log")?.contains(
                    "image python:3.11 runs on the worker's own system, as environment 'images' declares") == true)
        }
    }
}
