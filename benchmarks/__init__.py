"""The performance suite: every figure is a ratio against a baseline measured in the
same run, on the same services and settings (see docs/benchmarks.md)."""
