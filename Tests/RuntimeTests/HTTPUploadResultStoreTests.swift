import AsyncHTTPClient
import Domain
import Foundation
import Runtime
import Storage
import Testing

/// The upload store of `c2d pod publish` against a scripted server: names map to kinds, 5xx is tried again, 4xx is
/// final, and the gateway's receipt must match the file.
@Suite("HTTP upload result store", .serialized)
struct HTTPUploadResultStoreTests {
    @Test("publisher store names map to kinds and names; segments are percent-encoded")
    func names() throws {
        #expect(
            try HTTPUploadResultStore.kindAndName(storeName: "2/outputs/a/b c.csv", attempt: 2) == (
                .output, "a/b c.csv"
            ))
        #expect(try HTTPUploadResultStore.kindAndName(storeName: "2/logs/algorithm.log", attempt: 2).0 == .algorithmLog)
        #expect(
            try HTTPUploadResultStore.kindAndName(storeName: "2/adminlogs/configure.log", attempt: 2).0
                == .configurationLog)
        #expect(
            try HTTPUploadResultStore.kindAndName(storeName: "2/adminlogs/publish.log", attempt: 2).0 == .publishLog)
        #expect(throws: UploadError.self) {
            try HTTPUploadResultStore.kindAndName(storeName: "1/outputs/a", attempt: 2)
        }
        #expect(throws: UploadError.self) { try HTTPUploadResultStore.kindAndName(storeName: "2/ddos/a", attempt: 2) }
        let job = JobID()
        #expect(
            HTTPUploadResultStore.uploadURL(
                baseURL: "http://gw:8080/", jobID: job, attempt: 3, kind: .output, name: "a dir/x%y.csv")
                == "http://gw:8080/internal/v1/jobs/\(job)/attempts/3/results/output/a%20dir/x%25y.csv")
    }

    /// A server whose answers to PUT are scripted by a list of status codes (the last repeats); each PUT is counted
    /// in `puts`. 200 answers carry the body's real size and sha-256.
    static func withServer(statuses: [Int], _ body: (String, URL) async throws -> Void) async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-upload-\(UUID())")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let script = """
            import hashlib, http.server, json, os, sys
            root, statuses = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
            count = [0]
            class Handler(http.server.BaseHTTPRequestHandler):
                def do_PUT(self):
                    data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    status = statuses[min(count[0], len(statuses) - 1)]
                    count[0] += 1
                    with open(os.path.join(root, "puts"), "a") as log:
                        log.write(self.path + " " + self.headers.get("Authorization", "") + "\\n")
                    body = json.dumps({"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}).encode()
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                def log_message(self, *args):
                    pass
            server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
            with open(os.path.join(root, "port.tmp"), "w") as f:
                f.write(str(server.server_address[1]))
            os.rename(os.path.join(root, "port.tmp"), os.path.join(root, "port"))
            server.serve_forever()
            """
        try Data(script.utf8).write(to: root.appendingPathComponent("server.py"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [
            root.appendingPathComponent("server.py").path, root.path, statuses.map(String.init).joined(separator: ","),
        ]
        try process.run()
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        var port: String?
        for _ in 0..<200 where port == nil {
            port = try? String(contentsOf: root.appendingPathComponent("port"), encoding: .utf8)
            if port == nil { try await Task.sleep(for: .milliseconds(50)) }
        }
        guard let port else { throw CocoaError(.fileReadNoSuchFile) }
        try await body("http://127.0.0.1:\(port)", root)
    }

    static func upload(baseURL: String, root: URL) async throws -> StoredObject {
        let file = root.appendingPathComponent("file.txt")
        try Data("payload".utf8).write(to: file)
        let configuration = HTTPUploadConfiguration(
            baseURL: baseURL, jobID: JobID(), attempt: 1, token: "secret", attempts: 3,
            initialBackoff: .milliseconds(10))
        let client = HTTPUploadResultStore.makeHTTPClient(configuration: configuration)
        do {
            let stored = try await HTTPUploadResultStore(configuration: configuration, httpClient: client)
                .store(jobID: configuration.jobID, name: "1/outputs/file.txt", from: file)
            try await client.shutdown()
            return stored
        } catch {
            try await client.shutdown()
            throw error
        }
    }

    static func puts(_ root: URL) -> [String] {
        ((try? String(contentsOf: root.appendingPathComponent("puts"), encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }

    @Test("503 twice, then 200: stored, after three tries, with the token")
    func retriesServerErrors() async throws {
        try await Self.withServer(statuses: [503, 503, 200]) { baseURL, root in
            let stored = try await Self.upload(baseURL: baseURL, root: root)
            #expect(stored.size == 7)
            #expect(stored.sha256 == (try FileCopy.digest(of: root.appendingPathComponent("file.txt"))).sha256)
            let puts = Self.puts(root)
            #expect(puts.count == 3)
            #expect(puts.allSatisfy { $0.hasSuffix("/attempts/1/results/output/file.txt Bearer secret") })
        }
    }

    @Test("401 is final: one try, a rejected error naming the status")
    func rejectsClientErrors() async throws {
        try await Self.withServer(statuses: [401]) { baseURL, root in
            let error = await #expect(throws: UploadError.self) { try await Self.upload(baseURL: baseURL, root: root) }
            #expect(error?.code == .rejected)
            #expect(error?.status == 401)
            #expect(Self.puts(root).count == 1)
        }
    }

    @Test("a gateway that keeps failing: every try is used, then unavailable")
    func givesUp() async throws {
        try await Self.withServer(statuses: [500]) { baseURL, root in
            let error = await #expect(throws: UploadError.self) { try await Self.upload(baseURL: baseURL, root: root) }
            #expect(error?.code == .unavailable)
            #expect(Self.puts(root).count == 3)
        }
    }
}
