import Foundation
import Kubernetes
import Worker

/// The Kubernetes executor's settings (`C2D_EXECUTOR=kubernetes`), shared by workers (which create and watch the
/// objects) and the scheduler (which reconciles them). The API server and credentials come from `KUBECONFIG`
/// (or `~/.kube/config`), else the in-cluster service account.
package struct KubernetesSettings: Sendable {
    package var client: KubernetesConfiguration
    package var executor: KubernetesExecutorConfiguration

    static func load(_ env: EnvironmentReader, settings: Settings) throws(ConfigurationError) -> KubernetesSettings {
        var client: KubernetesConfiguration
        do {
            client = try KubernetesConfiguration.fromEnvironment(environment: env.variables)
        } catch {
            throw ConfigurationError(
                .invalidValue, Setting.kubeconfig.name, ": \(error) (C2D_EXECUTOR=kubernetes needs a cluster)")
        }
        client.queriesPerSecond = try env.number(.kubernetesQps, in: 0.1...100_000)!
        client.burst = try env.integer(.kubernetesBurst, in: 1...100_000)!
        var executor = KubernetesExecutorConfiguration()
        executor.namespace = env.text(.kubernetesNamespace) ?? client.namespace
        client.namespace = executor.namespace
        executor.podImage = env.text(.podImage)!
        executor.resultsURL = env.text(.resultsUrl)!
        executor.imagePullTimeout = try env.seconds(.imagePullTimeoutSeconds, in: 1...86_400)!
        executor.allowPrivateURLs = settings.allowPrivateURLs
        executor.operatorKeySecret = env.text(.kubernetesOperatorKeySecret)!
        executor.finishedTTLSeconds = try env.integer(.kubernetesFinishedTtlSeconds, in: 0...604_800)!
        if let secret = env.explicit(.kubernetesS3Secret) {
            guard case .s3(let s3) = settings.resultStore else {
                throw ConfigurationError(
                    .conflicting, Setting.kubernetesS3Secret.name,
                    "needs C2D_RESULT_STORE=s3: publish pods upload straight to the bucket only when there is one")
            }
            executor.directUpload = .init(
                variables: ResultStoreSettings.podVariables(s3), credentialsSecret: secret)
        }
        return KubernetesSettings(client: client, executor: executor)
    }
}
