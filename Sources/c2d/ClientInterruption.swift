import Foundation
import Synchronization
import UnixSignals

/// What a client command leaves behind when Ctrl-C (or SIGTERM) stops it: the job or batch it was waiting for goes
/// on, and says so on standard error with the command that picks it up again (in `--json` mode too, where standard
/// output may not have shown the id yet); a download in progress removes its partial file. Without this the
/// process just died with 130, and a user could not tell whether the job had stopped too.
enum ClientInterruption {
    private struct State {
        var note: String?
        var partialFile: String?
        var installed = false
    }

    private static let state = Mutex(State())

    /// Takes SIGINT and SIGTERM over for the rest of the process (once). Each then writes the current note,
    /// removes a partial download, and exits as the signal would have: 130 or 143.
    static func install() async {
        let first = state.withLock { state in
            defer { state.installed = true }
            return !state.installed
        }
        guard first else { return }
        // The handlers are in place once the sequence exists, before the command sends anything.
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        Task {
            for await signal in signals { stop(signal.rawValue) }
        }
    }

    /// What to say if the command is stopped from now on; nil says nothing.
    static func onStop(say note: String?) {
        state.withLock { $0.note = note }
    }

    /// The file a download is writing; removed if the command is stopped before it is renamed to its name.
    static func downloading(to partialFile: String?) {
        state.withLock { $0.partialFile = partialFile }
    }

    private static func stop(_ signalNumber: Int32) -> Never {
        let (note, partialFile) = state.withLock { ($0.note, $0.partialFile) }
        if let partialFile { try? FileManager.default.removeItem(atPath: partialFile) }
        fflush(nil)
        if let note { FileHandle.standardError.write(Data("\nc2d: stopped; \(note)\n".utf8)) }
        exit(128 + signalNumber)
    }
}
