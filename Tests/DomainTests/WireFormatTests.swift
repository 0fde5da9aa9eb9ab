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
