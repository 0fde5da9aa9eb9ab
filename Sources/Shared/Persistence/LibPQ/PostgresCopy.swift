import Foundation

// The bulk path: COPY FROM STDIN in text format on a transaction's connection.
//
// COPY rather than pipeline mode: a pipeline still sends one Bind/Execute per row and the server still plans and
// executes one INSERT per row, while COPY streams rows into the table through a single executor pass, which is what
// makes 10,000 rows cost milliseconds. Pipeline mode would pay off for many *different* statements in one round
// trip, not for many rows of one table.

extension PostgresTransaction {
    /// Copies `rows` into `table` with one `COPY … FROM STDIN` and returns the number of rows written.
    ///
    /// `table` (optionally `schema.table`) and `columns` are SQL identifiers chosen by the program, never user data:
    /// they must be lowercase identifiers (`[a-z_][a-z0-9_]*`, at most 63 bytes) and are quoted in the statement.
    /// Each row holds one value per column, in the same order. Values are sent in Postgres's text input format, so
    /// the column types decide how they are read; columns left out take their defaults. A failure (e.g. a unique
    /// violation) aborts the transaction, so nothing of the COPY remains. The connection's `statement_timeout`
    /// bounds the whole COPY.
    @discardableResult
    package func copy(into table: String, columns: [String], rows: [[PostgresValue]]) async throws -> Int {
        let statement = try PostgresCopy.statement(table: table, columns: columns)
        guard !rows.isEmpty else { return 0 }
        let data = try PostgresCopy.encode(rows: rows, columnCount: columns.count)
        do {
            return try await connection.copyIn(statement, data: data)
        } catch let error as StaleConnectionError {
            throw error.underlying
        }
    }
}

/// The COPY statement and COPY's text format; separate from the connection so both can be tested without a server.
enum PostgresCopy {
    /// `COPY "table" ("a", "b") FROM STDIN`, after checking every name.
    static func statement(table: String, columns: [String]) throws(PostgresError) -> String {
        let parts = table.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= 2, parts.allSatisfy(isIdentifier) else {
            throw PostgresError(code: .invalidArgument, message: "COPY: invalid table name \"\(table)\"")
        }
        guard !columns.isEmpty else {
            throw PostgresError(code: .invalidArgument, message: "COPY: no columns given")
        }
        for column in columns where !isIdentifier(column) {
            throw PostgresError(code: .invalidArgument, message: "COPY: invalid column name \"\(column)\"")
        }
        let quotedTable = parts.map { "\"\($0)\"" }.joined(separator: ".")
        let quotedColumns = columns.map { "\"\($0)\"" }.joined(separator: ", ")
        return "COPY \(quotedTable) (\(quotedColumns)) FROM STDIN"
    }

    /// A lowercase SQL identifier that is the same quoted or unquoted.
    static func isIdentifier(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, bytes.count <= 63 else { return false }
        let isLetter = { (byte: UInt8) in (0x61...0x7A).contains(byte) || byte == 0x5F }
        return isLetter(first) && bytes.allSatisfy { isLetter($0) || (0x30...0x39).contains($0) }
    }

    /// Rows in COPY text format: values separated by tabs, rows ended by newlines, NULL as `\N`, and backslash,
    /// tab, newline and carriage return inside values escaped with a backslash. Escaping works on UTF-8 bytes: those
    /// four are ASCII, and no byte of a multi-byte UTF-8 sequence is ASCII.
    static func encode(rows: [[PostgresValue]], columnCount: Int) throws(PostgresError) -> [UInt8] {
        var data: [UInt8] = []
        data.reserveCapacity(rows.count * columnCount * 16)
        for (number, row) in rows.enumerated() {
            guard row.count == columnCount else {
                throw PostgresError(
                    code: .invalidArgument,
                    message: "COPY: row \(number) has \(row.count) values for \(columnCount) columns"
                )
            }
            for (index, value) in row.enumerated() {
                if index > 0 { data.append(tab) }
                append(value, to: &data)
            }
            data.append(newline)
        }
        return data
    }

    private static let tab = UInt8(ascii: "\t")
    private static let newline = UInt8(ascii: "\n")
    private static let backslash = UInt8(ascii: "\\")

    private static func append(_ value: PostgresValue, to data: inout [UInt8]) {
        switch value {
        case .null:
            data.append(backslash)
            data.append(UInt8(ascii: "N"))
        case .int(let number):
            data.append(contentsOf: String(number).utf8)  // digits and '-' only: nothing to escape
        case .uuid(let uuid):
            appendUUID(uuid, to: &data)
        case .text(let text), .json(let text):
            appendEscaped(text, to: &data)
        default:
            // nil only for .null, handled above.
            appendEscaped(value.textEncoding ?? "", to: &data)
        }
    }

    /// Appends the text, copying runs without special bytes in one go: most values (JSON documents, names) have
    /// few or no tabs, newlines or backslashes, so this is mostly memcpy.
    private static func appendEscaped(_ text: String, to data: inout [UInt8]) {
        var text = text
        text.withUTF8 { bytes in
            var runStart = 0
            for index in 0..<bytes.count {
                let escape: UInt8
                switch bytes[index] {
                case backslash: escape = backslash
                case tab: escape = UInt8(ascii: "t")
                case newline: escape = UInt8(ascii: "n")
                case UInt8(ascii: "\r"): escape = UInt8(ascii: "r")
                default: continue
                }
                data.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                data.append(backslash)
                data.append(escape)
                runStart = index + 1
            }
            data.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
    }

    /// The canonical lowercase form, without going through `uuidString` (which formats with sprintf).
    private static func appendUUID(_ uuid: UUID, to data: inout [UInt8]) {
        withUnsafeBytes(of: uuid.uuid) { bytes in
            for (index, byte) in bytes.enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 { data.append(UInt8(ascii: "-")) }
                data.append(hexDigits[Int(byte >> 4)])
                data.append(hexDigits[Int(byte & 0x0F)])
            }
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)
}
