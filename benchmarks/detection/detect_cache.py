"""A detector kept in the run: the first `vaelab detect RUN` fits and calibrates it, the second reuses it; both timed.

`vaelab detect` keeps the fitted detector in RUN/detectors/KEY (keyed by its settings, the data it was fitted and
calibrated on and the weights) and reuses it on the next call with the same key, instead of scoring the training
split again. Each case is timed as a command (a fresh `vaelab` process, what a user waits for) and as
`vaelab.api.detect_run` in one process; the first call starts from a run with no kept detector.

    VAELAB_DATA=../shared/data OMP_NUM_THREADS=1 python -m benchmarks detect_cache [--runs DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._harness import Bench, print_table, train_or_reuse

SMOKE = ["--cases", "digits"]
# (dataset, epochs, the scored set, settings): a small run, and a Fashion-MNIST one whose training split is 54,000 images
CASES = {"digits": ("digits", 10, "digits", ["model.latent_dim=8", "train.batch_size=32"]),
         "fashion-mnist": ("fashion-mnist", 1, "mnist", ["data.test_limit=2000"])}


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")


def command(run: Path, data: str, out: Path, env: dict[str, str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vaelab", "detect", str(run), "--data", data, "--out", str(out), "--quiet"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def in_process(run: Path, data: str, out: Path) -> float:
    from vaelab.api import detect_run

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    detect_run(run, data, out=out)
    return time.perf_counter() - t


def main(b: Bench) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rows = []
    for case in b.args.cases.split(","):
        data, epochs, scored, sets = CASES[case]
        run = train_or_reuse("vae", data, epochs, b.runs, sets, latent_dim=None, name=f"vae-{data}")
        out = b.runs / f"detect-{case}"
        row: dict = {"case": case, "run_data": data, "scored": scored}
        shutil.rmtree(run / "detectors", ignore_errors=True)
        row["command_first_s"] = command(run, scored, out, env)
        row["command_second_s"] = command(run, scored, out, env)
        row["command_ratio"] = row["command_first_s"] / row["command_second_s"]
        shutil.rmtree(run / "detectors", ignore_errors=True)
        row["in_process_first_s"] = in_process(run, scored, out)
        row["in_process_second_s"] = in_process(run, scored, out)
        row["in_process_ratio"] = row["in_process_first_s"] / row["in_process_second_s"]
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    print_table(rows, ["case", "scored", "command_first_s", "command_second_s", "command_ratio", "in_process_first_s",
                       "in_process_second_s", "in_process_ratio"])
    b.write(rows, threads=env["OMP_NUM_THREADS"])
