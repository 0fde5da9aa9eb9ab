/// The messaging settings beyond the AMQP URL.
package struct MessagingSettings: Sendable {
    /// How often a job message may return to its queue (worker died holding it) before it is dead-lettered; the
    /// queue's `x-delivery-limit`. Changing it for an existing queue is a declaration conflict: delete the queue (or
    /// use a new environment) first.
    package var deliveryLimit: Int
    /// Claims a dead-lettered job needs to be failed as poison; also the planner's lost leases before poison.
    package var poisonAttempts: Int
    /// How long the event stream keeps events, in RabbitMQ's `x-max-age` form (a number and one of Y M D h m s).
    package var eventsMaxAge: String

    static func load(_ env: EnvironmentReader) throws(ConfigurationError) -> MessagingSettings {
        let deliveryLimit = try env.integer(.deliveryLimit, in: 1...1000)!
        let maxAge = try env.value(.eventsMaxAge, mustBe: "a positive number followed by Y, M, D, h, m or s") {
            (text: String) -> String? in
            guard let unit = text.last, "YMDhms".contains(unit), let number = Int(text.dropLast()), number > 0 else {
                return nil
            }
            return text
        }!
        return MessagingSettings(
            deliveryLimit: deliveryLimit,
            poisonAttempts: try env.integer(.poisonAttempts, in: 1...1000) ?? deliveryLimit,
            eventsMaxAge: maxAge)
    }
}
