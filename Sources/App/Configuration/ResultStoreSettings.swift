import AsyncHTTPClient
import Foundation
import Storage

/// Which result store a deployment uses (`C2D_RESULT_STORE`).
package enum ResultStoreSettings: Sendable {
    /// `C2D_RESULTS_DIR` on a filesystem every gateway, worker and scheduler sees.
    case file(URL)
    /// An S3-compatible bucket (`C2D_S3_*`, credentials from the `AWS_*` variables).
    case s3(S3Configuration)

    /// The two kinds of store `C2D_RESULT_STORE` names.
    enum Kind: String, CaseIterable {
        case file, s3
    }

    /// Every process of a deployment (gateways, workers, schedulers, and publish pods that upload straight to the
    /// bucket) reads the same variables.
    package static func load(
        _ env: EnvironmentReader, resultsDirectory: URL
    ) throws(ConfigurationError) -> ResultStoreSettings {
        switch try env.choice(.resultStore, as: Kind.self) ?? .file {
        case .file: return .file(resultsDirectory)
        case .s3: return .s3(try s3(env))
        }
    }

    private static func s3(_ env: EnvironmentReader) throws(ConfigurationError) -> S3Configuration {
        guard let bucket = env.explicit(.s3Bucket), S3Configuration.isValidBucket(bucket) else {
            throw ConfigurationError(
                .missing, Setting.resultStore.name,
                "=s3 needs C2D_S3_BUCKET, an existing bucket's name (3-63 lowercase letters, digits, '-' and '.')")
        }
        guard let keyID = env.explicit(.awsCredentials), let secret = env.explicit(.awsSecretAccessKey) else {
            throw ConfigurationError(
                .missing, Setting.resultStore.name, "=s3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        var pathStyle: Bool?
        if let text = env.explicit(.s3PathStyle) {
            guard text == "true" || text == "false" else {
                throw ConfigurationError(.notAChoice, Setting.s3PathStyle.name, "must be 'true' or 'false'")
            }
            pathStyle = text == "true"
        }
        let configuration = S3Configuration(
            endpoint: env.explicit(.s3Endpoint), bucket: bucket,
            region: env.explicit(.s3Region) ?? env.explicit(.awsRegion) ?? env.explicit(.awsDefaultRegion)
                ?? "us-east-1",
            credentials: S3Credentials(
                accessKeyID: keyID, secretAccessKey: secret, sessionToken: env.explicit(.awsSessionToken)),
            pathStyle: pathStyle, prefix: env.explicit(.s3Prefix) ?? "",
            partSize: try env.integer(.s3PartBytes, in: S3Configuration.minimumPartSize...(5 << 30))!,
            presignDuration: try env.seconds(.s3PresignSeconds, in: 1...604_800)!)
        guard let components = URLComponents(string: configuration.endpoint),
            ["http", "https"].contains(components.scheme?.lowercased() ?? ""), components.host != nil
        else {
            throw ConfigurationError(
                .invalidValue, Setting.s3Endpoint.name, "must be an http(s) URL like http://127.0.0.1:9000")
        }
        return configuration
    }

    /// The variables that make ``load(_:resultsDirectory:)`` read `configuration` back, credentials aside: what a
    /// Kubernetes publish pod is given to upload straight to the bucket.
    package static func podVariables(_ configuration: S3Configuration) -> [String: String] {
        [
            Setting.resultStore.name: Kind.s3.rawValue, Setting.s3Bucket.name: configuration.bucket,
            Setting.s3Endpoint.name: configuration.endpoint, Setting.s3Region.name: configuration.region,
            Setting.s3PathStyle.name: String(configuration.pathStyle), Setting.s3Prefix.name: configuration.prefix,
            Setting.s3PartBytes.name: String(configuration.partSize),
        ]
    }

    /// The S3 store a publish pod uploads to directly, nil when the deployment keeps results on a filesystem
    /// (the pod then uploads through the gateway).
    package static func publishTarget(_ env: EnvironmentReader) throws(ConfigurationError) -> S3Configuration? {
        if case .s3(let configuration) = try load(env, resultsDirectory: URL(fileURLWithPath: "/")) {
            return configuration
        }
        return nil
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
