/// A worker's job slots and whether its consumers take deliveries: a value whose methods say what to do.
///
/// A worker acknowledges a job's message as soon as it has claimed it, so the broker's prefetch limits only the
/// deliveries waiting for a claim, not the jobs running; with prefetch alone, a worker whose slots are all busy would
/// keep receiving jobs it cannot start while other workers have room. So consumers take deliveries only while a slot
/// is free: the delivery that takes the last slot pauses every consumer of the worker (`basic.cancel`, which the
/// broker processes before the claim's acknowledgement), and the slot that frees first resumes them with a prefetch
/// of the slots now free. A delivery that still arrives while none is free (the broker sent it before it processed
/// the pause, to another environment's consumer) is given back.
struct SlotGate: Sendable, Hashable {
    /// Jobs the worker runs (or monitors) at once.
    let capacity: Int
    /// Upper bound on the prefetch of a resumed consumer: a worker with thousands of slots (Kubernetes) still
    /// claims a few dozen deliveries at a time, leaving the rest of the queue to other workers.
    let maximumPrefetch: Int
    private(set) var inUse = 0
    private(set) var paused = false

    init(capacity: Int, maximumPrefetch: Int = 64) {
        self.capacity = max(1, capacity)
        self.maximumPrefetch = max(1, maximumPrefetch)
    }

    enum Action: Sendable, Hashable {
        case none
        /// Stop every consumer of the worker.
        case pause
        /// Start every consumer again with this prefetch.
        case resume(prefetch: Int)
    }

    var freeSlots: Int { capacity - inUse }

    /// The prefetch a consumer starts with.
    var initialPrefetch: Int { min(capacity, maximumPrefetch) }

    /// A delivery arrived: whether it gets a slot (else give it back), and what to do with the consumers.
    mutating func take() -> (granted: Bool, action: Action) {
        guard inUse < capacity else {
            if paused { return (false, .none) }
            paused = true
            return (false, .pause)
        }
        inUse += 1
        if inUse == capacity && !paused {
            paused = true
            return (true, .pause)
        }
        return (true, .none)
    }

    /// A job ended (or its claim came to nothing): its slot is free.
    mutating func release() -> Action {
        inUse = max(0, inUse - 1)
        guard paused else { return .none }
        paused = false
        return .resume(prefetch: min(freeSlots, maximumPrefetch))
    }
}
