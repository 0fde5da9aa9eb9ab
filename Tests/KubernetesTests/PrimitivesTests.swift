import Foundation
import NIOCore
import Testing

@testable import Kubernetes

@Suite struct TokenBucketTests {
    @Test func burstThenSteadyRate() {
        var bucket = TokenBucket(queriesPerSecond: 10, burst: 3)
        let start = ContinuousClock.now
        // The burst is free.
        for _ in 0..<3 { #expect(bucket.reserve(at: start) == .zero) }
        // Then each request waits one more 1/qps slot behind the previous reservation.
        #expect(bucket.reserve(at: start) == .milliseconds(100))
        #expect(bucket.reserve(at: start) == .milliseconds(200))
        // 300 ms later three tokens were earned, two of them already promised.
        #expect(bucket.reserve(at: start + .milliseconds(300)) == .zero)
        #expect(bucket.reserve(at: start + .milliseconds(300)) == .milliseconds(100))
    }

    @Test func refillIsCappedAtBurst() {
        var bucket = TokenBucket(queriesPerSecond: 100, burst: 2)
        let start = ContinuousClock.now
        _ = bucket.reserve(at: start)
        let later = start + .seconds(60)
        #expect(bucket.reserve(at: later) == .zero)
        #expect(bucket.reserve(at: later) == .zero)
        #expect(bucket.reserve(at: later) == .milliseconds(10))
    }

    @Test func nonPositiveRateDisablesTheLimit() {
        var bucket = TokenBucket(queriesPerSecond: 0, burst: 1)
        let now = ContinuousClock.now
        for _ in 0..<1000 { #expect(bucket.reserve(at: now) == .zero) }
    }
}

@Suite struct RetryPolicyTests {
    @Test func retryAfterIsSeconds() {
        #expect(RetryPolicy.parseRetryAfter("3") == .seconds(3))
        #expect(RetryPolicy.parseRetryAfter(" 1 ") == .seconds(1))
        #expect(RetryPolicy.parseRetryAfter("0.5") == .milliseconds(500))
        #expect(RetryPolicy.parseRetryAfter(nil) == nil)
        #expect(RetryPolicy.parseRetryAfter("") == nil)
        #expect(RetryPolicy.parseRetryAfter("-1") == nil)
        #expect(RetryPolicy.parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT") == nil)
        #expect(RetryPolicy.parseRetryAfter("86400") == nil)
    }

    @Test func backoffDoublesWithJitterAndIsCapped() {
        #expect(RetryPolicy.backoff(attempt: 1, random: 0) == .milliseconds(50))
        #expect(RetryPolicy.backoff(attempt: 1, random: 0.999) <= .milliseconds(100))
        #expect(RetryPolicy.backoff(attempt: 3, random: 0) == .milliseconds(200))
        #expect(RetryPolicy.backoff(attempt: 30, random: 0.999) <= .seconds(5))
        #expect(RetryPolicy.backoff(attempt: 30, random: 0) == .milliseconds(2500))
    }
}

@Suite struct KubernetesErrorTests {
    @Test func statusBodyBecomesATypedError() {
        let body = """
            {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
            "message":"jobs.batch \\"c2d-1\\" already exists","reason":"AlreadyExists",
            "details":{"name":"c2d-1","group":"batch","kind":"jobs"},"code":409}
            """
        let error = KubernetesError(httpStatus: 409, body: Array(body.utf8), context: "create Job c2d-1")
        #expect(error.code == .alreadyExists)
        #expect(error.httpStatus == 409)
        #expect(error.reason == "AlreadyExists")
        #expect(error.status?.details?.name == "c2d-1")
        #expect(error.message == "create Job c2d-1: jobs.batch \"c2d-1\" already exists")
        #expect(!error.isTransient)
    }

    @Test func codesFollowStatusAndReason() {
        func code(_ status: Int, _ reason: String? = nil) -> KubernetesError.Code {
            KubernetesError.code(httpStatus: status, reason: reason)
        }
        #expect(code(409) == .conflict)
        #expect(code(409, "Conflict") == .conflict)
        #expect(code(404, "NotFound") == .notFound)
        #expect(code(410, "Expired") == .gone)
        #expect(code(422, "Invalid") == .invalid)
        #expect(code(429, "TooManyRequests") == .tooManyRequests)
        #expect(code(403) == .forbidden)
        #expect(code(401) == .unauthorized)
        #expect(code(500, "Timeout") == .timeout)
        #expect(code(503) == .serverError)
        #expect(code(418) == .unexpectedResponse)
    }

    @Test func nonStatusBodyIsQuoted() {
        let error = KubernetesError(httpStatus: 502, body: Array("bad gateway\n".utf8), context: "get Job x")
        #expect(error.code == .serverError)
        #expect(error.status == nil)
        #expect(error.message == "get Job x: bad gateway")
        #expect(error.isTransient)
    }
}

@Suite struct LineFramerTests {
    @Test func linesSplitAcrossChunksAreJoined() throws {
        var framer = LineFramer()
        #expect(try framer.append(ByteBuffer(string: "{\"a\":")).isEmpty)
        #expect(try framer.append(ByteBuffer(string: "1}")).isEmpty)
        let lines = try framer.append(ByteBuffer(string: "\n{\"b\""))
        #expect(lines.map { String(buffer: $0) } == ["{\"a\":1}"])
        let more = try framer.append(ByteBuffer(string: ":2}\r\n"))
        #expect(more.map { String(buffer: $0) } == ["{\"b\":2}"])
        #expect(framer.finish() == nil)
    }

    @Test func oneChunkWithSeveralLinesAndAPartialTail() throws {
        var framer = LineFramer()
        let lines = try framer.append(ByteBuffer(string: "one\ntwo\n\nthree\nfou"))
        #expect(lines.map { String(buffer: $0) } == ["one", "two", "three"])
        #expect(try framer.append(ByteBuffer(string: "r\nfi")).map { String(buffer: $0) } == ["four"])
        #expect(framer.finish().map { String(buffer: $0) } == "fi")
        #expect(framer.finish() == nil)
    }

    @Test func everyByteInItsOwnChunk() throws {
        var framer = LineFramer()
        var lines: [String] = []
        for byte in "ab\ncd\n".utf8 {
            lines += try framer.append(ByteBuffer(bytes: [byte])).map { String(buffer: $0) }
        }
        #expect(lines == ["ab", "cd"])
    }

    @Test func overlongLineIsRejected() {
        var framer = LineFramer(maximumLineLength: 4)
        #expect(throws: KubernetesError.self) { try framer.append(ByteBuffer(string: "12345")) }
    }
}

@Suite struct RetryDecisionTests {
    @Test func throttlingRetriesEveryVerbAndHonoursRetryAfter() {
        #expect(RetryPolicy.delay(status: 429, retryAfter: "2", isIdempotent: false, attempt: 1) == .seconds(2))
        #expect(
            RetryPolicy.delay(status: 429, retryAfter: nil, isIdempotent: false, attempt: 1, random: 0)
                == .milliseconds(50))
    }

    @Test func serverErrorsRetryOnlyReads() {
        #expect(RetryPolicy.delay(status: 503, retryAfter: "1", isIdempotent: true, attempt: 1) == .seconds(1))
        #expect(RetryPolicy.delay(status: 500, retryAfter: nil, isIdempotent: false, attempt: 1) == nil)
    }

    @Test func clientErrorsAreFinal() {
        for status in [400, 401, 403, 404, 409, 410, 422] {
            #expect(RetryPolicy.delay(status: status, retryAfter: "1", isIdempotent: true, attempt: 1) == nil)
        }
    }

    @Test func onlyFailuresBeforeSendingCountAsConnectFailures() {
        #expect(KubernetesClient.isConnectFailure(IOError(errnoCode: ECONNREFUSED, reason: "connect")))
        #expect(KubernetesClient.isConnectFailure(ChannelError.connectTimeout(.seconds(5))))
        #expect(!KubernetesClient.isConnectFailure(IOError(errnoCode: ECONNRESET, reason: "read")))
        #expect(!KubernetesClient.isConnectFailure(ChannelError.ioOnClosedChannel))
    }
}

@Suite struct CredentialsTests {
    @Test func tokenFileIsReReadWhenItChanges() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-token-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/token"
        func write(_ token: String, modified: Date) throws {
            try token.write(toFile: path, atomically: false, encoding: .utf8)
            try FileManager.default.setAttributes([.modificationDate: modified], ofItemAtPath: path)
        }
        let credentials = Credentials(.bearerTokenFile(path: path))
        try write("first\n", modified: Date(timeIntervalSince1970: 1_000))
        #expect(try await credentials.bearerToken() == "first")
        try write("second", modified: Date(timeIntervalSince1970: 2_000))
        #expect(try await credentials.bearerToken() == "second")
        try FileManager.default.removeItem(atPath: path)
        await #expect(throws: KubernetesError.self) { try await credentials.bearerToken() }
    }

    @Test func staticTokensAndCertificatesNeedNoFile() async throws {
        #expect(try await Credentials(.bearerToken("t")).bearerToken() == "t")
        #expect(try await Credentials(.none).bearerToken() == nil)
    }
}
