import Foundation

/// Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), so `kubectl get` shows the same
/// columns as against a real cluster.
enum TablePrinter {
    static func wants(_ accept: String?) -> Bool {
        guard let accept else { return false }
        return accept.contains("as=Table")
    }

    static func columns(_ resource: ResourceType) -> [(name: String, type: String, priority: Int)] {
        switch resource {
        case .jobs:
            return [
                ("Name", "string", 0), ("Status", "string", 0), ("Completions", "string", 0), ("Duration", "string", 0),
                ("Age", "date", 0), ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1),
            ]
        case .pods:
            return [
                ("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0),
                ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1),
            ]
        case .secrets:
            return [("Name", "string", 0), ("Type", "string", 0), ("Data", "string", 0), ("Age", "string", 0)]
        case .persistentVolumeClaims:
            return [("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)]
        default:
            return [("Name", "string", 0), ("Pod-Selector", "string", 0), ("Age", "string", 0)]
        }
    }

    static func table(_ resource: ResourceType, items: [JSON], metadata: JSON) -> JSON {
        let definitions: [JSON] = columns(resource).map { column in
            [
                "name": .string(column.name), "type": .string(column.type),
                "format": column.name == "Name" ? "name" : "",
                "description": "", "priority": .int(Int64(column.priority)),
            ]
        }
        let now = Date().timeIntervalSince1970
        let rows: [JSON] = items.map { item in
            var partial: JSON = ["kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1"]
            partial["metadata"] = item["metadata"]
            return ["cells": .array(cells(resource, item, now: now)), "object": partial]
        }
        return [
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": .array(definitions),
            "rows": .array(rows),
        ]
    }

    static func age(_ timestamp: JSON?, now: Double) -> String {
        guard let text = timestamp?.string, let seconds = parse(text) else { return "<unknown>" }
        return humanDuration(now - seconds)
    }

    static func parse(_ text: String) -> Double? {
        let formatter = ISO8601DateFormatter()
        return formatter.date(from: text)?.timeIntervalSince1970
    }

    /// apimachinery's `duration.HumanDuration`.
    static func humanDuration(_ interval: Double) -> String {
        let seconds = Int(interval)
        if seconds < -1 { return "<invalid>" }
        if seconds < 0 { return "0s" }
        if seconds < 120 { return "\(seconds)s" }
        let minutes = seconds / 60
        if minutes < 10 { return seconds % 60 == 0 ? "\(minutes)m" : "\(minutes)m\(seconds % 60)s" }
        if minutes < 180 { return "\(minutes)m" }
        let hours = minutes / 60
        if hours < 8 { return minutes % 60 == 0 ? "\(hours)h" : "\(hours)h\(minutes % 60)m" }
        if hours < 48 { return "\(hours)h" }
        if hours < 192 { return hours % 24 == 0 ? "\(hours / 24)d" : "\(hours / 24)d\(hours % 24)h" }
        return "\(hours / 24)d"
    }

    static func cells(_ resource: ResourceType, _ item: JSON, now: Double) -> [JSON] {
        let name = JSON.string(item[["metadata", "name"]]?.string ?? "")
        let age = JSON.string(age(item[["metadata", "creationTimestamp"]], now: now))
        switch resource {
        case .jobs:
            let conditions = (item[["status", "conditions"]]?.array ?? []).filter { $0["status"]?.string == "True" }
            let types = Set(conditions.compactMap { $0["type"]?.string })
            let status: String
            if types.contains("Complete") {
                status = "Complete"
            } else if types.contains("Failed") {
                status = "Failed"
            } else if item[["metadata", "deletionTimestamp"]] != nil {
                status = "Terminating"
            } else if types.contains("SuccessCriteriaMet") || types.contains("FailureTarget") {
                status = types.contains("FailureTarget") ? "FailureTarget" : "SuccessCriteriaMet"
            } else if types.contains("Suspended") {
                status = "Suspended"
            } else {
                status = "Running"
            }
            let completions = "\(item[["status", "succeeded"]]?.int ?? 0)/\(item[["spec", "completions"]]?.int ?? 1)"
            var duration = ""
            if let start = item[["status", "startTime"]]?.string.flatMap(parse) {
                let end = item[["status", "completionTime"]]?.string.flatMap(parse) ?? now
                duration = humanDuration(end - start)
            }
            let containers = item[["spec", "template", "spec", "containers"]]?.array ?? []
            let selector = (item[["spec", "selector", "matchLabels"]]?.stringMap ?? [:]).sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return [
                name, .string(status), .string(completions), .string(duration), age,
                .string(containers.compactMap { $0["name"]?.string }.joined(separator: ",")),
                .string(containers.compactMap { $0["image"]?.string }.joined(separator: ",")), .string(selector),
            ]
        case .pods:
            let statuses = item[["status", "containerStatuses"]]?.array ?? []
            let total = item[["spec", "containers"]]?.array?.count ?? 0
            let ready = statuses.filter { $0["ready"]?.bool == true }.count
            var reason = item[["status", "phase"]]?.string ?? "Pending"
            for status in statuses {
                if let waiting = status[["state", "waiting", "reason"]]?.string {
                    reason = waiting
                } else if let terminated = status[["state", "terminated", "reason"]]?.string {
                    reason = terminated
                }
            }
            if item[["metadata", "deletionTimestamp"]] != nil { reason = "Terminating" }
            let restarts = statuses.reduce(0) { $0 + ($1["restartCount"]?.int ?? 0) }
            return [
                name, .string("\(ready)/\(total)"), .string(reason), .string(String(restarts)), age,
                .string(item[["status", "podIP"]]?.string ?? "<none>"),
                .string(item[["spec", "nodeName"]]?.string ?? "<none>"),
            ]
        case .secrets:
            let count = (item["data"]?.object?.count ?? 0)
            return [name, .string(item["type"]?.string ?? "Opaque"), .string(String(count)), age]
        case .persistentVolumeClaims:
            return [name, .string(item[["status", "phase"]]?.string ?? "Pending"), age]
        default:
            let selector = item[["spec", "podSelector", "matchLabels"]]?.stringMap ?? [:]
            let text =
                selector.isEmpty
                ? "<none>" : selector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            return [name, .string(text), age]
        }
    }

    /// Rewrites one watch line so its object is a one-row Table (bookmarks and errors pass through).
    static func watchLine(_ resource: ResourceType, _ line: [UInt8]) -> [UInt8] {
        guard var event = try? JSON.parse(line), let type = event["type"]?.string, type != "BOOKMARK", type != "ERROR",
            let object = event["object"]
        else { return line }
        event["object"] = table(
            resource, items: [object], metadata: ["resourceVersion": object[["metadata", "resourceVersion"]] ?? ""])
        var out = event.serialized()
        out.append(UInt8(ascii: "\n"))
        return out
    }
}
