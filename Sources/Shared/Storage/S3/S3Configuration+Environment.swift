import Foundation

extension S3Configuration {
    /// The S3 store's settings from the environment when `C2D_RESULT_STORE=s3`, nil when it is `file` or unset; every
    /// process of a deployment (gateways, workers, schedulers, publish pods) reads the same variables:
    /// `C2D_S3_BUCKET` (required), `C2D_S3_ENDPOINT`, `C2D_S3_REGION` (else `AWS_REGION`, `AWS_DEFAULT_REGION`,
    /// `us-east-1`), `C2D_S3_PATH_STYLE`, `C2D_S3_PREFIX`, `C2D_S3_PART_BYTES`, `C2D_S3_PRESIGN_SECONDS`, and the
    /// credentials `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    public static func fromEnvironment(_ env: [String: String]) throws -> S3Configuration? {
        func value(_ key: String) -> String? { env[key].flatMap { $0.isEmpty ? nil : $0 } }
        func invalid(_ message: String) -> StorageError { StorageError(code: .invalidConfiguration, message: message) }
        func integer(_ key: String, default fallback: Int, range: ClosedRange<Int>) throws -> Int {
            guard let text = value(key) else { return fallback }
            guard let number = Int(text), range.contains(number) else {
                throw invalid("\(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }
        switch value("C2D_RESULT_STORE") ?? "file" {
        case "file":
            return nil
        case "s3":
            break
        case let other:
            throw invalid("C2D_RESULT_STORE must be 'file' or 's3', not '\(other)'")
        }
        guard let bucket = value("C2D_S3_BUCKET"), isValidBucket(bucket) else {
            throw invalid(
                "C2D_RESULT_STORE=s3 needs C2D_S3_BUCKET, an existing bucket's name (3-63 lowercase letters, digits, "
                    + "'-' and '.')")
        }
        guard let keyID = value("AWS_ACCESS_KEY_ID"), let secret = value("AWS_SECRET_ACCESS_KEY") else {
            throw invalid("C2D_RESULT_STORE=s3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        }
        var pathStyle: Bool?
        if let text = value("C2D_S3_PATH_STYLE") {
            guard text == "true" || text == "false" else {
                throw invalid("C2D_S3_PATH_STYLE must be 'true' or 'false'")
            }
            pathStyle = text == "true"
        }
        let configuration = S3Configuration(
            endpoint: value("C2D_S3_ENDPOINT"), bucket: bucket,
            region: value("C2D_S3_REGION") ?? value("AWS_REGION") ?? value("AWS_DEFAULT_REGION") ?? "us-east-1",
            credentials: S3Credentials(
                accessKeyID: keyID, secretAccessKey: secret, sessionToken: value("AWS_SESSION_TOKEN")),
            pathStyle: pathStyle, prefix: value("C2D_S3_PREFIX") ?? "",
            partSize: try integer("C2D_S3_PART_BYTES", default: defaultPartSize, range: minimumPartSize...(5 << 30)),
            presignDuration: .seconds(
                try integer(
                    "C2D_S3_PRESIGN_SECONDS", default: Int(defaultPresignDuration.components.seconds),
                    range: 1...604_800
                )))
        guard let components = URLComponents(string: configuration.endpoint),
            ["http", "https"].contains(components.scheme?.lowercased() ?? ""), components.host != nil
        else {
            throw invalid("C2D_S3_ENDPOINT must be an http(s) URL like http://127.0.0.1:9000")
        }
        return configuration
    }
}
