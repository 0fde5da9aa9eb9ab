import Persistence
import TestSupport
import Testing

@Suite("Retrying transactions", .serialized)
struct RetryingTransactionTests {
    /// Classic write skew: each transaction reads the sum and inserts a row that would break the rule if both
    /// committed. Under SERIALIZABLE one of them is aborted with 40001; the helper runs it again, and it then
    /// sees the other's row. Both calls succeed and the rule holds.
    @Test("serialization failures are retried until the transaction commits")
    func writeSkewIsRetried() async throws {
        try await TestDatabase.withSchema({ $0.maximumConnections = 4 }) { client, _ in
            try await client.executeScript("create table slots (taken int not null)")
            let attempts = AttemptCounter()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<2 {
                    group.addTask {
                        try await client.withRetryingTransaction(isolation: .serializable) { tx in
                            await attempts.increment()
                            let taken = try await tx.query("select count(*) as n from slots")[0].int("n")
                            // Give the other transaction time to read the same snapshot.
                            try await Task.sleep(for: .milliseconds(200))
                            try await tx.execute("insert into slots values ($1)", [.int(Int64(taken + 1))])
                        }
                    }
                }
                try await group.waitForAll()
            }
            let values = try await client.query("select taken from slots order by taken").map { try $0.int("taken") }
            #expect(values == [1, 2])
            #expect(await attempts.value >= 3, "one of the two transactions must have run again")
        }
    }
}

actor AttemptCounter {
    private(set) var value = 0
    func increment() { value += 1 }
}
