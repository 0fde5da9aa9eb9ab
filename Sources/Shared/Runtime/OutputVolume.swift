import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A size-capped file system for what the algorithm writes (`outputs/` and `logs/`): a sparse ext4 image of about
/// the environment's `diskMiB`, loop-mounted under the attempt's directory. The kernel refuses writes beyond it
/// (ENOSPC), so a job cannot fill the host's disk; the image takes host space only for what is written, and goes
/// away with the attempt. Needs root, loop devices and `mkfs.ext4`; blocking calls, for a thread pool.
package struct OutputVolume: Sendable {
    /// The image file and its mount point, next to the attempt's `data`.
    let image: URL
    package let mountPoint: URL

    package init(attemptDirectory: URL) {
        image = attemptDirectory.appendingPathComponent("volume.img")
        mountPoint = attemptDirectory.appendingPathComponent("volume", isDirectory: true)
    }

    /// Image bytes for a limit: the limit plus room for ext4's own metadata (inode tables, bitmaps), so that
    /// the algorithm can write the whole limit and the publisher's quota check, not the file system, is what
    /// refuses a job that wrote more.
    static func imageBytes(diskLimitBytes: Int64) -> Int64 {
        diskLimitBytes + 16 << 20 + diskLimitBytes / 32
    }

    /// Inodes: enough for the publisher's most output files and the logs, few enough that the inode tables stay
    /// small.
    static let inodes = 32_768

    /// Creates, formats and mounts the image, with `outputs/` and `logs/` in it (owned by the worker's user, like
    /// the rest of the workspace). Leftovers of the same attempt are removed first.
    package func create(diskLimitBytes: Int64, tools: Tools) throws {
        remove(tools: tools)
        let descriptor = open(image.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw RuntimeIssue("cannot create \(image.path): \(Self.error())") }
        let sized = ftruncate(descriptor, off_t(Self.imageBytes(diskLimitBytes: diskLimitBytes)))
        close(descriptor)
        guard sized == 0 else { throw RuntimeIssue("cannot size \(image.path): \(Self.error())") }
        do {
            // No journal and no reserved blocks: a scratch file system that lives as long as one attempt.
            try tools.run(
                tools.mkfs,
                [
                    "-q", "-F", "-t", "ext4", "-m", "0", "-N", String(Self.inodes), "-O", "^has_journal,^resize_inode",
                    "-E", "lazy_itable_init=1,nodiscard", image.path,
                ])
            try CgroupDriver.makeDirectory(mountPoint.path)
            try tools.run(tools.mount, ["-t", "ext4", "-o", "loop,nosuid,nodev", image.path, mountPoint.path])
            for directory in ["outputs", "logs"] {
                try CgroupDriver.makeDirectory(mountPoint.appendingPathComponent(directory).path)
            }
        } catch {
            remove(tools: tools)
            throw error
        }
    }

    /// Unmounts (lazily, if something still holds it) and deletes the image; the loop device is freed with it.
    package func remove(tools: Tools) {
        if Self.isMountPoint(mountPoint.path) {
            if (try? tools.run(tools.umount, [mountPoint.path])) == nil {
                try? tools.run(tools.umount, ["-l", mountPoint.path])
            }
        }
        rmdir(mountPoint.path)
        unlink(image.path)
    }

    /// Whether `path` is a mount point (its device differs from its parent's).
    static func isMountPoint(_ path: String) -> Bool {
        var own = stat()
        var parent = stat()
        guard stat(path, &own) == 0, stat(path + "/..", &parent) == 0 else { return false }
        return own.st_dev != parent.st_dev
    }

    static func error() -> String { String(cString: strerror(errno)) }

    /// The programs the volume needs.
    package struct Tools: Sendable, Hashable {
        var mkfs = "/usr/sbin/mkfs.ext4"
        var mount = "/usr/bin/mount"
        var umount = "/usr/bin/umount"

        /// Runs a tool to completion (they finish in milliseconds); throws its exit status and output on failure.
        func run(_ tool: String, _ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: tool)
            process.arguments = arguments
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let text = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw RuntimeIssue(
                    "\(URL(fileURLWithPath: tool).lastPathComponent) failed (exit \(process.terminationStatus)): "
                        + String(decoding: text.prefix(500), as: UTF8.self).trimmingCharacters(
                            in: .whitespacesAndNewlines))
            }
        }
    }
}
