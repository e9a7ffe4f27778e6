"""The benchmarks that measure every figure the README and docs/results.md quote, grouped by topic
(one sub-package each). Run one from the repository root with `python -m benchmarks NAME`; list
them with `python -m benchmarks --list`. benchmarks/_harness.py is what they share."""
