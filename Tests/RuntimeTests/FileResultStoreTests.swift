import Domain
import Foundation
import Storage
import Testing

@Suite("File result store")
struct FileResultStoreTests {
    let base = FileManager.default.temporaryDirectory.appendingPathComponent("c2d-store-test-\(UUID().uuidString)")

    func source(_ contents: String) throws -> URL {
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        let url = base.appendingPathComponent("source-\(UUID().uuidString)")
        try Data(contents.utf8).write(to: url)
        return url
    }

    @Test("stores under <root>/<job>/<name> with size and sha-256, and serves it back")
    func storeAndServe() async throws {
        defer { try? FileManager.default.removeItem(at: base) }
        let store = FileResultStore(root: base.appendingPathComponent("results"))
        let job = JobID()
        let stored = try await store.store(jobID: job, name: "1/outputs/a/b.csv", from: try source("abc"))
        #expect(stored.location == "\(job)/1/outputs/a/b.csv")
        #expect(stored.size == 3)
        // sha256("abc"), independently known.
        #expect(stored.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let file = try store.file(at: stored.location)
        #expect(try String(contentsOf: file, encoding: .utf8) == "abc")
        // No temporary file is left beside it.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: file.deletingLastPathComponent().path)
        #expect(siblings == ["b.csv"])

        // Storing the same name again replaces the object.
        let again = try await store.store(jobID: job, name: "1/outputs/a/b.csv", from: try source("abcd"))
        #expect(again.size == 4)

        try await store.deleteAll(jobID: job)
        #expect(throws: StorageError.self) { try store.file(at: stored.location) }
        try await store.deleteAll(jobID: job)  // nothing left: not an error
    }

    @Test("names and locations that escape the root are refused", arguments: ["../x", "/etc/passwd", "a/../../x", ""])
    func escapes(name: String) async throws {
        defer { try? FileManager.default.removeItem(at: base) }
        let store = FileResultStore(root: base.appendingPathComponent("results"))
        let file = try source("x")
        await #expect(throws: StorageError.self) { try await store.store(jobID: JobID(), name: name, from: file) }
        #expect(throws: StorageError.self) { try store.file(at: name) }
    }

    @Test("a location that is a symbolic link out of the root is refused")
    func symbolicLinkOut() throws {
        defer { try? FileManager.default.removeItem(at: base) }
        let root = base.appendingPathComponent("results")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let outside = try source("secret")
        try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("link"), withDestinationURL: outside)
        let store = FileResultStore(root: root)
        #expect(throws: StorageError.self) { try store.file(at: "link") }
    }

    @Test("a symbolic link is not stored (the source is opened without following links)")
    func sourceLink() async throws {
        defer { try? FileManager.default.removeItem(at: base) }
        let target = try source("secret")
        let link = base.appendingPathComponent("link")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: target)
        let store = FileResultStore(root: base.appendingPathComponent("results"))
        await #expect(throws: StorageError.self) { try await store.store(jobID: JobID(), name: "x", from: link) }
    }

    @Test("a writer over its limit keeps nothing")
    func writerLimit() throws {
        defer { try? FileManager.default.removeItem(at: base) }
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        let destination = base.appendingPathComponent("limited")
        let writer = try AtomicFileWriter(destination: destination, limit: 4)
        try writer.write(Data("abc".utf8))
        #expect(throws: StorageError.self) { try writer.write(Data("de".utf8)) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: base.path).isEmpty)
    }
}
