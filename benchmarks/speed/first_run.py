"""A new user's first run: `vaelab train vae --data mnist --epochs 1` to its report, and how much is not training.

`vaelab train vae --data mnist --epochs 1` from the command starting to its report path, and how much
of that is not training (imports, data, evaluation, figures).

Each code tree given with --tree (a `src` folder: this checkout's, or an older commit's from a
git worktree) runs the same command in a fresh process, one after the other, so that the share
of time outside training is compared on one machine in one sitting. Times come from the process
(wall clock) and from the run's metrics.json (`train_seconds`: fit() alone, data loading included).
A tree whose vaelab prints progress lines ('vaelab: trained in ...', 'vaelab: drawing the
report's figures') also gets the evaluation and figure phases timed from when those lines arrive.
Without --tree, the vaelab this process imports is timed. --set KEY=VALUE is added to the command;
--in-process runs it in this process (its imports already done: for smoke tests).

    git worktree add --detach /tmp/vaelab-before <commit>
    python -m benchmarks first_run --tree before=/tmp/vaelab-before/src --tree after=src [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks._harness import Bench, add_command_arguments, print_table, set_arguments, vaelab_command

COMMAND = ["train", "vae", "--data", "mnist", "--epochs", "1", "--set", "train.progress_bar=false"]
SMOKE = ["--in-process", "--set", "data.limit=300", "--set", "data.test_limit=100"]
NEEDS = ("mnist",)  # the data its smoke test reads (besides scikit-learn's)


def one_run(src: Path, out: Path, threads: int, extra: list[str], in_process: bool) -> dict:
    import vaelab

    if in_process and Path(vaelab.__file__).resolve().parents[1] != src.resolve():
        raise SystemExit(f"--in-process times the vaelab this process imported ({vaelab.__file__}), not {src}")
    env = {**os.environ, "PYTHONPATH": str(src.resolve()), "OMP_NUM_THREADS": str(threads)}
    lines, _ = vaelab_command([*COMMAND, *extra, "--out", str(out)], fresh=not in_process, env=env)
    marks: dict[str, float] = {}
    report = None
    for now, line in lines:
        if line.startswith("vaelab: trained in") and "trained" not in marks:
            marks["trained"] = now
        elif line.startswith("vaelab: drawing the report's figures"):
            marks["figures"] = now
        elif line.startswith("report: "):
            report = line.split("report: ", 1)[1].strip()
            marks["report"] = now
    if report is None:
        raise SystemExit(f"vaelab {' '.join(COMMAND)} printed no report path")
    wall = marks["report"]
    train = json.loads((out / "metrics.json").read_text())["train_seconds"]
    row = {"wall_s": round(wall, 2), "train_s": round(train, 2), "not_training_s": round(wall - train, 2),
           "not_training_share": round((wall - train) / wall, 3)}
    if "trained" in marks and "figures" in marks:
        row["evaluate_s"] = round(marks["figures"] - marks["trained"], 2)
        row["figures_s"] = round(marks["report"] - marks["figures"], 2)
        row["before_training_s"] = round(marks["trained"] - train, 2)  # interpreter, imports, argument checks
    return row


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--tree", action="append", default=None, metavar="NAME=SRC",
                    help="a vaelab src folder to time (repeatable; default: this process's vaelab)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per tree, alternating between trees")
    ap.add_argument("--threads", type=int, default=2)
    add_command_arguments(ap)


def main(b: Bench) -> None:
    import vaelab

    args = b.args
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in args.tree or [f"this={Path(vaelab.__file__).parents[1]}"]]
    extra = set_arguments(args.settings)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vaelab-first-run-") as tmp:
        for r in range(args.repeats):
            for name, src in trees:
                row = {"tree": name, "repeat": r, **one_run(src, Path(tmp) / f"{name}-{r}", args.threads, extra, args.in_process)}
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
    b.write(rows, summary=summary, trees={n: str(s) for n, s in trees}, vaelab_command=" ".join(["vaelab", *COMMAND, *extra]),
            in_process=args.in_process)
