/// Polls `condition` until it holds or `limit` passes; returns whether it held. Never asserts on timing itself.
package func eventually(
    within limit: Duration, every interval: Duration = .milliseconds(20), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}

/// Polls `condition` until it holds; throws "timed out waiting until <what>" when it still does not after `timeout`
/// (a generous bound, never a timing assertion).
package func waitUntil(
    _ what: String, timeout: Duration = .seconds(30), every interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async throws {
    guard try await eventually(within: timeout, every: interval, condition) else {
        throw TestFailure("timed out waiting until \(what)")
    }
}
