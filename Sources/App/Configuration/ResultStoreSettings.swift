import AsyncHTTPClient
import Foundation
import Storage

/// Which result store a deployment uses (`C2D_RESULT_STORE`).
package enum ResultStoreSettings: Sendable {
    /// `C2D_RESULTS_DIR` on a filesystem every gateway, worker and scheduler sees.
    case file(URL)
    /// An S3-compatible bucket (`C2D_S3_*`, credentials from the `AWS_*` variables).
    case s3(S3Configuration)

    /// The `C2D_S3_*` variables are parsed by Storage (`S3Configuration.fromEnvironment`), which the publish pods
    /// share; this turns its error into the loader's.
    static func load(_ env: EnvironmentReader, resultsDirectory: URL) throws(ConfigurationError) -> ResultStoreSettings
    {
        do {
            guard let configuration = try S3Configuration.fromEnvironment(env.variables) else {
                return .file(resultsDirectory)
            }
            return .s3(configuration)
        } catch {
            let message = (error as? StorageError)?.message ?? "\(error)"
            // Storage's messages start with the variable they are about.
            let variable = String(message.prefix { $0.isUppercase || $0.isNumber || $0 == "_" })
            guard !variable.isEmpty else {
                throw ConfigurationError(.invalidValue, Setting.resultStore.name, ": \(message)")
            }
            let problem = message.dropFirst(variable.count)
            throw ConfigurationError(.invalidValue, variable, String(problem.drop { $0 == " " }))
        }
    }

    /// How long presigned result URLs stay valid; nil for the filesystem, which makes none.
    var presignDuration: Duration? {
        if case .s3(let configuration) = self { return configuration.presignDuration }
        return nil
    }

    /// The store, and the HTTP client to shut down when the process ends (S3 only).
    func make() throws(ConfigurationError) -> (store: any ReadableResultStore, client: HTTPClient?) {
        switch self {
        case .file(let directory):
            return (FileResultStore(root: directory), nil)
        case .s3(let configuration):
            let client = S3ResultStore.makeHTTPClient(configuration: configuration)
            do {
                return (try S3ResultStore(configuration: configuration, httpClient: client), client)
            } catch {
                try? client.syncShutdown()
                throw ConfigurationError(.invalidValue, Setting.s3Endpoint.name, ": \(error)")
            }
        }
    }
}
