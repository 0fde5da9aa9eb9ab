#if canImport(Glibc)
    import Glibc
#endif

/// Keeps glibc's malloc from holding on to memory the worker no longer uses. A no-op where malloc is not glibc's.
/// `malloc.h` is not exported by Swift's Glibc module, so its functions are looked up at run time.
package enum FreeMemory {
    #if canImport(Glibc)
        private typealias Trim = @convention(c) (Int) -> Int32
        private typealias Option = @convention(c) (Int32, Int32) -> Int32
        private static let trim: Trim? = dlsym(nil, "malloc_trim").map { unsafeBitCast($0, to: Trim.self) }
        private static let option: Option? = dlsym(nil, "mallopt").map { unsafeBitCast($0, to: Option.self) }
        /// `M_ARENA_MAX` in glibc's `malloc.h`.
        private static let arenaMaximum: Int32 = -8
    #endif

    /// Hands memory that malloc keeps free back to the system (`malloc_trim(0)`). After a burst of launches the freed
    /// buffers (HTTP bodies, JSON, task slabs) lie between allocations that live on — monitored attempts — and glibc
    /// only returns free memory at the top of a heap by itself, so a worker would keep its burst's high-water mark as
    /// resident memory for good.
    static func returnToSystem() {
        #if canImport(Glibc)
            _ = trim?(0)
        #endif
    }

    /// Limits malloc to one arena per core, at least two (`mallopt(M_ARENA_MAX)`; glibc's default is eight per core).
    /// Threads get arenas of their own up to that limit, so the long-lived values of monitored attempts end up spread
    /// over many arenas, between the freed transients of launches that no trim can return: on 2 cores a worker
    /// monitoring 10,000 Kubernetes jobs measured 4.95 KiB per job with the default and 4.0 with this limit (arenas
    /// created before the call remain; `MALLOC_ARENA_MAX=2` in the environment, which applies from the start, gave
    /// 3.2–3.9; docs/operations.md, "Kubernetes executor"). Call first thing, before the process starts its work.
    package static func limitArenas(toCores cores: Int) {
        #if canImport(Glibc)
            _ = option?(arenaMaximum, Int32(clamping: max(2, cores)))
        #endif
    }
}
