import Testing

@testable import Worker

@Suite("Slot gate")
struct SlotGateTests {
    @Test func theDeliveryThatTakesTheLastSlotPausesAndTheFirstFreedSlotResumes() {
        var gate = SlotGate(capacity: 2)
        #expect(gate.initialPrefetch == 2)
        #expect(gate.take() == (true, .none))
        #expect(gate.take() == (true, .pause))
        #expect(gate.paused && gate.freeSlots == 0)
        // Sent before the broker processed the pause: refused, and no second pause.
        #expect(gate.take() == (false, .none))
        #expect(gate.release() == .resume(prefetch: 1))
        #expect(gate.release() == .none)
        #expect(gate.freeSlots == 2 && !gate.paused)
    }

    @Test func aFullGateThatWasNotPausedPausesOnTheRefusal() {
        var gate = SlotGate(capacity: 1)
        #expect(gate.take() == (true, .pause))
        #expect(gate.release() == .resume(prefetch: 1))
        // A release without a pause resumes nothing.
        #expect(gate.take() == (true, .pause))
        #expect(gate.release() == .resume(prefetch: 1))
        #expect(gate.release() == .none)
        #expect(gate.freeSlots == 1)
    }

    @Test func thousandsOfSlotsStillClaimAFewDozenDeliveriesAtATime() {
        var gate = SlotGate(capacity: 10_000, maximumPrefetch: 64)
        #expect(gate.initialPrefetch == 64)
        for _ in 0..<10_000 { _ = gate.take() }
        #expect(gate.paused)
        #expect(gate.release() == .resume(prefetch: 1))
        for _ in 0..<500 { _ = gate.release() }
        #expect(gate.freeSlots == 501)
        #expect(gate.take() == (true, .none))
    }

    @Test func capacityIsAtLeastOne() {
        var gate = SlotGate(capacity: 0)
        #expect(gate.capacity == 1)
        #expect(gate.take() == (true, .pause))
    }
}
