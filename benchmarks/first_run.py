"""A new user's first run: `vaelab train vae --data mnist --epochs 1` from the command starting to
its report path, and how much of that is not training (imports, data, evaluation, figures).

Each code tree given with --tree (a `src` folder: this checkout's, or an older commit's from a
git worktree) runs the same command in a fresh process, one after the other, so that the share
of time outside training is compared on one machine in one sitting. Times come from the process
(wall clock) and from the run's metrics.json (`train_seconds`: fit() alone, data loading included).
A tree whose vaelab prints progress lines ('vaelab: trained in ...', 'vaelab: drawing the
report's figures') also gets the evaluation and figure phases timed from when those lines arrive.

    git worktree add --detach /tmp/vaelab-before <commit>
    python benchmarks/first_run.py --tree before=/tmp/vaelab-before/src --tree after=src [--repeats 2]
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

COMMAND = ["train", "vae", "--data", "mnist", "--epochs", "1", "--set", "train.progress_bar=false"]


def one_run(src: Path, out: Path, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "vaelab", *COMMAND, "--out", str(out)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    marks: dict[str, float] = {}
    report = None
    assert p.stdout is not None
    for line in p.stdout:
        now = time.perf_counter() - t0
        if line.startswith("vaelab: trained in") and "trained" not in marks:
            marks["trained"] = now
        elif line.startswith("vaelab: drawing the report's figures"):
            marks["figures"] = now
        elif line.startswith("report: "):
            report = line.split("report: ", 1)[1].strip()
            marks["report"] = now
    if p.wait() != 0 or report is None:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {p.returncode})")
    wall = marks["report"]
    train = json.loads((out / "metrics.json").read_text())["train_seconds"]
    row = {"wall_s": round(wall, 2), "train_s": round(train, 2), "not_training_s": round(wall - train, 2),
           "not_training_share": round((wall - train) / wall, 3)}
    if "trained" in marks and "figures" in marks:
        row["evaluate_s"] = round(marks["figures"] - marks["trained"], 2)
        row["figures_s"] = round(marks["report"] - marks["figures"], 2)
        row["before_training_s"] = round(marks["trained"] - train, 2)  # interpreter, imports, argument checks
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", required=True, metavar="NAME=SRC", help="a vaelab src folder to time")
    ap.add_argument("--repeats", type=int, default=1, help="runs per tree, alternating between trees")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="first_run")
    args = ap.parse_args()
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in args.tree]
    rows = []
    with tempfile.TemporaryDirectory(prefix="vaelab-first-run-") as tmp:
        for r in range(args.repeats):
            for name, src in trees:
                row = {"tree": name, "repeat": r, **one_run(src, Path(tmp) / f"{name}-{r}", args.threads)}
                print(row, flush=True)
                rows.append(row)
    print_table(rows, ["tree", "repeat", "wall_s", "train_s", "not_training_s", "not_training_share", "evaluate_s",
                       "figures_s"])
    summary = {}
    for name, _ in trees:
        mine = [r for r in rows if r["tree"] == name]
        summary[name] = {k: round(sum(r[k] for r in mine) / len(mine), 3)
                         for k in ("wall_s", "train_s", "not_training_s", "not_training_share")}
    print(json.dumps(summary, indent=2))
    write_result(args.name, rows, summary=summary, trees={n: str(s) for n, s in trees}, vaelab_command=" ".join(["vaelab", *COMMAND]))


if __name__ == "__main__":
    main()
