"""persistio's benchmark suite: one database vs tiered stores, persistio vs raw drivers.

Run ``python -m benchmarks --help``; method, caveats and the latest results are in README.md.
Importing this package declares the benchmark's model (intents ``bm_*``) and does no I/O.
"""
