import AsyncHTTPClient
import Domain
import Foundation
import NIOCore
import NIOHTTP1
import Storage

/// A `ResultStore` for a publish pod that uploads straight to the S3-compatible result store (multipart for large
/// files), then registers each file with the gateway
/// (`POST /internal/v1/jobs/{id}/attempts/{attempt}/stored-results/{kind}/{name}` with the attempt's upload token):
/// no result bytes pass through the gateway and no volume is shared. The gateway checks that the object is where
/// it belongs and has the size (and digest) claimed before it records it, as for an upload.
package struct DirectUploadResultStore: ResultStore {
    let objectStore: S3ResultStore
    let configuration: HTTPUploadConfiguration
    let httpClient: HTTPClient

    package init(objectStore: S3ResultStore, configuration: HTTPUploadConfiguration, httpClient: HTTPClient) {
        self.objectStore = objectStore
        self.configuration = configuration
        self.httpClient = httpClient
    }

    /// The store a publish step uses: straight to the bucket `s3` names (the deployment's S3 store), else uploads
    /// through the gateway. The second value is the S3 client to shut down afterwards.
    package static func publishStore(
        upload: HTTPUploadConfiguration, httpClient: HTTPClient, s3: S3Configuration?
    ) throws -> (store: any ResultStore, objectStoreClient: HTTPClient?) {
        guard let s3 else {
            return (HTTPUploadResultStore(configuration: upload, httpClient: httpClient), nil)
        }
        let client = S3ResultStore.makeHTTPClient(configuration: s3)
        do {
            let objectStore = try S3ResultStore(configuration: s3, httpClient: client)
            return (
                DirectUploadResultStore(objectStore: objectStore, configuration: upload, httpClient: httpClient), client
            )
        } catch {
            try? client.syncShutdown()
            throw error
        }
    }

    package func store(jobID: JobID, name: String, from file: URL) async throws -> StoredObject {
        let (kind, resultName) = try HTTPUploadResultStore.kindAndName(storeName: name, attempt: configuration.attempt)
        let stored = try await objectStore.store(jobID: jobID, name: name, from: file)
        let url = Self.registrationURL(
            baseURL: configuration.baseURL, jobID: jobID, attempt: configuration.attempt, kind: kind,
            name: resultName)
        let json = String(
            decoding: try JSONEncoder().encode(
                Registration(location: stored.location, size: stored.size, sha256: stored.sha256)),
            as: UTF8.self)
        var backoff = configuration.initialBackoff
        var lastFailure = UploadError(code: .unavailable, reason: "no try was made")
        for attempt in 1...max(1, configuration.attempts) {
            if attempt > 1 {
                try await Task.sleep(for: backoff)
                backoff = min(backoff * 2, configuration.maximumBackoff)
            }
            do {
                try await register(url: url, json: json)
                return stored
            } catch let error as UploadError where error.code == .unavailable {
                lastFailure = error
            }
        }
        throw lastFailure
    }

    private struct Registration: Encodable {
        var location: String
        var size: Int64
        var sha256: String
    }

    package func deleteAll(jobID: JobID) async throws {
        throw UploadError(code: .unsupported, reason: "results cannot be deleted from a pod")
    }

    private func register(url: String, json: String) async throws {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "authorization", value: "Bearer \(configuration.token)")
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: json))
        let status: Int
        let text: String
        do {
            let response = try await httpClient.execute(request, timeout: TimeAmount(configuration.connectTimeout * 3))
            status = Int(response.status.code)
            text = String(buffer: try await response.body.collect(upTo: 64 << 10))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw UploadError(
                code: .unavailable,
                reason: "registering with \(HTTPUploadResultStore.redacted(url)) failed: \(error)")
        }
        guard (200..<300).contains(status) else {
            throw UploadError(
                code: status == 429 || status >= 500 ? .unavailable : .rejected,
                reason: "the gateway answered \(status) to \(HTTPUploadResultStore.redacted(url)): \(text.prefix(500))",
                status: status)
        }
    }

    /// The registration endpoint for one file; the same name encoding as uploads.
    package static func registrationURL(
        baseURL: String, jobID: JobID, attempt: Int, kind: ResultKind, name: String
    ) -> String {
        HTTPUploadResultStore.uploadURL(baseURL: baseURL, jobID: jobID, attempt: attempt, kind: kind, name: name)
            .replacingOccurrences(
                of: "/attempts/\(attempt)/results/", with: "/attempts/\(attempt)/stored-results/")
    }
}
