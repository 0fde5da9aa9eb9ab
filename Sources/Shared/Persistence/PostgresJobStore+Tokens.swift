import Foundation

extension PostgresJobStore {
    /// An API token as stored: never the token itself, only its hash.
    package struct StoredToken: Sendable, Hashable {
        package var id: UUID
        package var name: String
        package var owner: String
        package var scopes: [String]
        package var createdAt: Date
        package var lastUsedAt: Date?
        package var revokedAt: Date?
    }

    package func createToken(name: String, owner: String, scopes: [String], hash: [UInt8]) async throws -> StoredToken {
        let rows = try await client.query(
            """
            insert into api_tokens (id, name, owner, scopes, token_hash) values ($1, $2, $3, $4, $5)
            returning \(Self.tokenColumns)
            """,
            [.uuid(UUID()), .text(name), .text(owner), .textArray(scopes), .bytea(hash)])
        return try Self.token(from: rows[0])
    }

    /// Tokens newest first, revoked ones included (they show when they were revoked).
    package func tokens(owner: String? = nil) async throws -> [StoredToken] {
        try await client.query(
            """
            select \(Self.tokenColumns) from api_tokens where $1::text is null or owner = $1
            order by created_at desc, id desc
            """,
            [.optional(owner)]
        ).map(Self.token(from:))
    }

    /// Revokes a token; false if no unrevoked token has this id.
    package func revokeToken(id: UUID) async throws -> Bool {
        try await !client.query(
            "update api_tokens set revoked_at = now() where id = $1 and revoked_at is null returning id", [.uuid(id)]
        ).isEmpty
    }

    /// The live (unrevoked) token with this hash.
    package func liveToken(hash: [UInt8]) async throws -> StoredToken? {
        try await client.query(
            "select \(Self.tokenColumns) from api_tokens where token_hash = $1 and revoked_at is null", [.bytea(hash)]
        ).first.map(Self.token(from:))
    }

    /// Records use of a token (callers throttle this: it is a write).
    package func touchToken(id: UUID) async throws {
        _ = try await client.query("update api_tokens set last_used_at = now() where id = $1", [.uuid(id)])
    }

    static let tokenColumns = "id, name, owner, scopes, created_at, last_used_at, revoked_at"

    static func token(from row: PostgresRow) throws -> StoredToken {
        StoredToken(
            id: try row.uuid("id"), name: try row.string("name"), owner: try row.string("owner"),
            scopes: try row.stringArray("scopes"), createdAt: try row.date("created_at"),
            lastUsedAt: try row.optionalDate("last_used_at"), revokedAt: try row.optionalDate("revoked_at"))
    }
}
