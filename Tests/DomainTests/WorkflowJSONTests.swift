import Domain
import Foundation
import Testing

@Suite("Workflow JSON")
struct WorkflowJSONTests {
    /// What the store used to write: `JSONEncoder`'s text, with keys sorted so that it compares byte for byte.
    static func encoderText(_ workflow: Workflow) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(workflow), as: UTF8.self)
    }

    static let everyControlCharacter = String(
        String.UnicodeScalarView((0..<0x20).compactMap { Unicode.Scalar(UInt32($0)) }))

    static let samples: [Workflow] = [
        Workflow(stages: []),
        Workflow(stages: [
            .init(input: [], algorithm: .init(rawcode: "print(1)\n", container: .init(entrypoint: "python3 $ALGO")))
        ]),
        Workflow(stages: [
            .init(
                index: nil,
                input: [
                    .init(
                        index: 3, id: "did:op:ab", url: ["https://example.org/a.csv", "http://h/ü/\u{1F600}"],
                        path: ["sub/dir/file"], checksum: ["sha256:00ff"],
                        remote: .object([
                            "headers": .object([:]), "list": .array([.null, .bool(false), .number(-0.5)]),
                        ])
                    ),
                    .init(id: "", remote: .null),
                ],
                algorithm: .init(
                    id: "did:op:algo", url: "https://example.org/algo.py", rawcode: everyControlCharacter + "\"\\/é",
                    checksum: "abc",
                    container: .init(entrypoint: "node $ALGO", image: "node", tag: "22", checksum: "sha256:1"),
                    algocustomdata: .object([
                        "quote\"key": .string("tab\t"), "big": .number(1e300), "small": .number(1.5e-9),
                        "integral": .number(2), "negative": .number(-42), "fraction": .number(0.1),
                    ]),
                    remote: .array([])),
                compute: .init(
                    maxtime: 3_600, namespace: "ns", allowNetwork: true,
                    resources: [.init(id: "cpu", amount: 2), .init(id: "ram", amount: 0.25)]),
                output: .object(["metadataUri": .string("https://example.org/out")]))
        ]),
        Workflow(stages: [
            .init(index: 0, input: [.init(id: "x")], algorithm: .init(), compute: .init(), output: .bool(true)),
            .init(
                index: 1, input: [], algorithm: .init(container: .init(entrypoint: "")), compute: .init(resources: [])),
        ]),
    ]

    @Test("writes the same text as JSONEncoder with sorted keys, for every field, escape and number form")
    func sameTextAsTheEncoder() throws {
        for workflow in Self.samples {
            #expect(try WorkflowJSON(workflow).text == (try Self.encoderText(workflow)))
        }
        let small = Workflow(stages: [
            .init(
                input: [.init(id: "d", url: ["https://e.org/a"])],
                algorithm: .init(rawcode: "a\tb", container: .init(entrypoint: "python3 $ALGO")),
                compute: .init(resources: [.init(id: "ram", amount: 2)]))
        ])
        #expect(
            try WorkflowJSON(small).text
                == #"{"stages":[{"algorithm":{"container":{"entrypoint":"python3 $ALGO"},"rawcode":"a\tb"},"#
                + #""compute":{"resources":[{"amount":2,"id":"ram"}]},"index":0,"#
                + #""input":[{"id":"d","url":["https:\/\/e.org\/a"]}]}]}"#)
    }

    @Test("knows every stored field of the workflow's types, so that a new one cannot be left out of the store")
    func coversEveryField() {
        func fields(_ value: Any) -> [String] { Mirror(reflecting: value).children.compactMap(\.label) }
        let written: [(Any, [String])] = [
            (Workflow(stages: []), ["stages"]),
            (Workflow.Stage(input: [], algorithm: .init()), ["index", "input", "algorithm", "compute", "output"]),
            (Workflow.Input(id: ""), ["index", "id", "url", "path", "checksum", "remote"]),
            (
                Workflow.Algorithm(),
                ["id", "url", "rawcode", "checksum", "container", "algocustomdata", "remote"]
            ),
            (Workflow.Container(entrypoint: ""), ["entrypoint", "image", "tag", "checksum"]),
            (Workflow.Compute(), ["maxtime", "namespace", "allowNetwork", "resources"]),
            (Workflow.ResourceRequest(id: "", amount: 0), ["id", "amount"]),
        ]
        for (value, names) in written {
            #expect(fields(value) == names, "\(type(of: value)) changed: WorkflowJSON must write its new fields")
        }
    }

    @Test("notices a NUL character in any string, and only then")
    func noticesNUL() throws {
        #expect(try WorkflowJSON(Self.samples[2]).containsNUL)
        let literal = Workflow(stages: [.init(input: [], algorithm: .init(rawcode: #"print("\u0000")"#))])
        #expect(try !WorkflowJSON(literal).containsNUL)
        let inKey = Workflow(stages: [.init(input: [], algorithm: .init(algocustomdata: .object(["a\u{0}": .null])))])
        #expect(try WorkflowJSON(inKey).containsNUL)
    }

    @Test("refuses a number JSON cannot write, as JSONEncoder does")
    func refusesNonFiniteNumbers() {
        for value in [Double.infinity, -Double.infinity, Double.nan] {
            let workflow = Workflow(stages: [
                .init(input: [], algorithm: .init(), compute: .init(resources: [.init(id: "cpu", amount: value)]))
            ])
            #expect(throws: EncodingError.self) { try WorkflowJSON(workflow) }
            #expect(throws: EncodingError.self) { try Self.encoderText(workflow) }
        }
    }
}
