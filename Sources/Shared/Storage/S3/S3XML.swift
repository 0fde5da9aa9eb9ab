import Foundation

/// The few elements c2d reads from S3's XML answers (`UploadId`, `Key`, `IsTruncated`, `NextContinuationToken`,
/// `Code`, `Message`). S3's answers are flat and machine-made, so a scan for `<Tag>text</Tag>` is enough and keeps
/// an XML parser (libxml2) out of the binary.
enum S3XML {
    /// The text of every `<tag>…</tag>` element, in order, entities decoded.
    static func values(of tag: String, in xml: String) -> [String] {
        var values: [String] = []
        let open = "<\(tag)>"
        let close = "</\(tag)>"
        var rest = xml[...]
        while let start = rest.range(of: open) {
            let after = rest[start.upperBound...]
            guard let end = after.range(of: close) else { break }
            values.append(unescape(String(after[..<end.lowerBound])))
            rest = after[end.upperBound...]
        }
        return values
    }

    static func value(of tag: String, in xml: String) -> String? {
        values(of: tag, in: xml).first
    }

    /// Text as XML element content.
    static func escape(_ text: String) -> String {
        var output = ""
        for character in text {
            switch character {
            case "&": output += "&amp;"
            case "<": output += "&lt;"
            case ">": output += "&gt;"
            case "\"": output += "&quot;"
            case "'": output += "&apos;"
            default: output.append(character)
            }
        }
        return output
    }

    static func unescape(_ text: String) -> String {
        guard text.contains("&") else { return text }
        var output = ""
        var rest = text[...]
        while let amp = rest.firstIndex(of: "&") {
            output += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";") else {
                output += rest[amp...]
                return output
            }
            let entity = rest[rest.index(after: amp)..<semicolon]
            switch entity {
            case "amp": output += "&"
            case "lt": output += "<"
            case "gt": output += ">"
            case "quot": output += "\""
            case "apos": output += "'"
            default:
                if entity.hasPrefix("#x"), let code = UInt32(entity.dropFirst(2), radix: 16),
                    let scalar = Unicode.Scalar(code)
                {
                    output.unicodeScalars.append(scalar)
                } else if entity.hasPrefix("#"), let code = UInt32(entity.dropFirst()),
                    let scalar = Unicode.Scalar(code)
                {
                    output.unicodeScalars.append(scalar)
                } else {
                    output += rest[amp...semicolon]
                }
            }
            rest = rest[rest.index(after: semicolon)...]
        }
        output += rest
        return output
    }
}
