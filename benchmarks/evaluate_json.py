"""How long `vaelab evaluate RUN --metrics elbo --json` takes now that it redraws nothing, against the
same command with `--report` (what it did before: the report's figures, mixture fit and t-SNE drawn
again). One run, the two commands alternated --repeats times; the ratio is of the medians.

    VAELAB_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/evaluate_json.py
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, write_result  # noqa: E402
from _zoo_runner import train_or_reuse  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="/tmp/vaelab-bench-evaluate", help="where the run is trained (reused when finished)")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="digits, one repeat")
    ap.add_argument("--name", default="evaluate_json")
    a = ap.parse_args()
    data, limit, repeats = ("digits", 1000, 1) if a.smoke else (a.data, a.limit, a.repeats)
    run = train_or_reuse("vae", data, 1, Path(a.runs) / f"limit{limit}", ["--set", f"data.limit={limit}"])
    times: dict[str, list[float]] = {"json": [], "json --report": []}
    for _ in range(repeats):
        for label, extra in (("json", []), ("json --report", ["--report"])):
            t0 = time.perf_counter()
            subprocess.run(["vaelab", "evaluate", str(run), "--metrics", "elbo", "--json", *extra], check=True, capture_output=True)
            times[label].append(time.perf_counter() - t0)
    rows = [{"command": f"vaelab evaluate RUN --metrics elbo --{k}", "median_s": float(np.median(v)), "runs_s": v}
            for k, v in times.items()]
    ratio = rows[1]["median_s"] / rows[0]["median_s"]
    print_table(rows, ["command", "median_s"])
    print(f"--json without the report is {ratio:.1f}x faster")
    write_result(a.name, rows, run=str(run), data=data, limit=limit, speedup=ratio)


if __name__ == "__main__":
    main()
