/// A small typed client for the part of the Kubernetes API c2d uses (DESIGN §1, §3).
enum KubernetesModule {}
