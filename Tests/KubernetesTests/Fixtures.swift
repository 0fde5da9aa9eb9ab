/// Objects as a v1.31 API server returns them, trimmed to what the tests read plus some fields they must ignore.
enum Fixtures {
    static let oomKilledPod = """
        {
          "kind": "Pod", "apiVersion": "v1",
          "metadata": {
            "name": "c2d-7-0-algorithm-x2k9p", "generateName": "c2d-7-0-algorithm-", "namespace": "c2d",
            "uid": "5e0b1c2a-1111-4a5b-9c8d-000000000001", "resourceVersion": "811",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"batch.kubernetes.io/job-name": "c2d-7-0-algorithm", "c2d.io/job-id": "7"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "c2d-7-0-algorithm",
              "uid": "0b5c4f3e", "controller": true, "blockOwnerDeletion": true}],
            "finalizers": ["batch.kubernetes.io/job-tracking"],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}]
          },
          "spec": {
            "volumes": [
              {"name": "data", "persistentVolumeClaim": {"claimName": "c2d-7-data"}},
              {"name": "workflow", "secret": {"secretName": "c2d-7", "defaultMode": 420}}
            ],
            "initContainers": [{"name": "configure", "image": "c2d:latest", "resources": {}}],
            "containers": [{
              "name": "algorithm", "image": "python:3.12", "command": ["python", "/data/a.py"],
              "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}},
              "volumeMounts": [{"name": "data", "mountPath": "/data"}],
              "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"
            }],
            "restartPolicy": "Never", "automountServiceAccountToken": false, "nodeName": "kwok-node-0",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 1000,
              "seccompProfile": {"type": "RuntimeDefault"}},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]
          },
          "status": {
            "phase": "Failed",
            "conditions": [
              {"type": "Ready", "status": "False", "lastProbeTime": null,
               "lastTransitionTime": "2026-01-01T00:00:10Z", "reason": "PodFailed"}
            ],
            "hostIP": "10.0.0.5", "podIP": "10.244.0.7",
            "startTime": "2026-01-01T00:00:01Z",
            "initContainerStatuses": [{
              "name": "configure", "ready": true, "restartCount": 0, "image": "c2d:latest", "imageID": "",
              "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                "startedAt": "2026-01-01T00:00:02Z", "finishedAt": "2026-01-01T00:00:03Z"}}
            }],
            "containerStatuses": [{
              "name": "algorithm", "ready": false, "restartCount": 0, "started": false,
              "image": "docker.io/library/python:3.12", "imageID": "docker.io/library/python@sha256:abc",
              "containerID": "containerd://deadbeef",
              "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                "startedAt": "2026-01-01T00:00:04Z", "finishedAt": "2026-01-01T00:00:10Z",
                "containerID": "containerd://deadbeef"}},
              "lastState": {}
            }],
            "qosClass": "Burstable"
          }
        }
        """

    static func job(condition: String) -> String {
        let reason =
            condition == "Failed"
            ? #""reason": "BackoffLimitExceeded", "#
                + #""message": "Job has reached the specified backoff limit", "# : ""
        let counts = condition == "Failed" ? #""failed": 1"# : #""succeeded": 1"#
        return """
            {
              "kind": "Job", "apiVersion": "batch/v1",
              "metadata": {"name": "c2d-7-0-algorithm", "namespace": "c2d", "uid": "0b5c4f3e",
                "resourceVersion": "812", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app.kubernetes.io/managed-by": "c2d", "c2d.io/job-id": "7", "c2d.io/step": "algorithm"}},
              "spec": {
                "parallelism": 1, "completions": 1, "backoffLimit": 0, "activeDeadlineSeconds": 3600,
                "podFailurePolicy": {"rules": [{"action": "FailJob",
                  "onExitCodes": {"containerName": "algorithm", "operator": "In", "values": [42]}}]},
                "completionMode": "NonIndexed", "suspend": false,
                "template": {"metadata": {"labels": {"c2d.io/job-id": "7"}},
                  "spec": {"containers": [{"name": "algorithm", "image": "python:3.12"}], "restartPolicy": "Never"}}
              },
              "status": {
                "conditions": [
                  {"type": "\(condition == "Failed" ? "FailureTarget" : "SuccessCriteriaMet")", "status": "True",
                   "lastProbeTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                  {"type": "\(condition)", "status": "True", \(reason)
                   "lastProbeTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ],
                "startTime": "2025-12-31T23:59:50Z", "completionTime": "2026-01-01T00:00:00Z",
                \(counts), "ready": 0, "terminating": 0,
                "uncountedTerminatedPods": {}
              }
            }
            """
    }
}
