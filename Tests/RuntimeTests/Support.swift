import AsyncHTTPClient
import Domain
import Foundation
import Runtime
import Storage

#if canImport(Glibc)
    import Glibc
#endif

/// A scratch world for one test: a data directory, a result store, a work root, one HTTP client, an executor.
/// Everything lives under one temporary directory that `close()` removes.
struct RuntimeFixture {
    let base: URL
    let dataDirectory: URL
    let workRoot: URL
    let store: FileResultStore
    let client: HTTPClient
    let executor: LocalExecutor

    /// The tests' HTTP server listens on loopback, which the provisioner refuses unless allowed.
    init(
        keepWorkspaces: Bool = false, allowPrivateNetworks: Bool = true, sandbox: SandboxConfiguration? = nil
    ) throws {
        base = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-runtime-test-\(UUID().uuidString)")
        dataDirectory = base.appendingPathComponent("data-dir")
        workRoot = base.appendingPathComponent("work")
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: workRoot, withIntermediateDirectories: true)
        store = FileResultStore(root: base.appendingPathComponent("results"))
        var configuration = LocalExecutorConfiguration(
            workRoot: workRoot, dataDirectory: dataDirectory, downloadConnectTimeout: .seconds(2),
            downloadTimeout: .seconds(20), keepWorkspaces: keepWorkspaces,
            allowPrivateNetworks: allowPrivateNetworks)
        if let sandbox { configuration.sandbox = sandbox }
        client = Provisioner.makeHTTPClient(configuration: configuration.provisioner)
        executor = LocalExecutor(configuration: configuration, httpClient: client, resultStore: store)
    }

    /// Runs `body` with a fresh fixture and closes it afterwards, whether `body` throws or not.
    static func with(
        sandbox: SandboxConfiguration? = nil, _ body: (RuntimeFixture) async throws -> Void
    ) async throws {
        let fixture = try RuntimeFixture(sandbox: sandbox)
        do {
            try await body(fixture)
        } catch {
            await fixture.close()
            throw error
        }
        await fixture.close()
    }

    func close() async {
        try? await client.shutdown()
        try? FileManager.default.removeItem(at: base)
    }

    /// Writes a file into the data directory and returns its path relative to it.
    @discardableResult
    func writeData(_ relative: String, _ contents: String) throws -> String {
        let url = dataDirectory.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(contents.utf8).write(to: url)
        return relative
    }

    /// Runs a job and records the statuses the executor reported.
    func run(
        _ workflow: Workflow, environment: ComputeEnvironment = RuntimeFixture.environment
    ) async throws -> (result: ExecutionResult, statuses: [JobStatus]) {
        let job = Job(id: JobID(), environment: environment.id, owner: "0xowner", attempt: 1, workflow: workflow)
        let recorder = StatusRecorder()
        let result = try await executor.execute(job: job, environment: environment) { await recorder.add($0) }
        return (result, await recorder.statuses)
    }

    /// The stored text of a result.
    func text(of result: ResultFile) throws -> String {
        try String(contentsOf: store.file(at: result.location), encoding: .utf8)
    }

    static let environment = ComputeEnvironment(
        id: "test", maxJobDuration: 60, memoryMiB: 1024, diskMiB: 64, allowNetwork: false)

    static func workflow(
        rawcode: String, inputs: [Workflow.Input] = [], maxtime: Int? = nil, entrypoint: String = "python3 $ALGO"
    ) -> Workflow {
        Workflow(stages: [
            Workflow.Stage(
                input: inputs,
                algorithm: Workflow.Algorithm(
                    rawcode: rawcode, container: Workflow.Container(entrypoint: entrypoint),
                    algocustomdata: .object(["greeting": .string("hello")])),
                compute: Workflow.Compute(maxtime: maxtime))
        ])
    }
}

actor StatusRecorder {
    private(set) var statuses: [JobStatus] = []

    func add(_ status: JobStatus) {
        statuses.append(status)
    }
}

