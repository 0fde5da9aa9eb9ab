import Domain
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Persistence

/// `GET /v1/jobs/{id}/logs/{step}`: one step's log (`configure`, `algorithm`, `publish`). With `follow=true` the
/// response streams the step's output while it runs and ends when the step does; without it, the archived log of a
/// step that is over. Log contents follow the rules of results: owner, viewers and admins only. A followed log holds
/// a slot of the gateway's stream limits (``EventStreamLimiter``) while it is open.
struct LogRoutes: Sendable {
    let streamer: StepLogStreamer
    let limiter: EventStreamLimiter

    func register(
        on router: Router<GatewayRequestContext>,
        findJob: @escaping @Sendable (GatewayRequestContext) async throws -> Job
    ) {
        router.get("/v1/jobs/{id}/logs/{step}") { request, context in
            let stepName = context.parameters.get("step") ?? ""
            guard let step = LogStep(rawValue: stepName) else {
                throw APIError(
                    .badRequest, code: "invalid_step",
                    message: "step '\(stepName.prefix(32))' is not one of configure, algorithm, publish")
            }
            let job = try await findJob(context)
            let follow = request.uri.queryParameters.get("follow").map { $0 == "true" || $0 == "1" } ?? false
            if !follow, step.phase(of: job, attempt: job.attempt) != .after {
                throw APIError(
                    .conflict, code: "step_not_over",
                    message: "the \(step.rawValue) step of job \(job.id) has not ended; add follow=true to stream it")
            }
            let lease = follow ? try limiter.acquire(caller: context.callerKey) : nil
            do {
                var body = try await streamer.body(job: job, step: step)
                if let lease { body = body.holding(lease) }
                return Response(
                    status: .ok,
                    headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-cache"], body: body)
            } catch StepLogStreamer.Failure.noLog {
                throw APIError(
                    .notFound, code: "log_not_found", message: "job \(job.id) has no \(step.rawValue) log")
            } catch StepLogStreamer.Failure.unavailable {
                throw APIError(
                    .serviceUnavailable, code: "live_logs_unavailable",
                    message: "this gateway cannot follow running steps (it sees neither the workers' C2D_WORK_DIR "
                        + "nor a Kubernetes cluster)")
            } catch is PostgresError {
                throw APIError.unavailable
            }
        }
    }
}
