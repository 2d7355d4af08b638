"""Tests of the benchmark suite under benchmarks/."""
