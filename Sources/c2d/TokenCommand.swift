import App
import ArgumentParser
import Foundation
import Gateway
import Logging
import Persistence

/// `c2d token create|list|revoke`: API tokens for batch clients and operators (docs/architecture.md, "Authorization and policy"). The token itself is
/// printed once, at creation; only its hash is stored.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Create, list and revoke API tokens for the native API.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token and print it (it is not shown again).",
            discussion: "Scopes: submit (create and stop own jobs), read (own jobs and results), operate (see and "
                + "stop every job), admin (everything).")

        @Option(help: "A name to recognise the token by, e.g. the client that uses it.")
        var name: String
        @Option(help: "The owner the token acts as; its jobs carry this owner.")
        var owner: String
        @Option(help: "Comma-separated scopes: submit, read, operate, admin.")
        var scopes: String = "submit,read"
        @Flag(help: "Print the token as JSON with its id and scopes.")
        var json = false

        func validate() throws {
            guard !name.isEmpty, name.utf8.count <= 200 else { throw ValidationError("--name must be 1 to 200 bytes") }
            guard !owner.isEmpty, owner.utf8.count <= 1024 else {
                throw ValidationError("--owner must be 1 to 1024 bytes")
            }
            if case .failure(let error) = APIScope.parseList(scopes) { throw ValidationError("--scopes: \(error)") }
            guard case .success(let parsed) = APIScope.parseList(scopes), !parsed.isEmpty else {
                throw ValidationError("--scopes needs at least one scope")
            }
        }

        func run() async throws {
            let scopes = (try? APIScope.parseList(scopes).get()) ?? []
            let token = APIToken.generate()
            let stored = try await TokenCommand.withStore { store in
                try await store.createToken(
                    name: name, owner: owner, scopes: scopes.map(\.rawValue).sorted(), hash: APIToken.hash(token))
            }
            if json {
                let object: [String: Any] = [
                    "id": stored.id.uuidString.lowercased(), "name": stored.name, "owner": stored.owner,
                    "scopes": stored.scopes, "token": token,
                ]
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print(token)
                FileHandle.standardError.write(
                    Data(
                        "token \(stored.id.uuidString.lowercased()) for \(stored.owner) with \(stored.scopes.joined(separator: ",")); store it now, it is not shown again\n"
                            .utf8))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")

        @Option(help: "Only this owner's tokens.")
        var owner: String?

        func run() async throws {
            let tokens = try await TokenCommand.withStore { try await $0.tokens(owner: owner) }
            let format = ISO8601DateFormatter()
            let header = [pad("ID", 36), pad("NAME", 20), pad("OWNER", 20), pad("SCOPES", 25), "STATE"]
            print(header.joined(separator: " "))
            for token in tokens {
                let state =
                    token.revokedAt.map { "revoked \(format.string(from: $0))" }
                    ?? token.lastUsedAt.map { "used \(format.string(from: $0))" } ?? "unused"
                print(
                    [
                        token.id.uuidString.lowercased(), pad(token.name, 20), pad(token.owner, 20),
                        pad(token.scopes.joined(separator: ","), 25), state,
                    ].joined(separator: " "))
            }
        }

        func pad(_ text: String, _ width: Int) -> String {
            text.count >= width ? String(text.prefix(width)) : text + String(repeating: " ", count: width - text.count)
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token; gateways stop accepting it within C2D_TOKEN_CACHE_SECONDS.")

        @Argument(help: "The token's id (from `c2d token list`).")
        var id: String

        func validate() throws {
            guard UUID(uuidString: id) != nil else { throw ValidationError("'\(id)' is not a token id") }
        }

        func run() async throws {
            let uuid = UUID(uuidString: id)!  // checked by validate()
            let revoked = try await TokenCommand.withStore { try await $0.revokeToken(id: uuid) }
            guard revoked else {
                // Not a mistake in the command line (no usage text): the exit code of the job commands' "no such".
                FileHandle.standardError.write(Data("c2d: no unrevoked token has id \(id); see c2d token list\n".utf8))
                throw ExitCode(ClientExit.notFound.rawValue)
            }
            print("revoked \(uuid.uuidString.lowercased())")
        }
    }

    static func withStore<T: Sendable>(_ body: (PostgresJobStore) async throws -> T) async throws -> T {
        let settings = try Launcher.settings()
        let logger = Launcher.logger(settings, unlessSet: .warning)
        let client = PostgresClient(configuration: settings.postgres, logger: logger)
        do {
            let value = try await Launcher.failClearly("token") { try await body(PostgresJobStore(client: client)) }
            await client.shutdown()
            return value
        } catch {
            await client.shutdown()
            throw error
        }
    }
}
