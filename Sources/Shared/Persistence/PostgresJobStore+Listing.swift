import Domain
import Foundation

extension PostgresJobStore {
    // MARK: Listing

    /// Which jobs ``listJobs(_:)`` returns; every filter that is set must match.
    package struct JobFilter: Sendable, Hashable {
        package var status: JobStatus?
        package var owner: String?
        package var environment: String?
        package var batchID: UUID?

        package init(status: JobStatus? = nil, owner: String? = nil, environment: String? = nil, batchID: UUID? = nil) {
            self.status = status
            self.owner = owner
            self.environment = environment
            self.batchID = batchID
        }
    }

    /// The position after a listed job: its creation time in microseconds since 1970 (exact, unlike a `Date`)
    /// and its id, which breaks ties between jobs created in the same microsecond.
    package struct ListPosition: Sendable, Hashable {
        package var createdMicroseconds: Int64
        package var id: JobID

        package init(createdMicroseconds: Int64, id: JobID) {
            self.createdMicroseconds = createdMicroseconds
            self.id = id
        }
    }

    /// One page of jobs, newest first (`created_at desc, id desc`), after `position` when given; `next` is the
    /// position of the page's last job when more may follow, nil on the last page.
    ///
    /// Keyset paging, never OFFSET: each page is an index range scan that starts where the last one ended, so
    /// page 1,000 costs what page 1 does and rows inserted meanwhile neither repeat nor skip older rows. The SQL
    /// text holds only the conditions of the filters that are set (fixed fragments, so at most 32 shapes, each a
    /// cached prepared statement whose plan can use the matching index); every value is a bound parameter.
    package func listJobs(
        _ filter: JobFilter, after position: ListPosition?, limit: Int
    ) async throws -> (jobs: [Job], next: ListPosition?) {
        var conditions: [String] = []
        var parameters: [PostgresValue] = []
        func add(_ condition: (String) -> String, _ value: PostgresValue) {
            parameters.append(value)
            conditions.append(condition("$\(parameters.count)"))
        }
        if let status = filter.status { add({ "status = \($0)::smallint" }, .int(Int64(status.rawValue))) }
        if let owner = filter.owner { add({ "owner = \($0)" }, .text(owner)) }
        if let environment = filter.environment { add({ "environment = \($0)" }, .text(environment)) }
        if let batchID = filter.batchID { add({ "batch_id = \($0)" }, .uuid(batchID)) }
        if let position {
            parameters.append(.int(position.createdMicroseconds))
            parameters.append(.uuid(position.id.uuid))
            let count = parameters.count
            conditions.append(
                "(created_at, id) < (timestamptz 'epoch' + $\(count - 1)::bigint * interval '1 microsecond', $\(count))"
            )
        }
        parameters.append(.int(Int64(limit + 1)))
        let rows = try await client.query(
            """
            select \(Self.jobColumns), (extract(epoch from created_at) * 1000000)::bigint as created_us
            from jobs \(conditions.isEmpty ? "" : "where " + conditions.joined(separator: " and "))
            order by created_at desc, id desc
            limit $\(parameters.count)
            """,
            parameters)
        let page = rows.prefix(limit)
        let jobs = try page.map(Self.job(from:))
        guard rows.count > limit, let last = page.last else { return (jobs, nil) }
        let next = ListPosition(
            createdMicroseconds: Int64(try last.int("created_us")), id: JobID(uuid: try last.uuid("id")))
        return (jobs, next)
    }
}
