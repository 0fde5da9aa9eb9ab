import Domain

extension Reconciler {
    /// The `removeFiles` of duty 11 for a ``ResultStore``: locations are `<job id>/<name>`, and the duty removes all
    /// of a job's results and logs at once, so each job's whole directory goes (already gone counts as removed).
    package static func removeFiles(from resultStore: any ResultStore) -> @Sendable ([String]) async throws -> Void {
        { locations in
            var jobs: [JobID] = []
            var seen = Set<JobID>()
            for location in locations {
                guard let first = location.split(separator: "/").first, let id = JobID(String(first)) else { continue }
                if seen.insert(id).inserted { jobs.append(id) }
            }
            for id in jobs { try await resultStore.deleteAll(jobID: id) }
        }
    }
}
