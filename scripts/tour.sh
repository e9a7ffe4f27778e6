#!/usr/bin/env bash
# The README's five-minute tour as printed, run in RUNS (default /tmp/vaelab-tour, outside the
# repository), each command echoed above its output in RUNS/tour.log; then an anomaly map of the tour's
# VAE (digits with a pasted noise patch). With --figures, copies the figures the docs' front page shows
# to docs/img/ (reconstructions, GMM samples, the latent map, the anomaly maps). docs/index.md quotes
# RUNS/tour.log; scripts/screenshots.sh shoots the tour's report.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source scripts/env.sh
RUNS=${RUNS:-/tmp/vaelab-tour}
rm -rf "$RUNS" && mkdir -p "$RUNS"
awk '/^## A five-minute tour/{t=1} t&&/^```bash/{b=1;next} b&&/^```/{exit} b' README.md > "$RUNS/tour.sh"
cat >> "$RUNS/tour.sh" <<'EOF'
vaelab data build-defects --data digits --kind noise --out runs/defects.npz
vaelab detect runs/tour-vae --data runs/defects.npz --split test --maps mse,ssim --out runs/tour-maps
EOF
cd "$RUNS"
while IFS= read -r line; do
  [ -z "$line" ] && continue
  echo "\$ $line" | tee -a tour.log
  bash -euo pipefail -c "$line" 2>&1 | tee -a tour.log
done < tour.sh
if [ "${1:-}" = "--figures" ]; then
  mkdir -p "$ROOT/docs/img"
  cp runs/tour-vae/figures/reconstructions.png "$ROOT/docs/img/tour-reconstructions.png"
  cp runs/tour-samples.png "$ROOT/docs/img/tour-samples-gmm.png"
  cp runs/tour-vae/figures/latent_map.png "$ROOT/docs/img/tour-latent-map.png"
  cp runs/tour-maps/figures/maps.png "$ROOT/docs/img/tour-anomaly-maps.png"
  echo "copied the tour's figures to docs/img/"
fi
echo "tour log: $RUNS/tour.log"
