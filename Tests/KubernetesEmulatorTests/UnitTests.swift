import Testing

@testable import KubernetesEmulator

@Suite("JSON, selectors, names")
struct UnitTests {
    @Test("JSON round-trips escapes, unicode, numbers and unknown fields")
    func json() throws {
        let text =
            #"{"a":"line\nbreak \"q\" \u00e9 \ud83d\ude00","n":-12,"d":1.5,"e":1e3,"z":null,"l":[true,false,{}]}"#
        let value = try JSON.parse(text)
        #expect(value["a"]?.string == "line\nbreak \"q\" é 😀")
        #expect(value["n"] == .int(-12))
        #expect(value["d"] == .double(1.5))
        #expect(value["e"]?.int == 1000)
        // Integral doubles are written as integers (as Go does), so compare the text of a second round trip.
        let reparsed = try JSON.parse(value.serialized())
        #expect(reparsed.serialized() == value.serialized())
        #expect(reparsed["a"] == value["a"])
        #expect(throws: JSONParseError.self) { try JSON.parse("{\"a\":}") }
        #expect(throws: JSONParseError.self) { try JSON.parse("[1,2") }
        let original: JSON = ["a": ["b": 1, "c": 2], "x": 1]
        let patched = original.mergePatched(with: ["a": ["b": nil, "d": 3], "x": [1]])
        #expect(patched == ["a": ["c": 2, "d": 3], "x": [1]])
    }

    @Test("label selector grammar")
    func selectors() throws {
        let labels = ["env": "prod", "tier": "web"]
        #expect(try LabelSelector(parsing: "env=prod,tier==web").matches(labels))
        #expect(try LabelSelector(parsing: "env in (prod, dev),!missing").matches(labels))
        #expect(try !LabelSelector(parsing: "tier notin (web)").matches(labels))
        #expect(try LabelSelector(parsing: "missing!=x").matches(labels))
        #expect(try !LabelSelector(parsing: "env").matches([:]))
        #expect(throws: APIStatus.self) { try LabelSelector(parsing: "bad key=1") }
    }

    @Test("DNS-1123 names and label values")
    func names() {
        #expect(Names.isDNSSubdomain("c2d-abc.def"))
        #expect(!Names.isDNSSubdomain("C2D"))
        #expect(!Names.isDNSSubdomain("-a"))
        #expect(Names.isDNSLabel("main"))
        #expect(!Names.isDNSLabel("a.b"))
        #expect(Names.qualifiedNameError("c2d.io/job-id") == nil)
        #expect(Names.qualifiedNameError("bad key") != nil)
        #expect(Names.isLabelValue(""))
        #expect(!Names.isLabelValue("a b"))
        #expect(Timestamp.format(0) == "1970-01-01T00:00:00Z")
        #expect(Timestamp.format(1_700_000_000) == "2023-11-14T22:13:20Z")
    }
}
