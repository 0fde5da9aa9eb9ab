import Foundation

/// Items by the time they are due, a binary min-heap: the reconciler's due jobs and young objects, the worker's
/// attempts to look at again. An item may be in it more than once (a stale entry costs one more look at the item).
package struct DueHeap<Item: Hashable & Sendable>: Sendable {
    private var heap: [(due: Date, item: Item)] = []

    package init() {}

    package var count: Int { heap.count }

    package mutating func push(_ due: Date, _ item: Item) {
        heap.append((due, item))
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].due < heap[parent].due else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// The items due at `now`, without taking them out: the due entries are the top of the heap, so only they and
    /// their children are visited.
    package func peekDue(_ now: Date) -> [Item] {
        var due: [Item] = []
        var stack = heap.isEmpty ? [] : [0]
        while let index = stack.popLast() {
            guard heap[index].due <= now else { continue }
            due.append(heap[index].item)
            for child in [2 * index + 1, 2 * index + 2] where child < heap.count { stack.append(child) }
        }
        return due
    }

    /// Takes out and returns the items due at `now`.
    package mutating func popDue(_ now: Date) -> [Item] {
        var due: [Item] = []
        while let first = heap.first, first.due <= now {
            due.append(first.item)
            heap.swapAt(0, heap.count - 1)
            heap.removeLast()
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                if left < heap.count && heap[left].due < heap[smallest].due { smallest = left }
                if right < heap.count && heap[right].due < heap[smallest].due { smallest = right }
                if smallest == parent { break }
                heap.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return due
    }
}
