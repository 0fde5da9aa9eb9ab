import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import TestSupport
import Testing

@testable import KubernetesEmulator

/// An emulator on a free loopback port and helpers to call it over HTTP.
struct Harness {
    struct Reply {
        var status: Int
        var headers: [String: String]
        var bytes: [UInt8]

        var json: JSON { (try? JSON.parse(bytes)) ?? .null }
        var text: String { String(decoding: bytes, as: UTF8.self) }
    }

    let emulator: KubernetesEmulator
    let base: String

    static func with(
        _ configure: (inout KubernetesEmulatorConfiguration) -> Void = { _ in },
        _ body: (Harness) async throws -> Void
    ) async throws {
        var configuration = KubernetesEmulatorConfiguration()
        configuration.bookmarkInterval = .milliseconds(200)
        configure(&configuration)
        let emulator = KubernetesEmulator(configuration: configuration)
        let port = try await emulator.start()
        let harness = Harness(emulator: emulator, base: "http://127.0.0.1:\(port)")
        do {
            try await body(harness)
        } catch {
            await emulator.shutdown()
            throw error
        }
        await emulator.shutdown()
    }

    func call(
        _ method: HTTPMethod, _ path: String, _ body: String? = nil,
        contentType: String = "application/json", accept: String? = nil
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if let accept { request.headers.add(name: "Accept", value: accept) }
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let buffer = try await response.body.collect(upTo: 64 << 20)
        var headers: [String: String] = [:]
        for header in response.headers { headers[header.name.lowercased()] = header.value }
        return Reply(status: Int(response.status.code), headers: headers, bytes: Array(buffer.readableBytesView))
    }

    /// Reads a watch stream line by line until `done` says stop or the stream ends.
    func watch(_ path: String, until done: ([JSON]) -> Bool) async throws -> [JSON] {
        let request = HTTPClientRequest(url: base + path)
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        #expect(response.status.code == 200)
        var events: [JSON] = []
        var pending: [UInt8] = []
        for try await buffer in response.body {
            pending.append(contentsOf: buffer.readableBytesView)
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                events.append(try JSON.parse(pending[..<newline]))
                pending.removeSubrange(...newline)
            }
            if done(events) { break }
        }
        return events
    }

    /// Polls `condition` until it holds, failing after a generous deadline (never a timing assertion).
    func eventually(
        _ what: String, within seconds: Int = 20, _ condition: () async throws -> Bool
    ) async throws {
        try await waitUntil(what, timeout: .seconds(seconds), every: .milliseconds(20), condition)
    }

    func get(_ path: String) async throws -> JSON { try await call(.GET, path).json }

    static func job(
        _ name: String, command: [String] = ["sh", "-c", "exit 0"], annotations: [String: String] = [:],
        backoffLimit: Int = 0, extraSpec: String = "", ownerUID: String? = nil
    ) -> String {
        let annotationText = annotations.map { "\"\($0.key)\": \"\($0.value)\"" }.joined(separator: ",")
        let commandText = command.map { "\"\($0)\"" }.joined(separator: ",")
        let owner =
            ownerUID.map {
                ", \"ownerReferences\": [{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"name\": \"owner\", \"uid\": \"\($0)\", \"blockOwnerDeletion\": true}]"
            } ?? ""
        return """
            {"apiVersion": "batch/v1", "kind": "Job",
             "metadata": {"name": "\(name)", "labels": {"app.kubernetes.io/managed-by": "c2d"}\(owner)},
             "spec": {"backoffLimit": \(backoffLimit)\(extraSpec),
               "template": {"metadata": {"annotations": {\(annotationText)}},
                 "spec": {"restartPolicy": "Never",
                   "containers": [{"name": "main", "image": "busybox:1.36", "command": [\(commandText)]}]}}}}
            """
    }

    static let jobs = "/apis/batch/v1/namespaces/default/jobs"
    static let pods = "/api/v1/namespaces/default/pods"
    static let secrets = "/api/v1/namespaces/default/secrets"

    func condition(_ job: JSON, _ type: String) -> JSON? {
        job[["status", "conditions"]]?.array?.first { $0["type"]?.string == type && $0["status"]?.string == "True" }
    }

    func pods(ofJob name: String) async throws -> [JSON] {
        let list = try await get(Self.pods + "?labelSelector=batch.kubernetes.io/job-name%3D\(name)")
        return list["items"]?.array ?? []
    }

    /// Waits until the Job has a Complete or Failed condition and answers it.
    func finishedJob(_ name: String) async throws -> JSON {
        var job: JSON = .null
        try await eventually("job \(name) finishes") {
            job = try await get(Self.jobs + "/" + name)
            return condition(job, "Complete") != nil || condition(job, "Failed") != nil
        }
        return job
    }
}
