#if canImport(Glibc)
    import Glibc
#endif

/// Hands memory that glibc's malloc keeps free back to the system (`malloc_trim(0)`, looked up at run time since
/// Swift's Glibc module does not export `malloc.h`). After a burst of launches the freed buffers (HTTP bodies, JSON,
/// task slabs) lie between allocations that live on — monitored attempts — and glibc only returns free memory at the
/// top of a heap by itself, so a worker would keep its burst's high-water mark as resident memory for good. A no-op
/// where malloc is not glibc's.
enum FreeMemory {
    #if canImport(Glibc)
        private typealias Trim = @convention(c) (Int) -> Int32
        private static let trim: Trim? = dlsym(nil, "malloc_trim").map { unsafeBitCast($0, to: Trim.self) }
    #endif

    static func returnToSystem() {
        #if canImport(Glibc)
            _ = trim?(0)
        #endif
    }
}
