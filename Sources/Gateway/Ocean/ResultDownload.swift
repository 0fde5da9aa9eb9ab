import Domain
import Foundation
import HTTPTypes
import Hummingbird
import Storage

/// Streams one stored result with `Accept-Ranges`, single-range `Range` support (206 / 416) and the caller's
/// `Content-Disposition`. Shared by the Ocean API and meant for the native download route as well, so both
/// answer ranges the same way.
struct ResultDownload {
    enum Failure: Error {
        /// The range does not fit the file; answer 416 with `Content-Range: bytes */<size>`.
        case rangeNotSatisfiable(range: String, size: Int64)
        /// The result is recorded but its file is gone from the result store.
        case fileMissing
    }

    var result: ResultFile
    var resultStore: any ReadableResultStore

    func response(
        request: Request, context: some RequestContext, contentDisposition: String, extraHeaders: HTTPFields = [:]
    ) async throws -> Response {
        var headers = extraHeaders
        headers[.contentType] = result.kind == .output ? "application/octet-stream" : "text/plain; charset=utf-8"
        headers[.contentDisposition] = contentDisposition
        headers[.acceptRanges] = "bytes"
        var range: ClosedRange<Int64>?
        if let rangeHeader = request.headers[.range] {
            guard let parsed = ByteRange.parse(rangeHeader, size: result.size) else {
                throw Failure.rangeNotSatisfiable(range: String(rangeHeader.prefix(64)), size: result.size)
            }
            range = Int64(parsed.lowerBound)...Int64(parsed.upperBound)
        }
        // Opened before the answer starts, so a file that is gone is a clean 410 rather than a cut-off body. The
        // store streams the bytes (a local file, or the object store's answer with the range passed on).
        let bytes: ResultByteStream
        do {
            bytes = try await resultStore.open(location: result.location, range: range)
        } catch let error as StorageError where error.code == .notFound || error.code == .outsideRoot {
            throw Failure.fileMissing
        }
        if let range {
            headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound)/\(result.size)"
            headers[.contentLength] = String(range.count)
            return Response(status: .partialContent, headers: headers, body: ResponseBody(asyncSequence: bytes))
        }
        headers[.contentLength] = String(result.size)
        return Response(status: .ok, headers: headers, body: ResponseBody(asyncSequence: bytes))
    }

    /// The last path component with characters that would break an unquoted header parameter removed, for
    /// Ocean's `attachment;filename=<name>`.
    static func bareFilename(_ name: String) -> String {
        let base = name.split(separator: "/").last.map(String.init) ?? name
        let cleaned = base.unicodeScalars.filter { scalar in
            scalar.value >= 0x20 && scalar.value != 0x7F && !"\";\\,".unicodeScalars.contains(scalar)
        }
        let text = String(String.UnicodeScalarView(cleaned))
        return text.isEmpty ? "result" : text
    }
}
