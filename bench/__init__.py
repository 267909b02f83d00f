"""Benchmarks; each writes bench/results/<name>.json and .md."""
