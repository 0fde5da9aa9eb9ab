import Domain
import Foundation
import NIOPosix
import Storage

/// Settings of the publish step.
package struct ResultPublisherConfiguration: Sendable, Hashable {
    /// Most output files one job may publish; more counts as exceeding its disk quota. Default 10 000.
    package var maxOutputFiles: Int

    package init(maxOutputFiles: Int = 10_000) {
        self.maxOutputFiles = maxOutputFiles
    }
}

/// What the publish step stored, in Ocean's result order, and whether it stored everything.
package struct PublishReport: Sendable, Hashable {
    /// Outputs, then logs, then admin logs; `index` is the position in this list.
    package var results: [ResultFile]
    /// Why not everything was stored, if it was not.
    package var failure: PublishError?

    package init(results: [ResultFile], failure: PublishError?) {
        self.results = results
        self.failure = failure
    }
}

/// Files a workspace would publish, with sizes, in result order.
package struct ResultListing: Sendable, Hashable {
    package struct Entry: Sendable, Hashable {
        /// Shown to clients: relative to `outputs/` or `logs/`, or the admin log's file name.
        package var name: String
        package var kind: ResultKind
        package var file: URL
        package var size: Int64
        /// Where it goes below the job in the result store: `<attempt>/<outputs|logs|adminlogs>/<name>`.
        package var storeName: String
    }

    package var outputs: [Entry]
    package var logs: [Entry]
    /// Regular files the listing refused (symbolic links, devices…), for the publish log.
    package var skipped: [String]

    package var outputBytes: Int64 { outputs.reduce(0) { $0 + $1.size } }
    package var logBytes: Int64 { logs.reduce(0) { $0 + $1.size } }
}

