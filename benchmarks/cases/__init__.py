"""Benchmark variants; every module here is imported by `registry.discover()`."""
