"""Runyard benchmark suite.

Run everything with ``python -m benchmarks`` from the repository root; see
``benchmarks/README.md`` for the method behind each number.
"""