/// The publish step: stores a job's outputs, logs and admin logs in the result store, in Ocean's order (outputs
/// sorted by relative path; `logs/algorithm.log` then other logs sorted; `configure.log`, then `publish.log`
/// last), and writes its own account to `adminlogs/publish.log` before storing that file.
///
/// Only regular files are published, found without following symbolic links: the algorithm could otherwise plant
/// a link to a host file and have the host-side publisher upload it.
package struct ResultPublisher: Sendable {
    package let configuration: ResultPublisherConfiguration
    private let store: any ResultStore
    private let threadPool: NIOThreadPool

    package init(
        store: any ResultStore, configuration: ResultPublisherConfiguration = ResultPublisherConfiguration(),
        threadPool: NIOThreadPool = .singleton
    ) {
        self.store = store
        self.configuration = configuration
        self.threadPool = threadPool
    }

    /// Lists outputs and logs (not admin logs) with their sizes.
    package func list(_ workspace: JobWorkspace, attempt: Int) async throws -> ResultListing {
        try await threadPool.runIfActive {
            var skipped: [String] = []
            let outputs = Self.regularFiles(under: workspace.outputs, skipped: &skipped).map {
                ResultListing.Entry(
                    name: $0.relative, kind: .output, file: $0.url, size: $0.size,
                    storeName: "\(attempt)/outputs/\($0.relative)")
            }
            var logFiles = Self.regularFiles(under: workspace.logs, skipped: &skipped)
            if let index = logFiles.firstIndex(where: { $0.relative == "algorithm.log" }) {
                logFiles.insert(logFiles.remove(at: index), at: 0)
            }
            let logs = logFiles.map {
                ResultListing.Entry(
                    name: $0.relative, kind: .algorithmLog, file: $0.url, size: $0.size,
                    storeName: "\(attempt)/logs/\($0.relative)")
            }
            return ResultListing(outputs: outputs, logs: logs, skipped: skipped)
        }
    }

    /// Whether the outputs and logs fit the job's disk limit; nil when they do, else the reason.
    package func quotaProblem(_ listing: ResultListing, diskLimitBytes: Int64) -> String? {
        if listing.outputs.count > configuration.maxOutputFiles {
            return "the algorithm wrote \(listing.outputs.count) output files; the limit is "
                + "\(configuration.maxOutputFiles)"
        }
        let total = listing.outputBytes + listing.logBytes
        if total > diskLimitBytes {
            return "outputs and logs take \(total) bytes, above the environment's disk limit of "
                + "\(diskLimitBytes) bytes"
        }
        return nil
    }

    /// Stores everything the workspace holds for the attempt. With `includeOutputs == false` (a failed
    /// configuration, a stop, a quota breach) only logs are stored. Logs beyond the disk limit are left out, except
    /// `algorithm.log` (bounded by the sandbox's file-size limit) and the admin logs (written by c2d).
    /// A store failure does not stop the others: what was stored is listed, and the failure is reported.
    package func publish(
        jobID: JobID, attempt: Int, workspace: JobWorkspace, diskLimitBytes: Int64, includeOutputs: Bool = true
    ) async -> PublishReport {
        let log: AdminLog? = try? await AdminLog(file: workspace.publishLog, threadPool: threadPool)
        var failure: PublishError?
        var entries: [ResultListing.Entry] = []
        do {
            let listing = try await list(workspace, attempt: attempt)
            for name in listing.skipped {
                await log?.line("skipped \(name): not a regular file")
            }
            var budget = diskLimitBytes
            if includeOutputs, let problem = quotaProblem(listing, diskLimitBytes: diskLimitBytes) {
                failure = PublishError(code: .diskQuotaExceeded, reason: problem)
                await log?.line("\(problem); outputs are not published")
            } else if includeOutputs {
                entries += listing.outputs
                budget -= listing.outputBytes
            } else {
                await log?.line("publishing logs only")
            }
            for entry in listing.logs {
                if entry.name == "algorithm.log" || entry.size <= budget {
                    entries.append(entry)
                    budget -= entry.size
                } else {
                    await log?.line("skipped log \(entry.name) (\(entry.size) bytes): over the disk limit")
                }
            }
        } catch {
            failure = PublishError(code: .resultsUploadFailed, reason: "cannot list the job's files: \(error)")
            await log?.line("cannot list the job's files: \(error)")
        }
        if await exists(workspace.configureLog) {
            entries.append(adminEntry(workspace.configureLog, kind: .configurationLog, attempt: attempt))
        }

        var results: [ResultFile] = []
        for entry in entries {
            do {
                let stored = try await store.store(jobID: jobID, name: entry.storeName, from: entry.file)
                results.append(
                    ResultFile(
                        index: results.count, name: entry.name, kind: entry.kind, size: stored.size,
                        sha256: stored.sha256, location: stored.location))
                await log?.line(
                    "stored \(entry.kind.rawValue) \(entry.name): \(stored.size) bytes, sha256 \(stored.sha256)")
            } catch {
                await log?.line("failed to store \(entry.name): \(error)")
                if failure == nil {
                    failure = PublishError(
                        code: .resultsUploadFailed, reason: "could not store result '\(entry.name)': \(error)")
                }
            }
        }

        // publish.log is stored last, so its own storing cannot be in it.
        let total = results.reduce(Int64(0)) { $0 + $1.size }
        await log?.line("published \(results.count) file(s), \(total) bytes; publish.log follows")
        await log?.close()
        if log != nil {
            let entry = adminEntry(workspace.publishLog, kind: .publishLog, attempt: attempt)
            do {
                let stored = try await store.store(jobID: jobID, name: entry.storeName, from: entry.file)
                results.append(
                    ResultFile(
                        index: results.count, name: entry.name, kind: .publishLog, size: stored.size,
                        sha256: stored.sha256, location: stored.location))
            } catch {
                if failure == nil {
                    failure = PublishError(code: .resultsUploadFailed, reason: "could not store publish.log: \(error)")
                }
            }
        }
        return PublishReport(results: results, failure: failure)
    }

    private func adminEntry(_ file: URL, kind: ResultKind, attempt: Int) -> ResultListing.Entry {
        ResultListing.Entry(
            name: file.lastPathComponent, kind: kind, file: file, size: 0,
            storeName: "\(attempt)/adminlogs/\(file.lastPathComponent)")
    }

    private func exists(_ file: URL) async -> Bool {
        (try? await threadPool.runIfActive { FileManager.default.fileExists(atPath: file.path) }) ?? false
    }

    /// Regular files under `directory`, recursively, sorted by relative path (byte order), found with `lstat` so
    /// that no symbolic link is followed. Blocking.
    static func regularFiles(under directory: URL, skipped: inout [String]) -> [(
        relative: String, url: URL, size: Int64
    )] {
        var found: [(relative: String, url: URL, size: Int64)] = []
        func walk(_ url: URL, relative: String) {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: url.path) else { return }
            for name in names {
                let child = url.appendingPathComponent(name)
                let childRelative = relative.isEmpty ? name : "\(relative)/\(name)"
                // attributesOfItem uses lstat: a link reports itself, not its target.
                guard let attributes = try? FileManager.default.attributesOfItem(atPath: child.path) else { continue }
                switch attributes[.type] as? FileAttributeType {
                case .typeRegular?:
                    let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
                    found.append((childRelative, child, size))
                case .typeDirectory?:
                    walk(child, relative: childRelative)
                default:
                    skipped.append(childRelative)
                }
            }
        }
        walk(directory, relative: "")
        return found.sorted { $0.relative.utf8.lexicographicallyPrecedes($1.relative.utf8) }
    }
}
