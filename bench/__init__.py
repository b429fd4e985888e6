"""Benchmarks with recorded results (bench/history.jsonl, summarised in bench/RESULTS.md); not timed tests."""
