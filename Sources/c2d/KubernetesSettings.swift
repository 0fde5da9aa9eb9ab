import Foundation
import Kubernetes
import Worker

/// The Kubernetes executor's settings (`C2D_EXECUTOR=kubernetes`), shared by workers (which create and watch the
/// objects) and the scheduler (which reconciles them). The API server and credentials come from `KUBECONFIG`
/// (or `~/.kube/config`), else the in-cluster service account.
struct KubernetesSettings {
    var client: KubernetesConfiguration
    var executor: KubernetesExecutorConfiguration

    static func load(_ env: [String: String], settings: Settings) throws -> KubernetesSettings {
        func value(_ key: String) -> String? { env[key].flatMap { $0.isEmpty ? nil : $0 } }
        func number(_ key: String, default fallback: Double, range: ClosedRange<Double>) throws -> Double {
            guard let text = value(key) else { return fallback }
            guard let number = Double(text), range.contains(number) else {
                throw Settings.Invalid(
                    description: "\(key) must be a number in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }
        var client: KubernetesConfiguration
        do {
            client = try KubernetesConfiguration.fromEnvironment(environment: env)
        } catch {
            throw Settings.Invalid(description: "C2D_EXECUTOR=kubernetes: \(error)")
        }
        client.queriesPerSecond = try number(
            "C2D_KUBERNETES_QPS", default: client.queriesPerSecond, range: 0.1...100_000)
        client.burst = Int(try number("C2D_KUBERNETES_BURST", default: Double(client.burst), range: 1...100_000))
        var executor = KubernetesExecutorConfiguration()
        executor.namespace = value("C2D_KUBERNETES_NAMESPACE") ?? client.namespace
        client.namespace = executor.namespace
        executor.podImage = value("C2D_POD_IMAGE") ?? executor.podImage
        executor.resultsURL = value("C2D_RESULTS_URL") ?? executor.resultsURL
        executor.imagePullTimeout = .seconds(
            try number("C2D_IMAGE_PULL_TIMEOUT_SECONDS", default: 300, range: 1...86_400))
        executor.allowPrivateURLs = settings.allowPrivateURLs
        executor.operatorKeySecret = value("C2D_KUBERNETES_OPERATOR_KEY_SECRET") ?? executor.operatorKeySecret
        executor.finishedTTLSeconds = Int(
            try number(
                "C2D_KUBERNETES_FINISHED_TTL_SECONDS", default: Double(executor.finishedTTLSeconds),
                range: 0...604_800))
        return KubernetesSettings(client: client, executor: executor)
    }
}
