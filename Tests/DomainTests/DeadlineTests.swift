import Domain
import Testing

@Suite("Deadlines")
struct DeadlineTests {
    @Test("a body that ignores cancellation still ends at the deadline")
    func deadlineDoesNotWaitForTheBody() async throws {
        let start = ContinuousClock.now
        await #expect(throws: DeadlineExceeded.self) {
            try await withDeadline(.milliseconds(100), operation: "stuck call") {
                // Not cancellable, like a call blocked in a C library.
                await Task.detached { try? await Task.sleep(for: .seconds(3)) }.value
                return 1
            }
        }
        #expect(ContinuousClock.now - start < .seconds(1))
    }

    @Test("a fast body's result and error come through")
    func resultsPassThrough() async throws {
        #expect(try await withDeadline(.seconds(5), operation: "quick") { 42 } == 42)
        struct Boom: Error {}
        await #expect(throws: Boom.self) {
            try await withDeadline(.seconds(5), operation: "failing") { () async throws -> Int in throw Boom() }
        }
    }
}
