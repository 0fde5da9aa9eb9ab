import Foundation
import Testing

@testable import Persistence

@Suite("Postgres text formats")
struct PostgresTextTests {
    @Test(
        "array literals",
        arguments: [
            ("{}", []),
            ("{a,b}", ["a", "b"]),
            (#"{"a,b","c \"d\"",NULL,"NULL",e\\f}"#, ["a,b", #"c "d""#, nil, "NULL", #"e\f"#]),
            (#"[0:1]={x,""}"#, ["x", ""]),
        ] as [(String, [String?])])
    func arrays(literal: String, expected: [String?]) {
        #expect(PostgresText.decodeArray(literal) == expected)
    }

    @Test("malformed or nested arrays are rejected", arguments: ["", "{", "{{a},{b}}", #"{"a}"#, "a,b"])
    func badArrays(literal: String) {
        #expect(PostgresText.decodeArray(literal) == nil)
    }

    @Test("array encoding round-trips")
    func arrayEncoding() {
        let values: [String?] = ["", "a,b", #"q"uote"#, #"back\slash"#, nil, "NULL", "{x}", " space "]
        #expect(PostgresText.decodeArray(PostgresText.encodeArray(values)) == values)
    }

    @Test(
        "timestamps",
        arguments: [
            ("2024-05-01 12:00:00+00", 1_714_564_800.0),
            ("2024-05-01 12:00:00.5+00", 1_714_564_800.5),
            ("2024-05-01 14:30:00.25+02:30", 1_714_564_800.25),
            ("2024-05-01 12:00:00", 1_714_564_800.0),
            ("2024-05-01", 1_714_521_600.0),
            ("1969-12-31 23:59:59.999999+00", -0.000_001),
            ("1900-02-28 00:00:00-05:17:32", -2_203_958_548.0),
        ])
    func timestamps(text: String, seconds: Double) throws {
        let date = try #require(PostgresText.decodeDate(text))
        #expect(abs(date.timeIntervalSince1970 - seconds) < 0.000_001)
    }

    @Test("bad timestamps are rejected", arguments: ["", "2024-13-01", "2024-05-01 12:00", "0044-03-15 BC"])
    func badTimestamps(text: String) {
        #expect(PostgresText.decodeDate(text) == nil)
    }

    @Test("timestamp encoding round-trips at microsecond precision")
    func timestampEncoding() throws {
        for seconds in [0.0, 1_715_000_000.123456, -1_000_000.000_001, 253_402_300_799.999_999] {
            let date = Date(timeIntervalSince1970: seconds)
            let decoded = try #require(PostgresText.decodeDate(PostgresText.encode(date)))
            #expect(abs(decoded.timeIntervalSince(date)) < 0.000_001)
        }
        #expect(PostgresText.encode(Date(timeIntervalSince1970: 0)) == "1970-01-01 00:00:00.000000+00")
        #expect(PostgresText.decodeDate("infinity") == .distantFuture)
    }

    @Test("bytea hex")
    func bytea() {
        let bytes: [UInt8] = [0, 0x7f, 0x80, 0xff, 0x5c]
        #expect(PostgresText.encodeHex(bytes) == #"\x007f80ff5c"#)
        #expect(PostgresText.decodeHex(#"\x007F80ff5c"#) == bytes)
        #expect(PostgresText.decodeHex("007f") == nil)
    }

    @Test("error messages drop echoed values")
    func redaction() {
        let error = PostgresError.fromServer(
            sqlState: "22P02",
            primary: #"invalid input syntax for type uuid: "secret""#,
            detail: nil,
            constraint: nil,
            connectionBroken: false
        )
        #expect(error.message == "invalid input syntax for type uuid")
        let unique = PostgresError.fromServer(
            sqlState: "23505",
            primary: #"duplicate key value violates unique constraint "k""#,
            detail: "Key (email)=(secret) already exists.",
            constraint: "k",
            connectionBroken: false
        )
        #expect(!unique.description.contains("secret"))
        #expect(unique.isUniqueViolation)
    }
}
