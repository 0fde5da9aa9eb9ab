import AsyncHTTPClient
import Foundation
import Storage

/// Which result store a deployment uses (`C2D_RESULT_STORE`), read from the environment like every setting.
enum ResultStoreSettings {
    /// `C2D_RESULTS_DIR` on a filesystem every gateway, worker and scheduler sees.
    case file(URL)
    /// An S3-compatible bucket (`C2D_S3_*`, credentials from the `AWS_*` variables).
    case s3(S3Configuration)

    static func load(_ env: [String: String], resultsDirectory: URL) throws -> ResultStoreSettings {
        do {
            guard let configuration = try S3Configuration.fromEnvironment(env) else { return .file(resultsDirectory) }
            return .s3(configuration)
        } catch let error as StorageError {
            throw Settings.Invalid(description: error.message)
        }
    }

    /// How long presigned result URLs stay valid (only S3 makes them).
    var presignDuration: Duration {
        if case .s3(let configuration) = self { return configuration.presignDuration }
        return .seconds(300)
    }

    /// The store, and the HTTP client to shut down when the process ends (S3 only).
    func make() throws -> (store: any ReadableResultStore, client: HTTPClient?) {
        switch self {
        case .file(let directory):
            return (FileResultStore(root: directory), nil)
        case .s3(let configuration):
            let client = S3ResultStore.makeHTTPClient(configuration: configuration)
            do {
                return (try S3ResultStore(configuration: configuration, httpClient: client), client)
            } catch {
                try? client.syncShutdown()
                throw Settings.Invalid(description: "C2D_S3_ENDPOINT: \(error)")
            }
        }
    }
}
