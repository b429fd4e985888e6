"""Benchmarks with recorded results (bench/RESULTS.md); not timed tests."""
