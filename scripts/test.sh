#!/usr/bin/env bash
# Install, lint, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/env.sh
python3 -m ruff check src tests benchmarks
python3 -m pytest -q tests "$@"
