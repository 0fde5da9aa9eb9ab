/// apimachinery's name and label rules, with its error texts.
enum Names {
    static let subdomainMessage =
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    static let labelMessage =
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    static let qualifiedNameMessage =
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    static let labelValueMessage =
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"

    private static func isLowerAlnum(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
    }

    private static func isAlnum(_ byte: UInt8) -> Bool {
        isLowerAlnum(byte) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }

    static func isDNSLabel(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 63, isLowerAlnum(bytes.first!), isLowerAlnum(bytes.last!) else {
            return false
        }
        return bytes.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") }
    }

    static func isDNSSubdomain(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 253 else { return false }
        return text.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { part in
            let bytes = Array(part.utf8)
            guard !bytes.isEmpty, isLowerAlnum(bytes.first!), isLowerAlnum(bytes.last!) else { return false }
            return bytes.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") }
        }
    }

    /// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
    static func isQualifiedNamePart(_ text: Substring) -> Bool {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= 63, isAlnum(bytes.first!), isAlnum(bytes.last!) else { return false }
        return bytes.allSatisfy {
            isAlnum($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".")
        }
    }

    /// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name part.
    static func qualifiedNameError(_ key: String) -> String? {
        let parts = key.split(separator: "/", omittingEmptySubsequences: false)
        switch parts.count {
        case 1:
            return isQualifiedNamePart(parts[0]) ? nil : qualifiedNameMessage
        case 2:
            if parts[0].isEmpty { return "prefix part must be non-empty" }
            if !isDNSSubdomain(String(parts[0])) { return "prefix part " + subdomainMessage }
            return isQualifiedNamePart(parts[1]) ? nil : qualifiedNameMessage
        default:
            return
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        }
    }

    static func isLabelValue(_ value: String) -> Bool {
        value.isEmpty || isQualifiedNamePart(Substring(value))
    }

    /// Characters of the real `generateName` suffix (no vowels, no look-alikes).
    static let generatedAlphabet = Array("bcdfghjklmnpqrstvwxz2456789")
}

/// Validation and defaulting of the object kinds the emulator serves.
enum Validation {
    static func metadata(_ object: JSON, _ resource: ResourceType, errors: inout FieldErrors) {
        let metadata = object["metadata"]
        let name = metadata?["name"]?.string ?? ""
        if name.isEmpty {
            errors.required("metadata.name", "name or generateName is required")
        } else if !Names.isDNSSubdomain(name) {
            errors.invalid("metadata.name", name, Names.subdomainMessage)
        }
        for (key, value) in metadata?["labels"]?.object ?? [:] {
            if let problem = Names.qualifiedNameError(key) {
                errors.invalid("metadata.labels", key, problem)
            }
            guard let text = value.string else {
                errors.invalid("metadata.labels", key, "label values must be strings")
                continue
            }
            if text.utf8.count > 63 {
                errors.invalid("metadata.labels", text, "must be no more than 63 characters")
            } else if !Names.isLabelValue(text) {
                errors.invalid("metadata.labels", text, Names.labelValueMessage)
            }
        }
        for (key, _) in metadata?["annotations"]?.object ?? [:] {
            if let problem = Names.qualifiedNameError(key.lowercased()) {
                errors.invalid("metadata.annotations", key, problem)
            }
        }
        for (offset, reference) in (metadata?["ownerReferences"]?.array ?? []).enumerated() {
            let field = "metadata.ownerReferences[\(offset)]"
            if (reference["apiVersion"]?.string ?? "").isEmpty {
                errors.invalid(field + ".apiVersion", "", "version must not be empty")
            }
            if (reference["kind"]?.string ?? "").isEmpty {
                errors.invalid(field + ".kind", "", "kind must not be empty")
            }
            if (reference["name"]?.string ?? "").isEmpty {
                errors.invalid(field + ".name", "", "name must not be empty")
            }
            if (reference["uid"]?.string ?? "").isEmpty { errors.invalid(field + ".uid", "", "uid must not be empty") }
        }
    }

