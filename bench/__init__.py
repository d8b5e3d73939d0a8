"""Benchmarks: run with `uv run python -m bench --help`. They print figures; no test asserts a
timing."""
