import Testing

@testable import AMQP

@Suite("ConfirmTracker (no broker)")
struct ConfirmTrackerTests {
    private let far = ContinuousClock.now + .seconds(60)

    @Test("tags are sequential and a multiple ack settles every older tag")
    func multipleAck() {
        var tracker = ConfirmTracker<String>()
        for name in ["a", "b", "c", "d"] { tracker.append(name, deadline: far) }
        #expect(tracker.inFlight == 4)
        #expect(tracker.nextTag == 5)
        #expect(tracker.settle(tag: 3, multiple: true).map(\.payload) == ["a", "b", "c"])
        #expect(tracker.inFlight == 1)
        #expect(tracker.settle(tag: 3, multiple: true).isEmpty)  // already settled
        #expect(tracker.settle(tag: 4, multiple: false).map(\.payload) == ["d"])
        #expect(tracker.inFlight == 0)
        #expect(tracker.nextTag == 5)
    }

    @Test("out-of-order single acks, then a multiple ack skips what is settled")
    func outOfOrder() {
        var tracker = ConfirmTracker<Int>()
        for value in 1...5 { tracker.append(value, deadline: far) }
        #expect(tracker.settle(tag: 4, multiple: false).map(\.payload) == [4])
        #expect(tracker.settle(tag: 2, multiple: false).map(\.payload) == [2])
        #expect(tracker.settle(tag: 5, multiple: true).map(\.payload) == [1, 3, 5])
        #expect(tracker.inFlight == 0)
        #expect(tracker.settle(tag: 9, multiple: false).isEmpty)  // unknown tag
    }

    @Test("a return marks the oldest matching unsettled publish")
    func returned() {
        var tracker = ConfirmTracker<String>()
        for name in ["x", "y", "x"] { tracker.append(name, deadline: far) }
        #expect(tracker.markReturned { $0 == "x" })
        let settled = tracker.settle(tag: 3, multiple: true)
        #expect(settled.map(\.returned) == [true, false, false])
        #expect(!tracker.markReturned { $0 == "x" })
    }

    @Test("expiry removes overdue publishes from the front only")
    func expiry() {
        var tracker = ConfirmTracker<Int>()
        let now = ContinuousClock.now
        tracker.append(1, deadline: now - .seconds(2))
        tracker.append(2, deadline: now - .seconds(1))
        tracker.append(3, deadline: now + .seconds(5))
        #expect(tracker.expire(now: now) == [1, 2])
        #expect(tracker.inFlight == 1)
        #expect(tracker.settle(tag: 1, multiple: false).isEmpty)
        #expect(tracker.settle(tag: 3, multiple: false).map(\.payload) == [3])
        #expect(tracker.removeAll().isEmpty)
        #expect(tracker.nextTag == 1)
    }
}

@Suite("AMQP URL parsing (no broker)")
struct AMQPEndpointTests {
    @Test func full() throws {
        let endpoint = try AMQPEndpoint(url: "amqp://us%40er:p%3Ass@rabbit.example:5673/prod")
        #expect(endpoint.user == "us@er")
        #expect(endpoint.password == "p:ss")
        #expect(endpoint.host == "rabbit.example")
        #expect(endpoint.port == 5673)
        #expect(endpoint.vhost == "prod")
        #expect(!endpoint.redacted.contains("p:ss"))
    }

    @Test func defaults() throws {
        for url in ["amqp://localhost", "amqp://localhost/", "amqp://localhost/%2f", "amqp://localhost/%2F"] {
            let endpoint = try AMQPEndpoint(url: url)
            #expect(endpoint.vhost == "/", "\(url)")
            #expect(endpoint.port == 5672)
            #expect(endpoint.user == "guest")
        }
        #expect(try AMQPEndpoint(url: "amqp://[::1]:5671/").host == "::1")
    }

    @Test func invalid() {
        for url in ["http://localhost", "amqps://localhost", "amqp://", "amqp://host:port/", "amqp://host:70000"] {
            #expect(throws: AMQPError.self, "\(url)") { try AMQPEndpoint(url: url) }
            do {
                _ = try AMQPEndpoint(url: url)
            } catch {
                #expect(error.code == .invalidURL)
            }
        }
    }

    @Test func environment() {
        #expect(AMQPConfiguration.fromEnvironment([:]).url == AMQPConfiguration.defaultURL)
        #expect(AMQPConfiguration.fromEnvironment(["AMQP_URL": "amqp://a:b@h:1/"]).url == "amqp://a:b@h:1/")
    }
}
