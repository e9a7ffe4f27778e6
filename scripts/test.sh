#!/usr/bin/env bash
# Install, lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/env.sh
python3 -m ruff check src tests benchmarks
# a worker per logical CPU (pytest-xdist), each test file on one worker so that its module fixtures are
# built once; tests/conftest.py gives each worker one thread
python3 -m pytest -q -n "${VAELAB_TEST_WORKERS:-logical}" --dist loadfile tests "$@"
