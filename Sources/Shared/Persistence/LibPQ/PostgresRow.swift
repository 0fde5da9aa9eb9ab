import Foundation

/// One result row, copied out of libpq's result in text format. Accessors look columns up by name and decode
/// the text; they throw ``PostgresError/Code/decoding`` naming the column (never its value) when the column is
/// missing, NULL where a value is required, or not in the expected format. `json`/`jsonb` come back through
/// ``string(_:)``.
package struct PostgresRow: Sendable {
    /// Column names and positions, shared by all rows of a result.
    final class Columns: Sendable {
        let names: [String]
        let indexByName: [String: Int]

        init(names: [String]) {
            self.names = names
            var indexByName: [String: Int] = [:]
            for (index, name) in names.enumerated() where indexByName[name] == nil {
                indexByName[name] = index  // the first of duplicate names wins, as in most drivers
            }
            self.indexByName = indexByName
        }
    }

    let columns: Columns
    let values: [String?]

    init(columns: Columns, values: [String?]) {
        self.columns = columns
        self.values = values
    }

    /// The column names in result order.
    package var columnNames: [String] { columns.names }

    /// The raw text of a column, nil for NULL.
    package func raw(_ column: String) throws(PostgresError) -> String? {
        guard let index = columns.indexByName[column] else {
            throw .decoding("no column \"\(column)\" in the result")
        }
        return values[index]
    }

    private func required(_ column: String) throws(PostgresError) -> String {
        guard let text = try raw(column) else { throw .decoding("column \"\(column)\" is NULL") }
        return text
    }

    private func decode<T>(
        _ column: String,
        as type: String,
        _ parse: (String) -> T?
    ) throws(PostgresError) -> T? {
        guard let text = try raw(column) else { return nil }
        guard let value = parse(text) else { throw .decoding("column \"\(column)\" is not a valid \(type)") }
        return value
    }

    private func nonNull<T>(_ column: String, _ value: T?) throws(PostgresError) -> T {
        guard let value else { throw .decoding("column \"\(column)\" is NULL") }
        return value
    }

    package func string(_ column: String) throws(PostgresError) -> String { try required(column) }

    package func optionalString(_ column: String) throws(PostgresError) -> String? { try raw(column) }

    /// int2, int4 or int8.
    package func int(_ column: String) throws(PostgresError) -> Int { try nonNull(column, optionalInt(column)) }

    package func optionalInt(_ column: String) throws(PostgresError) -> Int? {
        try decode(column, as: "integer") { Int($0) }
    }

    package func bool(_ column: String) throws(PostgresError) -> Bool { try nonNull(column, optionalBool(column)) }

    package func optionalBool(_ column: String) throws(PostgresError) -> Bool? {
        try decode(column, as: "boolean") { $0 == "t" ? true : $0 == "f" ? false : nil }
    }

    /// float4, float8 or numeric (numeric may lose precision).
    package func double(_ column: String) throws(PostgresError) -> Double {
        try nonNull(column, optionalDouble(column))
    }

    package func optionalDouble(_ column: String) throws(PostgresError) -> Double? {
        try decode(column, as: "floating-point number", PostgresText.decodeDouble)
    }

    package func uuid(_ column: String) throws(PostgresError) -> UUID { try nonNull(column, optionalUUID(column)) }

    package func optionalUUID(_ column: String) throws(PostgresError) -> UUID? {
        try decode(column, as: "uuid") { UUID(uuidString: $0) }
    }

    /// timestamptz (also timestamp, taken as UTC, and date, taken as midnight UTC).
    package func date(_ column: String) throws(PostgresError) -> Date { try nonNull(column, optionalDate(column)) }

    package func optionalDate(_ column: String) throws(PostgresError) -> Date? {
        try decode(column, as: "timestamp", PostgresText.decodeDate)
    }

    /// bytea in hex output format.
    package func bytes(_ column: String) throws(PostgresError) -> [UInt8] {
        try nonNull(column, optionalBytes(column))
    }

    package func optionalBytes(_ column: String) throws(PostgresError) -> [UInt8]? {
        try decode(column, as: "bytea", PostgresText.decodeHex)
    }

    /// A one-dimensional text[] (or any array whose elements are wanted as text); throws if the column or an
    /// element is NULL.
    package func stringArray(_ column: String) throws(PostgresError) -> [String] {
        let elements = try nonNull(column, optionalStringArray(column))
        var strings: [String] = []
        strings.reserveCapacity(elements.count)
        for element in elements {
            guard let element else { throw .decoding("column \"\(column)\" has a NULL element") }
            strings.append(element)
        }
        return strings
    }

    /// A one-dimensional array whose elements may be NULL (unlike ``stringArray(_:)``); nil if the column is NULL.
    package func optionalStringArray(_ column: String) throws(PostgresError) -> [String?]? {
        try decode(column, as: "one-dimensional array", PostgresText.decodeArray)
    }
}