    /// The finalizer that keeps a claim until no pod uses it.
    static let claimProtection = "kubernetes.io/pvc-protection"

    static func validate(_ object: JSON, _ resource: ResourceType) throws {
        var errors = FieldErrors()
        metadata(object, resource, errors: &errors)
        switch resource {
        case .pods:
            podSpec(object["spec"], field: "spec", restartPolicies: ["Always", "OnFailure", "Never"], errors: &errors)
        case .jobs:
            job(object, errors: &errors)
        case .persistentVolumeClaims:
            if (object[["spec", "accessModes"]]?.array ?? []).isEmpty {
                errors.required("spec.accessModes", "at least 1 access mode is required")
            }
            if object[["spec", "resources", "requests", "storage"]] == nil {
                errors.required("spec.resources[storage]")
            }
        case .secrets:
            for section in ["data", "stringData"] {
                for key in (object[section]?.object ?? [:]).keys where !isConfigKey(key) {
                    errors.invalid(
                        "\(section)[\(key)]", key,
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
                    )
                }
            }
        case .networkPolicies:
            for (offset, type) in (object[["spec", "policyTypes"]]?.array ?? []).enumerated() {
                let value = type.string ?? ""
                if value != "Ingress" && value != "Egress" {
                    errors.notSupported("spec.policyTypes[\(offset)]", value, ["Ingress", "Egress"])
                }
            }
        default:
            break
        }
        try errors.check(resource, object[["metadata", "name"]]?.string ?? "")
    }

    static func isConfigKey(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.count <= 253
            && key.unicodeScalars.allSatisfy {
                ("0"..."9").contains($0) || ("a"..."z").contains($0) || ("A"..."Z").contains($0)
                    || "-._".unicodeScalars.contains($0)
            }
    }

    static func podSpec(_ spec: JSON?, field: String, restartPolicies: [String], errors: inout FieldErrors) {
        guard let containers = spec?["containers"]?.array, !containers.isEmpty else {
            errors.required("\(field).containers")
            return
        }
        var volumes: Set<String> = []
        for (offset, volume) in (spec?["volumes"]?.array ?? []).enumerated() {
            let path = "\(field).volumes[\(offset)]"
            let name = volume["name"]?.string ?? ""
            if !Names.isDNSLabel(name) {
                errors.invalid("\(path).name", name, Names.labelMessage)
            } else if !volumes.insert(name).inserted {
                errors.duplicate("\(path).name", name)
            }
            if let template = volume[["ephemeral", "volumeClaimTemplate"]] {
                if (template[["spec", "accessModes"]]?.array ?? []).isEmpty {
                    errors.required(
                        "\(path).ephemeral.volumeClaimTemplate.spec.accessModes", "at least 1 access mode is required")
                }
                if template[["spec", "resources", "requests", "storage"]] == nil {
                    errors.required("\(path).ephemeral.volumeClaimTemplate.spec.resources[storage]")
                }
            }
        }
        var names: Set<String> = []
        let groups: [(String, [JSON])] = [
            ("initContainers", spec?["initContainers"]?.array ?? []), ("containers", containers),
        ]
        for (group, list) in groups {
            for (offset, container) in list.enumerated() {
                let path = "\(field).\(group)[\(offset)]"
                let name = container["name"]?.string ?? ""
                if name.isEmpty {
                    errors.required("\(path).name")
                } else if !Names.isDNSLabel(name) {
                    errors.invalid("\(path).name", name, Names.labelMessage)
                } else if !names.insert(name).inserted {
                    errors.duplicate("\(path).name", name)
                }
                if (container["image"]?.string ?? "").isEmpty {
                    errors.required("\(path).image")
                }
                if let policy = container["restartPolicy"]?.string {
                    if group == "containers" {
                        errors.forbidden("\(path).restartPolicy", "may not be set for non-init containers")
                    } else if policy != "Always" {
                        errors.notSupported("\(path).restartPolicy", policy, ["Always"])
                    }
                }
                for (mountOffset, mount) in (container["volumeMounts"]?.array ?? []).enumerated() {
                    let volume = mount["name"]?.string ?? ""
                    if !volumes.contains(volume) {
                        errors.notFound("\(path).volumeMounts[\(mountOffset)].name", volume)
                    }
                }
            }
        }
        let policy = spec?["restartPolicy"]?.string ?? "Always"
        if !restartPolicies.contains(policy) {
            errors.notSupported("\(field).restartPolicy", policy, restartPolicies)
        }
    }