/// Python's http.server (HTTPS with a certificate given) on 127.0.0.1 or another loopback address, with an
/// ephemeral port unless one is given, serving `root` and logging each GET's path to `requests.log`, plus test
/// routes: `/goto?url=<url>` (302 to that URL), `/redirect/<path>` (302 to `/<path>`), `/redirect-ftp` (302 to
/// an ftp URL), `/loop` (302 to itself), and an
/// Ocean Aquarius + Provider pair: `/api/aquarius/assets/ddo/<did>` (a DDO whose service `svc1` points at
/// `/provider`), `/provider` (its endpoint list), `POST /api/services/fileinfo` (two files) and
/// `/api/services/download` (answers `file <fileIndex>` and appends the query to `downloads.log`).
final class LocalHTTPServer: @unchecked Sendable {
    let port: Int
    private let process: Process

    let host: String

    /// Serves `root` on `host` (a loopback address) and `port` (0: any free one), over TLS when `tls` names a
    /// certificate chain and key (PEM files).
    init(root: URL, host: String = "127.0.0.1", port: Int = 0, tls: (certificate: URL, key: URL)? = nil)
        async throws
    {
        self.host = host
        let script = root.appendingPathComponent("server.py")
        let portFile = root.appendingPathComponent("port")
        try Data(Self.script.utf8).write(to: script)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments =
            [script.path, root.path, portFile.path, host, String(port)]
            + (tls.map { [$0.certificate.path, $0.key.path] } ?? [])
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            if let text = try? String(contentsOf: portFile, encoding: .utf8), let port = Int(text) {
                self.port = port
                return
            }
            guard ContinuousClock.now < deadline else {
                process.terminate()
                throw CocoaError(.fileReadNoSuchFile)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// SIGKILL, not SIGTERM: Foundation's `Process` hands the spawning thread's signal mask to the child, and
    /// SIGTERM is usually blocked there.
    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func url(_ path: String) -> String { "http://\(host):\(port)/\(path)" }

    /// The paths this server was asked for, in order.
    static func requests(in root: URL) -> [String] {
        ((try? String(contentsOf: root.appendingPathComponent("requests.log"), encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }

    private static let script = """
        import http.server, json, os, ssl, sys, urllib.parse
        root, port_file, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
        class Handler(http.server.SimpleHTTPRequestHandler):
            def reply(self, body, content_type="application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                request = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/provider/api/services/fileinfo" and request.get("serviceId") == "svc1":
                    return self.reply([{"index": 0, "valid": True}, {"index": 1, "valid": True}])
                self.send_error(404)
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=root, **kwargs)
            def redirect(self, location):
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
            def do_GET(self):
                with open(os.path.join(root, "requests.log"), "a") as log:
                    log.write(self.path + "\\n")
                if self.path.startswith("/goto?"):
                    return self.redirect(urllib.parse.parse_qs(self.path.split("?", 1)[1])["url"][0])
                if self.path.startswith("/redirect/"):
                    return self.redirect(self.path[len("/redirect"):])
                if self.path == "/redirect-ftp":
                    return self.redirect("ftp://127.0.0.1/file")
                if self.path == "/loop":
                    return self.redirect("/loop")
                base = "http://127.0.0.1:%d" % self.server.server_address[1]
                if self.path.startswith("/api/aquarius/assets/ddo/"):
                    did = self.path.rsplit("/", 1)[1]
                    return self.reply({"id": did, "services": [{"id": "svc1", "serviceEndpoint": base + "/provider"}]})
                if self.path == "/provider":
                    return self.reply({"serviceEndpoints": {
                        "fileinfo": ["POST", "/api/services/fileinfo"], "download": ["GET", "/api/services/download"]}})
                if self.path.startswith("/provider/api/services/download?"):
                    query = self.path.split("?", 1)[1]
                    with open(os.path.join(root, "downloads.log"), "a") as log:
                        log.write(query + "\\n")
                    index = urllib.parse.parse_qs(query)["fileIndex"][0]
                    return self.reply("file " + index, "application/octet-stream")
                return super().do_GET()
            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer((host, port), Handler)
        if len(sys.argv) > 6:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[5], sys.argv[6])
            server.socket = context.wrap_socket(server.socket, server_side=True)
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.rename(port_file + ".tmp", port_file)
        server.serve_forever()
        """
}
