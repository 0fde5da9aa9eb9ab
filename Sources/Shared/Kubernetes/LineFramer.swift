import NIOCore

/// Splits a streamed body into newline-delimited lines (a watch stream is one JSON object per line). Chunks split
/// lines anywhere, so the unterminated tail is kept until its newline arrives. A pure value; I/O stays outside.
package struct LineFramer: Sendable {
    private var pending: ByteBuffer
    /// Longest line accepted, so a peer that never sends a newline cannot grow the buffer without bound.
    package let maximumLineLength: Int

    package init(maximumLineLength: Int = 64 << 20) {
        self.pending = ByteBuffer()
        self.maximumLineLength = maximumLineLength
    }

    /// Appends `chunk` and returns every line it completed, without the newline (or a trailing `\r`). Blank lines
    /// are dropped.
    package mutating func append(_ chunk: ByteBuffer) throws(KubernetesError) -> [ByteBuffer] {
        var chunk = chunk
        pending.writeBuffer(&chunk)
        var lines: [ByteBuffer] = []
        while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - pending.readerIndex
            var line = pending.readSlice(length: length)!
            pending.moveReaderIndex(forwardBy: 1)
            if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
            if line.readableBytes > 0 { lines.append(line) }
        }
        guard pending.readableBytes <= maximumLineLength else {
            throw KubernetesError(
                code: .decoding, message: "stream line longer than \(maximumLineLength) bytes without a newline")
        }
        // Reclaim the consumed prefix now and then, not on every chunk.
        if pending.readerIndex > 1 << 16 { pending.discardReadBytes() }
        return lines
    }

    /// Ends the stream: returns the last line if the body did not end with a newline.
    package mutating func finish() -> ByteBuffer? {
        defer { pending.clear() }
        guard pending.readableBytes > 0 else { return nil }
        var line = pending
        if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
        return line.readableBytes > 0 ? line : nil
    }
}
