"""Benchmarks (`nox -s bench`): shared helpers, the comparison, archive scale, the floor."""
