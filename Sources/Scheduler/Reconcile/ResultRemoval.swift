import Domain

extension Reconciler {
    /// The `removeFiles` of duty 11 for a ``ResultStore``: everything stored under each job goes (already gone
    /// counts as removed), recorded or not.
    package static func removeFiles(from resultStore: any ResultStore) -> @Sendable ([JobID]) async throws -> Void {
        { jobs in
            for id in jobs { try await resultStore.deleteAll(jobID: id) }
        }
    }
}
