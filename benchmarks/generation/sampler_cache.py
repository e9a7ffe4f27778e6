"""Fitted samplers kept in the run directory (#41, #47): the first `vaelab sample RUN --sampler X` fits X
and keeps it in RUN/samplers/KEY, the second loads it. Times both calls, as commands (a fresh `vaelab`
process each: what a user waits for, start-up included) and as `vaelab.api.sample_run` in one process
(the fit against the load, without the interpreter's start-up), for gmm on a digits VAE and code-prior
(its default 2,000 steps) on a digits VQ-VAE, gmm on an MNIST VAE (one epoch, 16 units: 20,000
codes to fit), and gmm on a CIFAR-10 VAE with the colour benchmark's wide code (256 units behind 1,024,
discretized logistic; one epoch on 20,000 images): 20,000 codes of 256 numbers, the case a user of
colour images meets. `vaelab sample --sampler prior` (nothing to fit) is the floor of a command.
Finished runs in --runs are reused; their kept samplers are removed first.

    VAELAB_DATA=../shared/data python -m benchmarks sampler_cache [--runs DIR] [--smoke]

writes benchmarks/results/sampler_cache.json (--smoke: the digits cases only, in-process, one epoch,
code-prior fitted for 20 steps).
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

RUNS = {("vae", "digits"): ["model.latent_dim=8", "train.epochs=10", "train.batch_size=32"],
        ("vq-vae", "digits"): ["train.epochs=2", "train.batch_size=32"],
        ("vae", "mnist"): ["model.arch=mlp", "model.latent_dim=16", "train.epochs=1"],
        ("vae", "cifar10"): ["model.likelihood=dlogistic", "model.latent_dim=256", "model.hidden_dim=1024", "data.limit=20000",
                             "train.epochs=1"]}
CASES = [("vae", "digits", "gmm"), ("vae", "digits", "prior"), ("vq-vae", "digits", "code-prior"), ("vae", "mnist", "gmm"),
         ("vae", "cifar10", "gmm")]


SMOKE: list[str] = []


def train(runs: Path, name: str, data: str, smoke: bool = False) -> Path:
    sets = RUNS[name, data]
    epochs = 1 if smoke else int(next(s for s in sets if s.startswith("train.epochs=")).split("=")[1])
    return train_or_reuse(name, data, epochs, runs, [s for s in sets if not s.startswith("train.epochs=")], latent_dim=None,
                          name=f"{name}-{data}")


def command(run: Path, sampler: str, out: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vaelab", "sample", str(run), "--sampler", sampler, "--out", str(out), "--force"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def in_process(run: Path, sampler: str, out: Path) -> float:
    from vaelab.api import sample_run

    t = time.perf_counter()
    sample_run(run, 64, out, sampler=sampler)
    return time.perf_counter() - t


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--cases", help="comma-separated MODEL-DATA-SAMPLER cases to time (default: all), e.g. "
                                    "vae-cifar10-gmm; their rows replace the same cases' rows in the results file")


def main(b: Bench) -> None:
    a, runs = b.args, b.runs
    runs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if a.smoke:  # in this process only: the commands are left out
        from vaelab.generate import CodePriorSampler

        CodePriorSampler.DEFAULT_STEPS = 20
    wanted = {c.strip() for c in a.cases.split(",")} if a.cases else None
    names = {f"{m}-{d}-{s}" for m, d, s in CASES}
    if wanted and wanted - names:
        raise SystemExit(f"--cases: unknown {sorted(wanted - names)}; the cases are {sorted(names)}")
    rows = []
    for model, data, sampler in CASES:
        if a.smoke and data != "digits":  # the same code path on more data
            continue
        if wanted and f"{model}-{data}-{sampler}" not in wanted:
            continue
        run = train(runs, model, data, a.smoke)
        shutil.rmtree(run / "samplers", ignore_errors=True)
        out = runs / f"{model}-{data}-{sampler}.png"
        row: dict = {"model": model, "data": data, "sampler": sampler, "command": b.command}
        if not a.smoke:
            row["command_first_s"] = command(run, sampler, out, env)
            row["command_second_s"] = command(run, sampler, out, env)
            row["command_ratio"] = row["command_first_s"] / row["command_second_s"]
            shutil.rmtree(run / "samplers", ignore_errors=True)
        if sampler != "code-prior" or a.smoke:  # code-prior's in-process fit would take as long again
            row["in_process_first_s"] = in_process(run, sampler, out)
            row["in_process_second_s"] = in_process(run, sampler, out)
            row["in_process_ratio"] = row["in_process_first_s"] / row["in_process_second_s"]
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    print_table(rows, ["model", "data", "sampler", "command_first_s", "command_second_s", "command_ratio", "in_process_first_s",
                       "in_process_second_s", "in_process_ratio"])
    key = ("model", "data", "sampler")

    def change(payload: dict) -> None:
        mine = {tuple(r[k] for k in key) for r in rows}
        old = [r for r in (payload["results"] if isinstance(payload["results"], list) else []) if tuple(r[k] for k in key) not in mine]
        payload["results"] = old + rows
        payload.update(runs=str(runs), threads=env["OMP_NUM_THREADS"])

    b.update(change)
