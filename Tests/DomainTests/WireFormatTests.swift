import Domain
import Foundation
import Testing

@Suite("Wire formats")
struct WireFormatTests {
    @Test("a status event encodes to the documented JSON and decodes back to the same value")
    func jobEventRoundTrip() throws {
        let jobID = try #require(JobID("0123456789abcdef0123456789abcdef"))
        let time = Date(timeIntervalSince1970: 1_796_464_800.125)
        let event = JobEvent(
            id: 17, jobID: jobID, owner: "alice", environment: "cpu", attempt: 2, status: .runningAlgorithm,
            time: time, reason: nil, trace: RequestTrace(requestID: "req-1", traceparent: nil))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(event), as: UTF8.self)
        #expect(
            json
                == #"{"attempt":2,"environment":"cpu","id":17,"jobId":"0123456789abcdef0123456789abcdef","#
                + #""owner":"alice","requestId":"req-1","status":40,"statusText":"Running algorithm ","#
                + #""time":"2026-12-05T10:00:00.125Z"}"#)
        let decoded = try JSONDecoder().decode(JobEvent.self, from: Data(json.utf8))
        #expect(decoded.id == 17 && decoded.jobID == jobID && decoded.status == .runningAlgorithm)
        #expect(abs(decoded.time.timeIntervalSince(time)) < 0.001)
        #expect(decoded.trace == RequestTrace(requestID: "req-1") && decoded.reason == nil)
        #expect(event.routingKey == "job.cpu.40")
    }

    @Test("a status event's hand-written JSON is byte for byte what JSONEncoder with sorted keys writes")
    func jobEventJSONMatchesTheEncoder() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let controls = String(String.UnicodeScalarView((0..<0x20).compactMap { Unicode.Scalar(UInt32($0)) }))
        let texts = ["alice", "", "a/b \"q\" \\ ü \u{1F600}", controls, "x\u{7F}\u{2028}y"]
        var generator = SystemRandomNumberGenerator()
        for (index, text) in texts.enumerated() {
            for status in [JobStatus.queued, .runningAlgorithm, .finished] {
                let event = JobEvent(
                    id: Int.random(in: 1...Int.max, using: &generator), jobID: JobID(), owner: text,
                    environment: "env-\(index)", attempt: index, status: status,
                    time: Date(timeIntervalSince1970: Double.random(in: 0..<4_102_444_800, using: &generator)),
                    reason: index.isMultiple(of: 2) ? text : nil,
                    trace: RequestTrace(
                        requestID: index == 1 ? nil : "req-\(text)", traceparent: index > 2 ? "00-\(index)-01" : nil))
                #expect(event.json == Array(try encoder.encode(event)), "\(event)")
                #expect(try JSONDecoder().decode(JobEvent.self, from: Data(event.json)).owner == text)
            }
        }
    }

    @Test("event times read their milliseconds from the microsecond, and otherwise match Foundation's ISO 8601")
    func eventTimes() {
        let foundation = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            // Microseconds since 1970 (Postgres's precision) up to 2100, where a double still holds them to half a
            // microsecond, and off a millisecond's edge, where Foundation's reading of the binary fraction is right.
            var microseconds = Int64.random(in: 0..<4_102_444_800_000_000, using: &generator)
            if microseconds % 1_000 == 0 { microseconds += 1 }
            let date = Date(timeIntervalSince1970: Double(microseconds) / 1_000_000)
            #expect(JobEvent.formatTime(date) == date.formatted(foundation), "\(microseconds)")
        }
        // Exactly on a millisecond: the binary fraction of .123 is below it, and must not read .122.
        for milliseconds in [0, 1, 123, 999] {
            let date = Date(timeIntervalSince1970: 1_765_000_000 + Double(milliseconds) / 1_000)
            #expect(JobEvent.formatTime(date) == "2025-12-06T05:46:40.\(String(format: "%03d", milliseconds))Z")
        }
        #expect(JobEvent.formatTime(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(JobEvent.formatTime(Date(timeIntervalSince1970: 1_709_251_199.9999)) == "2024-02-29T23:59:59.999Z")
    }

    @Test("an event with an unknown status code or a malformed time is refused, not misread")
    func jobEventRefusesWhatItCannotRead() {
        let base = #"{"id":1,"jobId":"0123456789abcdef0123456789abcdef","owner":"o","environment":"e","attempt":1,"#
        for tail in [#""status":999,"time":"2026-12-05T10:00:00Z"}"#, #""status":40,"time":"yesterday"}"#] {
            #expect(throws: DecodingError.self) {
                try JSONDecoder().decode(JobEvent.self, from: Data((base + tail).utf8))
            }
        }
    }

    @Test("a job message is the documented body and headers")
    func jobMessage() throws {
        let jobID = try #require(JobID("0123456789abcdef0123456789abcdef"))
        let message = JobMessage(jobId: jobID, environment: "cpu")
        #expect(
            String(decoding: message.body, as: UTF8.self)
                == #"{"jobId":"0123456789abcdef0123456789abcdef","environment":"cpu"}"#)
        #expect(try JSONDecoder().decode(JobMessage.self, from: Data(message.body)) == message)
        #expect(
            message.headers(trace: RequestTrace(requestID: "r", traceparent: "00-a-b-01"))
                == ["c2d-job-id": jobID.description, "x-request-id": "r", "traceparent": "00-a-b-01"])
    }
}
