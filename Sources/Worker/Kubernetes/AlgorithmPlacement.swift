import Domain

/// Where and with what an algorithm pod runs beyond cpu and memory: the GPUs its job asked for become
/// `nvidia.com/gpu` requests and limits (extended resources are never overcommitted, so the two must be equal), and
/// the pod gets the environment's `gpuNodeSelector` so it lands on a node that has them. A job without GPUs gets
/// neither. Kept apart from the manifest builder so the decision is one pure function, whatever shape the pods take.
package struct AlgorithmPlacement: Sendable, Hashable {
    /// Extra container resources, by Kubernetes resource name.
    package var extendedResources: [String: String]
    /// The pod's node selector; nil when the job asks for no GPU or the environment names none.
    package var nodeSelector: [String: String]?

    /// The device plugin resource of NVIDIA GPUs.
    package static let gpuResourceName = "nvidia.com/gpu"

    package static func of(_ job: Domain.Job, environment: ComputeEnvironment) -> AlgorithmPlacement {
        let gpus = environment.gpuCount(of: job.workflow)
        guard gpus > 0 else { return AlgorithmPlacement(extendedResources: [:], nodeSelector: nil) }
        return AlgorithmPlacement(
            extendedResources: [gpuResourceName: String(gpus)],
            nodeSelector: environment.gpuNodeSelector.isEmpty ? nil : environment.gpuNodeSelector)
    }
}
