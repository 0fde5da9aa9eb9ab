import Foundation

/// Settings of the S3-compatible result store (`C2D_RESULT_STORE=s3`; README's configuration table lists the
/// variables). Defaults suit AWS; for another S3-compatible server set `endpoint` (path-style addressing then).
package struct S3Configuration: Sendable, Hashable {
    /// Base URL of the server, `scheme://host[:port]`. Default `https://s3.<region>.amazonaws.com`.
    /// `C2D_S3_ENDPOINT`.
    package var endpoint: String
    /// The bucket every object goes into; it must exist. `C2D_S3_BUCKET`.
    package var bucket: String
    /// Signing region. Default `us-east-1`. `C2D_S3_REGION`, else `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    package var region: String
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
    package var credentials: S3Credentials
    /// `endpoint/bucket/key` (path style) rather than `bucket.host/key` (virtual-hosted). Default: path style
    /// when `endpoint` was given, virtual-hosted for AWS. `C2D_S3_PATH_STYLE`.
    package var pathStyle: Bool
    /// Prepended to every object key, e.g. `c2d/`. Default empty. `C2D_S3_PREFIX`.
    package var prefix: String
    /// Objects larger than this go up in parts of this size (multipart upload); at least 5 MiB, S3's minimum part.
    /// Default 16 MiB. `C2D_S3_PART_BYTES`.
    package var partSize: Int
    /// Longest validity of a presigned download URL. Default 300 s. `C2D_S3_PRESIGN_SECONDS`.
    package var presignDuration: Duration
    /// Time to open a connection. Default 10 s.
    package var connectTimeout: Duration
    /// Longest time without a byte on an open connection. Default 60 s.
    package var idleTimeout: Duration
    /// Longest time for a request that moves no object bytes (head, list, delete, start or complete an upload).
    /// Default 30 s.
    package var requestTimeout: Duration
    /// Longest time to upload one object or one part. Default 15 minutes.
    package var transferTimeout: Duration
    /// Longest download streamed through the gateway. Default 6 hours.
    package var downloadTimeout: Duration
    /// Tries per request; connection failures, 5xx and 429/503 (SlowDown) are tried again. Default 4.
    package var attempts: Int
    /// Wait before the second try, doubling per try. Default 200 ms.
    package var initialBackoff: Duration

    package static let minimumPartSize = 5 << 20
    /// Defaults of ``partSize`` and ``presignDuration``, which the settings loader and README's table use as well.
    package static let defaultPartSize = 16 << 20
    package static let defaultPresignDuration = Duration.seconds(300)

    package init(
        endpoint: String? = nil, bucket: String, region: String = "us-east-1", credentials: S3Credentials,
        pathStyle: Bool? = nil, prefix: String = "", partSize: Int = defaultPartSize,
        presignDuration: Duration = defaultPresignDuration,
        connectTimeout: Duration = .seconds(10), idleTimeout: Duration = .seconds(60),
        requestTimeout: Duration = .seconds(30), transferTimeout: Duration = .seconds(900),
        downloadTimeout: Duration = .seconds(6 * 3600), attempts: Int = 4, initialBackoff: Duration = .milliseconds(200)
    ) {
        self.endpoint = endpoint ?? "https://s3.\(region).amazonaws.com"
        self.bucket = bucket
        self.region = region
        self.credentials = credentials
        self.pathStyle = pathStyle ?? (endpoint != nil)
        self.prefix = prefix
        self.partSize = max(partSize, Self.minimumPartSize)
        self.presignDuration = presignDuration
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        self.transferTimeout = transferTimeout
        self.downloadTimeout = downloadTimeout
        self.attempts = attempts
        self.initialBackoff = initialBackoff
    }

    /// A bucket name S3 accepts (3–63 lowercase letters, digits, `-` and `.`), checked at start.
    package static func isValidBucket(_ name: String) -> Bool {
        (3...63).contains(name.utf8.count)
            && name.utf8.allSatisfy {
                ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x2E
            }
    }
}
