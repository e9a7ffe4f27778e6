"""How long `vaelab evaluate RUN --metrics elbo --json` takes without redrawing the report, against `--report`.

How long `vaelab evaluate RUN --metrics elbo --json` takes now that it redraws nothing, against the
same command with `--report` (what it did before: the report's figures, mixture fit and t-SNE drawn
again). One run, the two commands alternated --repeats times, each in a fresh process; the ratio is of
the medians.

    VAELAB_DATA=../shared/data OMP_NUM_THREADS=1 python -m benchmarks evaluate_json
"""
from __future__ import annotations

import argparse

import numpy as np

from benchmarks._harness import Bench, add_command_arguments, print_table, train_or_reuse, vaelab_command

SMOKE = ["--data", "digits", "--limit", "1000", "--repeats", "1", "--in-process"]
RUNS_OF = "conformal"  # a one-epoch VAE on --limit images: conformal's run of the same settings is reused


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    add_command_arguments(ap, settings=False)


def main(b: Bench) -> None:
    a = b.args
    run = train_or_reuse("vae", a.data, 1, b.runs / f"limit{a.limit}", [f"data.limit={a.limit}"])
    times: dict[str, list[float]] = {"json": [], "json --report": []}
    for _ in range(a.repeats):
        for label, extra in (("json", []), ("json --report", ["--report"])):
            _, seconds = vaelab_command(["evaluate", str(run), "--metrics", "elbo", "--json", *extra], fresh=not a.in_process)
            times[label].append(seconds)
    rows = [{"command": f"vaelab evaluate RUN --metrics elbo --{k}", "median_s": float(np.median(v)), "runs_s": v}
            for k, v in times.items()]
    ratio = rows[1]["median_s"] / rows[0]["median_s"]
    print_table(rows, ["command", "median_s"])
    print(f"--json without the report is {ratio:.1f}x faster")
    b.write(rows, run=str(run), data=a.data, limit=a.limit, speedup=ratio, in_process=a.in_process)
