#!/usr/bin/env bash
# Screenshots for the docs, taken with headless Chromium (Debian's package, installed here if missing; the
# test suite does not need it; the app's shot drives it through scripts/_page_shot.py). Runs go to RUNS
# (default /tmp/vaelab-screenshots, outside the repository) and finished runs are reused.
#
#   bash scripts/screenshots.sh [front] [tour] [report] [compare] [app]     (default: all of them)
#
# front:   the docs site's front page (built with mkdocs into RUNS/site) -> docs/images/front-page.png
# tour:    the report of the README tour's VAE (scripts/tour.sh, on digits) -> docs/images/tour-report.png
# report, compare: a run report and `vaelab compare` of a VAE, a beta-VAE and a BVAE trained on
#          Fashion-MNIST -> docs/images/report.png, docs/images/compare.png
# app:     `vaelab app` on that VAE run, served on a local port while the shot is taken -> docs/images/app.png
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
RUNS=${RUNS:-/tmp/vaelab-screenshots}
EPOCHS=${EPOCHS:-2}
SHOTS=${*:-front tour report compare app}
if ! command -v chromium >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; }
fi
mkdir -p "$RUNS"
shot() {  # page, png, height[, width]
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="${4:-1200}","$3" --screenshot="$2" "file://$1" >/dev/null 2>&1
  echo "wrote $2"
}
wants() { [[ " $SHOTS " == *" $1 "* ]]; }
if wants front; then
  python -m mkdocs build --strict -q -d "$RUNS/site" 2>/dev/null
  shot "$RUNS/site/index.html" docs/images/front-page.png 2200 1440  # wide enough for the theme's tabs and navigation
fi
if wants tour; then
  [ -f "$RUNS/tour/runs/tour-vae/finished.json" ] || RUNS="$RUNS/tour" bash scripts/tour.sh >/dev/null
  shot "$RUNS/tour/runs/tour-vae/report.html" docs/images/tour-report.png 2600
fi
if wants report || wants compare || wants app; then
  for m in vae beta-vae bvae; do
    [ -f "$RUNS/$m/metrics.json" ] || vaelab train "$m" --data fashion-mnist --epochs "$EPOCHS" --set train.progress_bar=false --out "$RUNS/$m"
  done
fi
if wants compare; then
  vaelab compare "$RUNS/vae" "$RUNS/beta-vae" "$RUNS/bvae" --out "$RUNS/compare.html"
  shot "$RUNS/compare.html" docs/images/compare.png 2600
fi
wants report && shot "$RUNS/vae/report.html" docs/images/report.png 2600
if wants app; then
  PORT=${PORT:-7871}
  vaelab app "$RUNS/vae" --port "$PORT" --examples 8 > "$RUNS/app.log" 2>&1 &
  APP=$!
  trap 'kill $APP 2>/dev/null || true' EXIT
  for _ in $(seq 1 300); do  # the detector is fitted before the page is served
    curl -sf "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break
    kill -0 $APP 2>/dev/null || { cat "$RUNS/app.log"; exit 1; }
    sleep 1
  done
  python3 -c "import websocket" 2>/dev/null || python3 -m pip install -q websocket-client  # DevTools client of the app shot
  python3 scripts/_page_shot.py "http://127.0.0.1:$PORT/" docs/images/app.png --wait-for "threshold" --height 1000 >/dev/null
  echo "wrote docs/images/app.png"
fi
