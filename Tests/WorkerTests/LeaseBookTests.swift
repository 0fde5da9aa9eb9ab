import Domain
import Persistence
import Testing

@testable import Worker

@Suite("Lease book")
struct LeaseBookTests {
    static let start = ContinuousClock.now

    static func claim(_ number: Int = 1) -> JobClaim {
        JobClaim(jobID: JobID(), attempt: 1, number: number, workerID: "me")
    }

    @Test func renewedClaimsStayAndRefusedOnesEnd() {
        var book = LeaseBook(lease: .seconds(30))
        let kept = Self.claim()
        let stopped = Self.claim()
        let lost = Self.claim()
        for claim in [kept, stopped, lost] { book.hold(claim, at: Self.start) }
        let ended = book.renewed(
            [kept, stopped, lost], states: [kept.jobID: .held, stopped.jobID: .stopRequested],
            sentAt: Self.start + .seconds(10))
        #expect(Dictionary(uniqueKeysWithValues: ended) == [stopped.jobID: .stopRequested, lost.jobID: .lost])
        #expect(book.claims == [kept])
    }

    @Test func aWorkerThatCannotRenewForAWholeLeaseGivesUpByItsOwnClock() {
        var book = LeaseBook(lease: .seconds(30))
        let old = Self.claim()
        let young = Self.claim()
        book.hold(old, at: Self.start)
        book.hold(young, at: Self.start + .seconds(20))
        // Postgres unreachable: within the lease the worker keeps running.
        let early = book.renewalFailed(at: Self.start + .seconds(29))
        #expect(early.isEmpty)
        // A whole lease since the last renewal reached the database: the job may be another worker's now.
        let ended = book.renewalFailed(at: Self.start + .seconds(30))
        #expect(ended.map(\.0) == [old.jobID] && ended.map(\.1) == [.lost])
        #expect(book.claims == [young])
        // A successful renewal restarts the clock.
        _ = book.renewed([young], states: [young.jobID: .held], sentAt: Self.start + .seconds(45))
        let later = book.renewalFailed(at: Self.start + .seconds(74))
        #expect(later.isEmpty)
    }

    @Test func anOutdatedClaimIsNeitherRenewedNorReleasedInPlaceOfTheNewOne() {
        var book = LeaseBook(lease: .seconds(30))
        let first = Self.claim(1)
        var second = first
        second.number = 2
        book.hold(first, at: Self.start)
        book.hold(second, at: Self.start)
        let releasedOld = book.release(first)
        #expect(!releasedOld)
        let ended = book.renewed([first], states: [:], sentAt: Self.start)
        #expect(ended.isEmpty)
        #expect(book.claims == [second])
        let releasedNew = book.release(second)
        #expect(releasedNew)
        #expect(book.claims.isEmpty)
    }
}
