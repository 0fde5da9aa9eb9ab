/// An emulator of the Kubernetes API subset c2d uses, for tests, benchmarks and `c2d kube-sim` (DESIGN §8).
enum KubernetesEmulatorModule {}
