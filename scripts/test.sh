#!/usr/bin/env bash
# Install, lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/env.sh
python3 -m ruff check src tests benchmarks
# a worker per logical CPU (pytest-xdist), each test file on one worker so that its module fixtures are
# built once; tests/conftest.py gives each worker one thread
# in file order (-p no:randomly: the same order on every machine, whether or not pytest-randomly is installed);
# `python3 -m pytest -p randomly --randomly-seed=N` checks that no test depends on another's order
python3 -m pytest -q -n "${VAELAB_TEST_WORKERS:-logical}" --dist loadfile -p no:randomly tests "$@"
