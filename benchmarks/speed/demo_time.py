"""How long the README's main job takes: `bash scripts/demo.sh` timed from the shell, and its training per epoch.

`bash scripts/demo.sh` (install check, a VAE trained on Fashion-MNIST, its evaluation and report) with
EPOCHS=--epochs, timed from the shell, with the training time per epoch from the run's metrics.json.
The run goes to a temporary folder and is removed. --set KEY=VALUE goes on to the demo's `vaelab train`.
--in-process runs the demo's `vaelab train` line in this process instead, without its install step
(for smoke tests).

    VAELAB_DATA=../shared/data python -m benchmarks demo_time --epochs 2
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks._harness import ROOT, Bench, add_command_arguments, print_table, set_arguments, vaelab_command

DEMO = ROOT / "scripts" / "demo.sh"
SMOKE = ["--epochs", "1", "--in-process", "--set", "data.limit=300", "--set", "data.test_limit=100"]
NEEDS = ("fashion-mnist",)  # the data its smoke test reads (besides scikit-learn's)


def demo_command(epochs: int, extra: list[str]) -> list[str]:
    """The arguments of the `vaelab` line of scripts/demo.sh, with EPOCHS and "$@" filled in."""
    line = next((ln for ln in DEMO.read_text().splitlines() if ln.startswith("vaelab ")), None)
    if line is None:
        raise SystemExit(f"{DEMO} has no line starting `vaelab `: update demo_time.demo_command")
    words = shlex.split(line.replace('"${EPOCHS:-10}"', str(epochs)).replace('"$@"', "@ARGS@"))[1:]
    return [v for w in words for v in (extra if w == "@ARGS@" else [w])]


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--epochs", type=int, default=2)
    add_command_arguments(ap)


def main(b: Bench) -> None:
    a = b.args
    extra = set_arguments(a.settings)
    with tempfile.TemporaryDirectory(prefix="vaelab-demo-") as tmp:
        run = Path(tmp) / "run"
        if a.in_process:
            lines, wall = vaelab_command(demo_command(a.epochs, ["--out", str(run), *extra]), fresh=False)
            last = lines[-1][1] if lines else ""
        else:
            t0 = time.perf_counter()
            p = subprocess.run(["bash", str(DEMO), "--out", str(run), *extra], env={**os.environ, "EPOCHS": str(a.epochs)},
                               capture_output=True, text=True, check=True)
            wall = time.perf_counter() - t0
            last = p.stdout.strip().splitlines()[-1]
        m = json.loads((run / "metrics.json").read_text())
    row = {"epochs": a.epochs, "wall_s": round(wall, 1), "train_s": round(m["train_seconds"], 1),
           "per_epoch_s": round(m["train_seconds"] / a.epochs, 1), "outside_training_s": round(wall - m["train_seconds"], 1),
           "report_line": last.startswith("report: ")}
    print_table([row], list(row))
    b.write([row], in_process=a.in_process, settings=a.settings)
