import Foundation
import Gateway
import Logging
import Scheduler
import Testing

@testable import App

@Suite struct SettingsTests {
    /// README's configuration table is the declarations' (`c2d settings` prints it): a setting added, removed or
    /// given a new default in code without README following fails here.
    @Test func readmeTableIsTheDeclarations() throws {
        let readme = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
                "../../README.md"
            ).standardizedFileURL, encoding: .utf8)
        let lines = readme.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex(of: "| variable | default | meaning |"))
        let table = lines[start...].prefix { $0.hasPrefix("|") }.joined(separator: "\n") + "\n"
        #expect(table == Setting.markdownTable())
    }

    @Test func defaultsLoadFromAnEmptyEnvironment() throws {
        let settings = try Settings.load([:])
        #expect(settings.scheduler.reconciler.interval == .seconds(2))
        #expect(settings.scheduler.dispatcher.sweepInterval == .seconds(2))
        #expect(settings.scheduler.leaderLease == .seconds(10))
        #expect(settings.leaseDuration == .seconds(30))
        #expect(settings.leaseGrace == .seconds(10))
        #expect(settings.messaging.deliveryLimit == 5)
        #expect(settings.messaging.poisonAttempts == 5)
        #expect(settings.gateway.tokenCacheTTL == .seconds(5))
        #expect(settings.kubernetes == nil)
        #expect(settings.logLevel == .info)
    }

    @Test func fractionalSecondsAreKept() throws {
        let settings = try Settings.load(["C2D_SCHEDULER_RECONCILE_INTERVAL_SECONDS": "0.25"])
        #expect(settings.scheduler.reconciler.interval == .milliseconds(250))
    }

    /// Each bad value stops the load with one error naming the variable.
    @Test(arguments: [
        ("C2D_LEASE_SECONDS", "1", ConfigurationError.Code.outOfRange),
        ("C2D_LEASE_SECONDS", "thirty", .notANumber),
        ("C2D_SCHEDULER_BATCH_SIZE", "0", .outOfRange),
        ("C2D_DISPATCH_SWEEP_SECONDS", "fast", .notANumber),
        ("C2D_EXECUTOR", "docker", .notAChoice),
        ("C2D_API_AUTH", "basic", .notAChoice),
        ("LOG_LEVEL", "loud", .notAChoice),
        ("C2D_ALLOW_PRIVATE_URLS", "yes", .notAChoice),
        ("C2D_EVENTS_MAX_AGE", "7 days", .invalidValue),
        ("C2D_METRICS_ADDRESS", "9100", .invalidValue),
        ("C2D_METRICS_TOKEN", "short", .invalidValue),
        ("C2D_SANDBOX_NETWORK_POOL", "10.0.0.0/30", .invalidValue),
        ("C2D_OPERATOR_PRIVATE_KEY", "00", .invalidValue),
        ("C2D_ALLOWED_PROVIDERS", "0x12", .invalidValue),
    ])
    func badValueNamesItsVariable(variable: String, value: String, code: ConfigurationError.Code) {
        #expect {
            try Settings.load([variable: value])
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.variable == variable && error.code == code && error.description.hasPrefix(variable)
        }
    }

    @Test func openDevelopmentAndProvidersConflict() {
        #expect(throws: ConfigurationError.self) {
            try Settings.load([
                "C2D_OCEAN_OPEN_DEVELOPMENT": "1",
                "C2D_ALLOWED_PROVIDERS": "0x0000000000000000000000000000000000000001",
            ])
        }
    }

    /// A secret's value never appears in the message.
    @Test func privateKeyIsNotEchoed() {
        let key = String(repeating: "z", count: 64)
        #expect {
            try Settings.load(["C2D_OPERATOR_PRIVATE_KEY": key])
        } throws: { error in
            !"\(error)".contains(key)
        }
    }

    @Test func everyVariableIsDeclaredOnce() {
        let names = Setting.all.map(\.name)
        #expect(Set(names).count == names.count)
    }
}
