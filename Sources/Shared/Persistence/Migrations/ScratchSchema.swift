import Foundation

/// A schema of its own for a run that must not touch a deployment's tables — a test, a benchmark: every client whose
/// `search_path` names it works there, and dropping it removes everything the run made.
package struct ScratchSchema: Sendable, Hashable {
    package let name: String

    /// `<prefix>_<8 random hex digits>`: lowercase, so it needs no quoting.
    package init(prefix: String) {
        name = prefix + "_" + UUID().uuidString.prefix(8).lowercased()
    }

    package func create(using client: PostgresClient) async throws {
        try await client.executeScript("create schema \(name)")
    }

    package func drop(using client: PostgresClient) async throws {
        try await client.executeScript("drop schema if exists \(name) cascade")
    }
}
