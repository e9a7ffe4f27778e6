#!/usr/bin/env bash
# The main job: install, train a VAE on Fashion-MNIST, evaluate it on the test set, print the report's path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
source scripts/env.sh
vaelab train vae --data fashion-mnist --epochs "${EPOCHS:-10}" --latent-dim 16 "$@"
