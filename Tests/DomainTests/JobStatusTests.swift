import Domain
import Foundation
import Testing

@Suite("Job state machine")
struct JobStatusTests {
    /// Every legal move, written out independently of the implementation.
    static let legal: [(JobStatus, JobStatus)] = [
        (.queued, .expiredInQueue), (.queued, .started), (.queued, .configuringVolumes), (.queued, .finished),
        (.started, .imagePullFailed), (.started, .configuringVolumes), (.started, .publishingResults),
        (.started, .finished),
        (.configuringVolumes, .volumeCreationFailed), (.configuringVolumes, .containerCreationFailed),
        (.configuringVolumes, .provisioningSuccess), (.configuringVolumes, .dataProvisioningFailed),
        (.configuringVolumes, .algorithmProvisioningFailed), (.configuringVolumes, .imagePullFailed),
        (.configuringVolumes, .publishingResults), (.configuringVolumes, .finished),
        (.provisioningSuccess, .runningAlgorithm), (.provisioningSuccess, .imagePullFailed),
        (.provisioningSuccess, .publishingResults), (.provisioningSuccess, .finished),
        (.runningAlgorithm, .algorithmFailed), (.runningAlgorithm, .diskQuotaExceeded),
        (.runningAlgorithm, .filteringResults), (.runningAlgorithm, .publishingResults),
        (.runningAlgorithm, .finished),
        (.filteringResults, .publishingResults), (.filteringResults, .finished),
        (.publishingResults, .resultsUploadFailed), (.publishingResults, .finished),
    ]

    @Test("every pair of statuses is legal exactly when the table says so")
    func everyTransition() throws {
        let legalSet = Set(Self.legal.map { "\($0.0.rawValue)>\($0.1.rawValue)" })
        for from in JobStatus.allCases {
            for to in JobStatus.allCases {
                let expected = legalSet.contains("\(from.rawValue)>\(to.rawValue)")
                #expect(from.canMove(to: to) == expected, "\(from) → \(to)")
                if expected {
                    #expect(try from.transition(to: to) == to)
                } else {
                    #expect(throws: IllegalTransition.self) { try from.transition(to: to) }
                }
            }
        }
    }

    @Test("terminal statuses have no successors and non-terminal ones do")
    func terminality() {
        for status in JobStatus.allCases {
            #expect(status.successors.isEmpty == status.isTerminal, "\(status)")
        }
    }

    @Test("an illegal transition names both states")
    func illegalMessage() {
        let error = IllegalTransition(from: .finished, to: .runningAlgorithm)
        #expect(error.description.contains("70"))
        #expect(error.description.contains("40"))
    }

    @Test("Ocean's legacy texts are kept, trailing space included")
    func texts() {
        #expect(JobStatus.queued.text == "Warming up")
        #expect(JobStatus.runningAlgorithm.text == "Running algorithm ")
        #expect(JobStatus.finished.text == "Job finished")
        #expect(JobStatus.dataProvisioningFailed.rawValue == 31)
    }
}

@Suite("Job ids")
struct JobIDTests {
    @Test func roundTrip() throws {
        let id = JobID()
        #expect(id.description.count == 32)
        #expect(JobID(id.description) == id)
        #expect(JobID(id.uuid.uuidString) == id)
        #expect(JobID("not-a-job") == nil)
        #expect(JobID(String(repeating: "g", count: 32)) == nil)
    }

    @Test("the hex form is the UUID's, lowercase and without dashes, for any UUID version")
    func description() {
        for uuid in [UUID(), JobID.timeOrderedUUID(), UUID(uuidString: "00FF10A0-0000-4000-8000-ABCDEF012345")!] {
            #expect(
                JobID(uuid: uuid).description == uuid.uuidString.lowercased().replacingOccurrences(of: "-", with: ""))
        }
    }

    @Test("new ids are UUID version 7: the time in milliseconds first, so later ids sort after earlier ones")
    func timeOrdered() {
        let instant = Date(timeIntervalSince1970: 1_764_979_200.123)
        let id = JobID(uuid: JobID.timeOrderedUUID(now: instant))
        #expect(id.description.hasPrefix(String(1_764_979_200_123, radix: 16).leftPadded(to: 12)))
        let bytes = id.uuid.uuid
        #expect(bytes.6 >> 4 == 7)
        #expect(bytes.8 >> 6 == 0b10)
        let later = JobID(uuid: JobID.timeOrderedUUID(now: instant.addingTimeInterval(0.001)))
        #expect(id.description < later.description)
        // 74 random bits: ids made in the same millisecond differ.
        #expect(Set((0..<1000).map { _ in JobID.timeOrderedUUID(now: instant) }).count == 1000)
        #expect(JobID().uuid.uuid.6 >> 4 == 7)
    }

    @Test("precedes orders ids as their texts sort")
    func precedes() {
        let ids = (0..<200).map { _ in JobID(uuid: UUID()) }
        for (a, b) in zip(ids, ids.dropFirst()) {
            #expect(a.precedes(b) == (a.description < b.description))
        }
        #expect(!ids[0].precedes(ids[0]))
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        String(repeating: "0", count: max(0, length - count)) + self
    }
}
