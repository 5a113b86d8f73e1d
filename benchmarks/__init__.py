"""Benchmarks of lockprof itself; every one prints ratios against a baseline measured in the same run."""
