import Foundation

/// How to reach RabbitMQ and how the client behaves on the connection. A value; read it once at startup.
package struct AMQPConfiguration: Sendable {
    /// Exponential reconnect backoff: the first retry waits about `initial`, each further one twice as long, up
    /// to `maximum`; every wait is jittered to between half and all of its nominal value, so a restarted broker
    /// is not hit by every client at the same instant.
    package struct Backoff: Sendable, Hashable {
        package var initial: Duration
        package var maximum: Duration

        package init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5)) {
            self.initial = initial
            self.maximum = maximum
        }
    }

    /// `amqp://user:password@host:port/vhost`. Credentials and vhost are percent-decoded; an empty path or `/`
    /// means the vhost `/` (write `%2f` to name it explicitly). Port defaults to 5672, credentials to guest/guest.
    package var url: String
    /// Heartbeat interval negotiated with the broker (default 10 s). A dead peer is noticed after about two intervals.
    package var heartbeat: Duration
    /// Budget for TCP connect plus the AMQP handshake and login (default 5 s).
    package var connectTimeout: Duration
    /// Budget for every synchronous AMQP method (declare, qos, consume, close…) and for a publisher confirm to arrive
    /// (default 10 s). rabbitmq-c drops the connection when an RPC times out, and the client then reconnects.
    package var rpcTimeout: Duration
    /// Most unconfirmed publishes in flight on one connection (default 256); further publishers wait for a free slot.
    package var confirmWindow: Int
    /// Delay between reconnect attempts (default 100 ms doubling to 5 s, with jitter).
    package var reconnectBackoff: Backoff

    package init(
        url: String,
        heartbeat: Duration = .seconds(10),
        connectTimeout: Duration = .seconds(5),
        rpcTimeout: Duration = .seconds(10),
        confirmWindow: Int = 256,
        reconnectBackoff: Backoff = Backoff()
    ) {
        self.url = url
        self.heartbeat = heartbeat
        self.connectTimeout = connectTimeout
        self.rpcTimeout = rpcTimeout
        self.confirmWindow = confirmWindow
        self.reconnectBackoff = reconnectBackoff
    }

    /// The default URL, a broker on loopback with the guest account.
    package static let defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

    /// Reads `AMQP_URL` (default ``defaultURL``); the other settings keep their defaults.
    package static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> AMQPConfiguration {
        let url = environment["AMQP_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? defaultURL
        return AMQPConfiguration(url: url)
    }
}

/// The parts of an `amqp://` URL, decoded.
package struct AMQPEndpoint: Sendable, Hashable {
    package var host: String
    package var port: Int
    package var user: String
    package var password: String
    package var vhost: String

    /// Parses by hand rather than with `URLComponents`, which mangles percent-encoded vhosts such as `%2f`.
    package init(url: String) throws(AMQPError) {
        func invalid(_ why: String) -> AMQPError {
            AMQPError(
                code: .invalidURL, message: "invalid AMQP URL (\(why)); expected amqp://user:password@host:port/vhost")
        }
        guard url.hasPrefix("amqp://") else {
            throw url.hasPrefix("amqps://") ? invalid("TLS (amqps) is not supported") : invalid("scheme must be amqp")
        }
        var rest = Substring(url.dropFirst("amqp://".count))
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        if path.contains("?") || path.contains("#") { throw invalid("query parameters are not supported") }
        var user = "guest"
        var password = "guest"
        var hostPort = rest
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            hostPort = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = String(userInfo[..<colon])
                password = String(userInfo[userInfo.index(after: colon)...])
            } else {
                user = String(userInfo)
                password = ""
            }
            guard let decodedUser = user.removingPercentEncoding, let decodedPassword = password.removingPercentEncoding
            else { throw invalid("bad percent-encoding in credentials") }
            user = decodedUser
            password = decodedPassword
        }
        var host = String(hostPort)
        var port = 5672
        if hostPort.hasPrefix("[") {  // IPv6 literal: [::1]:5672
            guard let close = hostPort.firstIndex(of: "]") else { throw invalid("unterminated IPv6 address") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let parsed = Int(after.dropFirst()) else { throw invalid("bad port") }
                port = parsed
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            guard let parsed = Int(hostPort[hostPort.index(after: colon)...]) else { throw invalid("bad port") }
            port = parsed
        }
        guard !host.isEmpty else { throw invalid("missing host") }
        guard (1...65535).contains(port) else { throw invalid("port out of range") }
        guard let vhost = path.removingPercentEncoding else { throw invalid("bad percent-encoding in vhost") }
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.vhost = vhost.isEmpty ? "/" : vhost
    }

    /// For logs: never the password.
    var redacted: String { "amqp://\(user)@\(host):\(port)/\(vhost == "/" ? "" : vhost)" }
}
