"""LoKey benchmarks: each prints its figure and a ratio against a limit measured in the same run."""