    static func job(_ object: JSON, errors: inout FieldErrors) {
        let spec = object["spec"]
        let name = object[["metadata", "name"]]?.string ?? ""
        podSpec(
            spec?[["template", "spec"]], field: "spec.template.spec", restartPolicies: ["OnFailure", "Never"],
            errors: &errors)
        for key in ["parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"] {
            if let value = spec?[key]?.int, value < 0 {
                errors.invalid("spec.\(key)", number: value, "must be greater than or equal to 0")
            }
        }
        if let deadline = spec?["activeDeadlineSeconds"]?.int, deadline <= 0 {
            errors.invalid("spec.activeDeadlineSeconds", number: deadline, "must be greater than 0")
        }
        // The controller copies the name into a label of every pod, so it must also be a valid label value.
        if name.utf8.count > 63 {
            errors.invalid("spec.template.labels", name, "must be no more than 63 characters")
        }
        for (key, value) in spec?[["template", "metadata", "labels"]]?.object ?? [:] {
            if let problem = Names.qualifiedNameError(key) {
                errors.invalid("spec.template.metadata.labels", key, problem)
            }
            if let text = value.string, !Names.isLabelValue(text) {
                errors.invalid("spec.template.metadata.labels", text, Names.labelValueMessage)
            }
        }
    }

    /// Defaults the real API server fills in on create, so clients see the same shapes.
    static func applyDefaults(_ object: inout JSON, _ resource: ResourceType, uid: String) {
        switch resource {
        case .jobs:
            var spec = object["spec"] ?? [:]
            if spec["parallelism"] == nil { spec["parallelism"] = 1 }
            if spec["completions"] == nil { spec["completions"] = 1 }
            if spec["backoffLimit"] == nil { spec["backoffLimit"] = 6 }
            if spec["completionMode"] == nil { spec["completionMode"] = "NonIndexed" }
            if spec["suspend"] == nil { spec["suspend"] = false }
            if spec["podReplacementPolicy"] == nil { spec["podReplacementPolicy"] = "TerminatingOrFailed" }
            let name = object[["metadata", "name"]]?.string ?? ""
            let generated: [String: String] = [
                "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                "controller-uid": uid, "job-name": name,
            ]
            if spec["manualSelector"]?.bool != true {
                spec["selector"] = ["matchLabels": ["batch.kubernetes.io/controller-uid": .string(uid)]]
            }
            var labels = spec[["template", "metadata", "labels"]]?.stringMap ?? [:]
            labels.merge(generated) { _, new in new }
            spec[["template", "metadata", "labels"]] = .stringMap(labels)
            var podSpec = spec[["template", "spec"]] ?? [:]
            defaultPodSpec(&podSpec)
            spec[["template", "spec"]] = podSpec
            object["spec"] = spec
            if (object[["metadata", "labels"]]?.object ?? [:]).isEmpty {
                object[["metadata", "labels"]] = .stringMap(labels)
            }
            if object["status"] == nil { object["status"] = [:] }
        case .pods:
            var spec = object["spec"] ?? [:]
            defaultPodSpec(&spec)
            object["spec"] = spec
            if object["status"] == nil { object["status"] = ["phase": "Pending", "qosClass": .string(qosClass(spec))] }
        case .secrets:
            if object["type"] == nil { object["type"] = "Opaque" }
            // stringData is write-only: it is merged into data as base64, as the real server does.
            if let stringData = object["stringData"]?.object {
                var data = object["data"]?.object ?? [:]
                for (key, value) in stringData {
                    data[key] = .string(Base64.encode(Array((value.string ?? "").utf8)))
                }
                object["data"] = .object(data)
                object["stringData"] = nil
            }
        case .persistentVolumeClaims:
            if object[["spec", "volumeMode"]] == nil { object[["spec", "volumeMode"]] = "Filesystem" }
            // The storage-object-in-use protection admission plugin adds this to every claim.
            var finalizers = (object[["metadata", "finalizers"]]?.array ?? []).compactMap(\.string)
            if !finalizers.contains(claimProtection) {
                finalizers.append(claimProtection)
                object[["metadata", "finalizers"]] = .array(finalizers.map { .string($0) })
            }
            if object["status"] == nil { object["status"] = ["phase": "Pending"] }
        case .networkPolicies:
            if object[["spec", "podSelector"]] == nil { object[["spec", "podSelector"]] = [:] }
            if object[["spec", "policyTypes"]] == nil {
                var types: [JSON] = ["Ingress"]
                if object[["spec", "egress"]] != nil { types.append("Egress") }
                object[["spec", "policyTypes"]] = .array(types)
            }
        default:
            break
        }
    }

