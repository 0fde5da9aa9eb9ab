/// Splits an entrypoint such as `python3 $ALGO --flag "two words"` into arguments the way a POSIX shell does for
/// simple quoting, without running a shell: whitespace separates words; single quotes keep everything literally;
/// double quotes keep whitespace and allow `\"`, `\\`, `\$`; a backslash outside quotes escapes the next character.
/// `$NAME` and `${NAME}` are replaced for the names in `variables` (outside single quotes); any other `$` is kept
/// as it is. No globbing, pipes, redirections or command substitution: those need a shell, and the algorithm can
/// bring its own (`sh -c '…'`) if it wants one.
package enum CommandLineSplitter {
    package struct SplitError: Error, CustomStringConvertible, Sendable, Hashable {
        package var message: String
        package var description: String { message }
    }

    package static func split(_ line: String, variables: [String: String] = [:]) throws -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var characters = Array(line)[...]

        func expandVariable() -> Bool {
            // `characters` starts right after a `$`.
            if characters.first == "{" {
                guard let close = characters.firstIndex(of: "}") else { return false }
                let name = String(characters[characters.index(after: characters.startIndex)..<close])
                guard let value = variables[name] else { return false }
                current += value
                characters = characters[characters.index(after: close)...]
                return true
            }
            let name = String(characters.prefix { $0.isLetter || $0.isNumber || $0 == "_" })
            guard !name.isEmpty, let value = variables[name] else { return false }
            current += value
            characters = characters.dropFirst(name.count)
            return true
        }

        while let character = characters.popFirst() {
            switch character {
            case " ", "\t", "\n", "\r":
                if inWord {
                    words.append(current)
                    current = ""
                    inWord = false
                }
            case "'":
                inWord = true
                guard let close = characters.firstIndex(of: "'") else {
                    throw SplitError(message: "unterminated single quote in the entrypoint")
                }
                current += String(characters[..<close])
                characters = characters[characters.index(after: close)...]
            case "\"":
                inWord = true
                var closed = false
                while let inner = characters.popFirst() {
                    if inner == "\"" {
                        closed = true
                        break
                    }
                    if inner == "\\", let next = characters.first, next == "\"" || next == "\\" || next == "$" {
                        current.append(next)
                        characters = characters.dropFirst()
                    } else if inner == "$", expandVariable() {
                        continue
                    } else {
                        current.append(inner)
                    }
                }
                guard closed else { throw SplitError(message: "unterminated double quote in the entrypoint") }
            case "\\":
                inWord = true
                guard let next = characters.popFirst() else {
                    throw SplitError(message: "the entrypoint ends with a backslash")
                }
                if next != "\n" { current.append(next) }
            case "$":
                inWord = true
                if !expandVariable() { current.append("$") }
            default:
                inWord = true
                current.append(character)
            }
        }
        if inWord { words.append(current) }
        return words
    }
}
