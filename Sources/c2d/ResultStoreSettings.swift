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
        func value(_ key: String) -> String? { env[key].flatMap { $0.isEmpty ? nil : $0 } }
        switch value("C2D_RESULT_STORE") ?? "file" {
        case "file":
            return .file(resultsDirectory)
        case "s3":
            guard let bucket = value("C2D_S3_BUCKET"), S3Configuration.isValidBucket(bucket) else {
                throw Settings.Invalid(
                    description: "C2D_RESULT_STORE=s3 needs C2D_S3_BUCKET, an existing bucket's name "
                        + "(3-63 lowercase letters, digits, '-' and '.')")
            }
            guard let keyID = value("AWS_ACCESS_KEY_ID"), let secret = value("AWS_SECRET_ACCESS_KEY") else {
                throw Settings.Invalid(
                    description: "C2D_RESULT_STORE=s3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
            }
            let region = value("C2D_S3_REGION") ?? value("AWS_REGION") ?? value("AWS_DEFAULT_REGION") ?? "us-east-1"
            var pathStyle: Bool?
            if let text = value("C2D_S3_PATH_STYLE") {
                guard text == "true" || text == "false" else {
                    throw Settings.Invalid(description: "C2D_S3_PATH_STYLE must be 'true' or 'false'")
                }
                pathStyle = text == "true"
            }
            let partBytes = try integer(env, "C2D_S3_PART_BYTES", default: 16 << 20, range: (5 << 20)...(5 << 30))
            let presign = try integer(env, "C2D_S3_PRESIGN_SECONDS", default: 300, range: 1...604_800)
            let configuration = S3Configuration(
                endpoint: value("C2D_S3_ENDPOINT"), bucket: bucket, region: region,
                credentials: S3Credentials(
                    accessKeyID: keyID, secretAccessKey: secret, sessionToken: value("AWS_SESSION_TOKEN")),
                pathStyle: pathStyle, prefix: value("C2D_S3_PREFIX") ?? "", partSize: partBytes,
                presignDuration: .seconds(presign))
            guard
                let components = URLComponents(string: configuration.endpoint),
                ["http", "https"].contains(components.scheme?.lowercased() ?? ""), components.host != nil
            else {
                throw Settings.Invalid(description: "C2D_S3_ENDPOINT must be an http(s) URL like http://127.0.0.1:9000")
            }
            return .s3(configuration)
        case let other:
            throw Settings.Invalid(description: "C2D_RESULT_STORE must be 'file' or 's3', not '\(other)'")
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

    private static func integer(
        _ env: [String: String], _ key: String, default value: Int, range: ClosedRange<Int>
    ) throws -> Int {
        guard let text = env[key], !text.isEmpty else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw Settings.Invalid(
                description: "\(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }
}
