"""Benchmarks of the gateway's hot paths, each reported as a ratio to a reference from the same run.

Run them all with `python -m bench.run` (or a subset: `python -m bench.run cycle write`); the
figures land in bench/results.json. Nothing here asserts: a benchmark reports, people judge.
"""
