/// A job's status. The number is the external contract: Ocean's legacy and ocean-node codes as one set
/// (docs/architecture.md, "Statuses and outcomes"). The texts are the legacy operator-service texts where Ocean has one.
package enum JobStatus: Int, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case queued = 1
    case expiredInQueue = 2
    case started = 10
    case imagePullFailed = 11
    case configuringVolumes = 20
    case volumeCreationFailed = 21
    case containerCreationFailed = 22
    case provisioningSuccess = 30
    case dataProvisioningFailed = 31
    case algorithmProvisioningFailed = 32
    case runningAlgorithm = 40
    case algorithmFailed = 41
    case diskQuotaExceeded = 42
    case filteringResults = 50
    case publishingResults = 60
    case resultsUploadFailed = 62
    case finished = 70

    /// The legacy operator-service text (`statusText`), trailing space of "Running algorithm " included.
    package var text: String {
        switch self {
        case .queued: "Warming up"
        case .expiredInQueue: "Job expired in queue"
        case .started: "Job started"
        case .imagePullFailed: "Pulling algorithm image failed"
        case .configuringVolumes: "Configuring volumes"
        case .volumeCreationFailed: "Volume creation failed"
        case .containerCreationFailed: "Container creation failed"
        case .provisioningSuccess: "Provisioning success"
        case .dataProvisioningFailed: "Data provisioning failed"
        case .algorithmProvisioningFailed: "Algorithm provisioning failed"
        case .runningAlgorithm: "Running algorithm "
        case .algorithmFailed: "Failed to run algorithm"
        case .diskQuotaExceeded: "Error: disk quota exceeded"
        case .filteringResults: "Filtering results"
        case .publishingResults: "Publishing results"
        case .resultsUploadFailed: "Failed to upload results to storage"
        case .finished: "Job finished"
        }
    }

    /// Terminal statuses end a job: nothing moves it again.
    package var isTerminal: Bool {
        switch self {
        case .expiredInQueue, .imagePullFailed, .volumeCreationFailed, .containerCreationFailed,
            .dataProvisioningFailed, .algorithmProvisioningFailed, .algorithmFailed, .diskQuotaExceeded,
            .resultsUploadFailed, .finished:
            true
        default:
            false
        }
    }

    /// Every status a job may move to from this one. Failures and stops are recorded after the logs are
    /// archived, so a failing step moves straight to its terminal code; a stop or timeout goes through
    /// publishing (logs first) to `finished`.
    package var successors: Set<JobStatus> {
        switch self {
        case .queued: [.expiredInQueue, .started, .configuringVolumes, .finished]
        case .started: [.imagePullFailed, .configuringVolumes, .publishingResults, .finished]
        case .configuringVolumes:
            [
                .volumeCreationFailed, .containerCreationFailed, .provisioningSuccess, .dataProvisioningFailed,
                .algorithmProvisioningFailed, .imagePullFailed, .publishingResults, .finished,
            ]
        case .provisioningSuccess: [.runningAlgorithm, .imagePullFailed, .publishingResults, .finished]
        case .runningAlgorithm:
            [.algorithmFailed, .diskQuotaExceeded, .filteringResults, .publishingResults, .finished]
        case .filteringResults: [.publishingResults, .finished]
        case .publishingResults: [.resultsUploadFailed, .finished]
        default: []
        }
    }

    package func canMove(to next: JobStatus) -> Bool {
        successors.contains(next)
    }

    package var description: String { "\(rawValue) (\(text.trimmingTrailingSpace))" }
}

/// An illegal status change; names both states.
package struct IllegalTransition: Error, CustomStringConvertible, Sendable {
    package var from: JobStatus
    package var to: JobStatus

    package init(from: JobStatus, to: JobStatus) {
        self.from = from
        self.to = to
    }

    package var description: String { "a job cannot move from status \(from) to \(to)" }
}

extension JobStatus {
    /// Checks a status change against the state machine.
    package func transition(to next: JobStatus) throws(IllegalTransition) -> JobStatus {
        guard canMove(to: next) else { throw IllegalTransition(from: self, to: next) }
        return next
    }
}

/// How a terminal job ended, independent of the step it ended in.
package enum JobOutcome: String, Sendable, Codable, CaseIterable {
    case succeeded
    case failed
    case stopped
    case timedOut = "timed_out"
}

extension String {
    fileprivate var trimmingTrailingSpace: String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}
