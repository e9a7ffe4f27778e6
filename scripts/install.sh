#!/usr/bin/env bash
# Installs vaelab and everything it needs; safe to run again. Used by demo.sh, test.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# A CPU build of torch first, so that resolving vaelab's torch range pulls no CUDA wheels here.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q -e ".[dev,mlflow,wandb,export,app]"
# Fashion-MNIST, the default dataset, from Debian when the package exists (vaelab downloads it otherwise).
if [ ! -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  { $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }; } ||
    echo "note: could not install Debian's dataset-fashion-mnist; vaelab will download Fashion-MNIST when online" >&2
fi
# CI runs the tests that need Fashion-MNIST (a missing data set fails them under CI=true): stop here, naming it.
if [ "${CI:-}" = "true" ] &&
   ! (source scripts/env.sh && "$PY" -c "import sys; from vaelab.data import get_source; sys.exit(get_source('fashion-mnist').locate() is None)"); then
  echo "error: CI=true and Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist failed or apt-get is missing)" >&2
  exit 1
fi
