"""How long the README's main job takes: `bash scripts/demo.sh` (install check, a VAE trained on
Fashion-MNIST, its evaluation and report) with EPOCHS=--epochs, timed from the shell, with the training
time per epoch from the run's metrics.json. The run goes to a temporary folder and is removed.

    VAELAB_DATA=../shared/data python benchmarks/demo_time.py --epochs 2
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="one epoch")
    ap.add_argument("--name", default="demo_time")
    a = ap.parse_args()
    epochs = 1 if a.smoke else a.epochs
    with tempfile.TemporaryDirectory(prefix="vaelab-demo-") as tmp:
        run = Path(tmp) / "run"
        t0 = time.perf_counter()
        p = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), "--out", str(run)], env={**os.environ, "EPOCHS": str(epochs)},
                           capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        m = json.loads((run / "metrics.json").read_text())
    row = {"epochs": epochs, "wall_s": round(wall, 1), "train_s": round(m["train_seconds"], 1),
           "per_epoch_s": round(m["train_seconds"] / epochs, 1), "outside_training_s": round(wall - m["train_seconds"], 1),
           "report_line": p.stdout.strip().splitlines()[-1].startswith("report: ")}
    print_table([row], list(row))
    write_result(a.name, [row])


if __name__ == "__main__":
    main()
