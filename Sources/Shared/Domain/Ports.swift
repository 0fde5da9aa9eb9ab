import Foundation

/// Where outputs and logs are kept once a job publishes them: what the job steps need (store) and result expiry
/// (delete). Reading them back is `ReadableResultStore` (module Storage): the filesystem or an S3-compatible store.
package protocol ResultStore: Sendable {
    /// Copies the file at `file` into the store under the job, returning where it is and its size and digest.
    func store(jobID: JobID, name: String, from file: URL) async throws -> StoredObject
    /// Removes everything stored for a job.
    func deleteAll(jobID: JobID) async throws
}

package struct StoredObject: Sendable, Hashable {
    package var location: String
    package var size: Int64
    package var sha256: String

    package init(location: String, size: Int64, sha256: String) {
        self.location = location
        self.size = size
        self.sha256 = sha256
    }
}