    static func defaultPodSpec(_ spec: inout JSON) {
        if spec["restartPolicy"] == nil { spec["restartPolicy"] = "Always" }
        if spec["dnsPolicy"] == nil { spec["dnsPolicy"] = "ClusterFirst" }
        if spec["schedulerName"] == nil { spec["schedulerName"] = "default-scheduler" }
        if spec["terminationGracePeriodSeconds"] == nil { spec["terminationGracePeriodSeconds"] = 30 }
        if spec["securityContext"] == nil { spec["securityContext"] = [:] }
        for group in ["initContainers", "containers"] {
            guard var containers = spec[group]?.array else { continue }
            for offset in containers.indices {
                if containers[offset]["terminationMessagePath"] == nil {
                    containers[offset]["terminationMessagePath"] = "/dev/termination-log"
                }
                if containers[offset]["terminationMessagePolicy"] == nil {
                    containers[offset]["terminationMessagePolicy"] = "File"
                }
                if containers[offset]["imagePullPolicy"] == nil {
                    let image = containers[offset]["image"]?.string ?? ""
                    let tagged = image.contains("@") || (image.split(separator: "/").last?.contains(":") ?? false)
                    let latest = image.hasSuffix(":latest")
                    containers[offset]["imagePullPolicy"] = (tagged && !latest) ? "IfNotPresent" : "Always"
                }
                if containers[offset]["resources"] == nil { containers[offset]["resources"] = [:] }
            }
            spec[group] = .array(containers)
        }
    }

    static func qosClass(_ spec: JSON) -> String {
        let containers = spec["containers"]?.array ?? []
        let resources = containers.map { $0["resources"] ?? [:] }
        if resources.allSatisfy({ ($0["requests"]?.object ?? [:]).isEmpty && ($0["limits"]?.object ?? [:]).isEmpty }) {
            return "BestEffort"
        }
        let guaranteed = resources.allSatisfy { resource in
            let limits = resource["limits"]?.object ?? [:]
            let requests = resource["requests"]?.object ?? limits
            return limits["cpu"] != nil && limits["memory"] != nil && requests["cpu"] == limits["cpu"]
                && requests["memory"] == limits["memory"]
        }
        return guaranteed ? "Guaranteed" : "Burstable"
    }
}

/// Standard base64, enough for Secret `stringData`.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let first = bytes[index]
            let second = index + 1 < bytes.count ? bytes[index + 1] : 0
            let third = index + 2 < bytes.count ? bytes[index + 2] : 0
            out.append(alphabet[Int(first >> 2)])
            out.append(alphabet[Int((first & 0x03) << 4 | second >> 4)])
            out.append(index + 1 < bytes.count ? alphabet[Int((second & 0x0F) << 2 | third >> 6)] : UInt8(ascii: "="))
            out.append(index + 2 < bytes.count ? alphabet[Int(third & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
