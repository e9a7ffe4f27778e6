"""The harness every benchmark runs under (`python -m benchmarks NAME`): the registry of benchmarks,
the arguments they share, where their runs and results go, training a run or reusing a finished one,
and the stamp on every results file.

A benchmark is a module benchmarks/TOPIC/NAME.py (NAME unique across topics) whose docstring's first
line says what it measures, with

    SMOKE = [...]            # the arguments --smoke puts before the command line's: tiny data, 1 epoch
    USES_JOBS = True         # optional: it runs --jobs runs at once (other benchmarks refuse --jobs > 1)
    RUNS_OF = "other"        # optional: its runs are benchmark OTHER's (the default --runs is that one's)
    RESULT = "other"         # optional: its results file is OTHER.json (the parts of one experiment)
    NEEDS = ("mnist",)       # optional: the datasets its smoke test reads besides scikit-learn's (the tests skip
                             # it where one is missing, outside CI)
    def arguments(ap): ...   # its own options
    def main(b: Bench): ...  # the work; b.write(rows, **extra) writes results/NAME.json

Shared options: --runs DIR (where run directories live: outside the repository by default, finished
runs reused, killed ones resumed), --results DIR (where NAME.json goes: benchmarks/results by default;
under --smoke a temporary folder, never benchmarks/results), --smoke, --jobs, --name.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent
RESULTS = PACKAGE / "results"
# under --smoke every run train_or_reuse trains sees at most this much data (a benchmark's own data settings win)
SMOKE_DATA = ["data.limit=300", "data.test_limit=100"]
_smoke_runs = False  # set by run() while a benchmark runs with --smoke


# ---- the registry -------------------------------------------------------------------------------
def registry() -> dict[str, str]:
    """NAME -> TOPIC of every benchmark: each benchmarks/TOPIC/NAME.py (TOPIC a package, NAME not
    starting with '_'). Two files of one NAME in two topics are refused."""
    found: dict[str, str] = {}
    for topic in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file() and not p.name.startswith("_")):
        for f in sorted(topic.glob("*.py")):
            if f.stem.startswith("_"):
                continue
            if f.stem in found:
                raise SystemExit(f"two benchmarks named {f.stem}: {found[f.stem]}/{f.stem}.py and {topic.name}/{f.name}")
            found[f.stem] = topic.name
    return found


def load(name: str) -> ModuleType:
    topics = registry()
    if name not in topics:
        raise SystemExit(f"no benchmark named {name!r}; `python -m benchmarks --list` lists them")
    return importlib.import_module(f"benchmarks.{topics[name]}.{name}")


def summary(name: str) -> str:
    """The first line of benchmark NAME's docstring (read from its file, not imported)."""
    import ast

    doc = ast.get_docstring(ast.parse((PACKAGE / registry()[name] / f"{name}.py").read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


# ---- arguments and the run of one benchmark -----------------------------------------------------
def runs_root() -> Path:
    """Where run directories live unless --runs says: $VAELAB_BENCH_RUNS, else a folder of the
    system's temporary directory (outside the repository)."""
    return Path(os.environ.get("VAELAB_BENCH_RUNS") or Path(tempfile.gettempdir()) / "vaelab-bench-runs")


def parser(name: str, module: ModuleType) -> argparse.ArgumentParser:
    doc = (module.__doc__ or "").strip()
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks {name}", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = ap.add_argument_group("shared by every benchmark")
    shared.add_argument("--runs", default=None,
                        help=f"where run directories live (default: {runs_root()}/{getattr(module, 'RUNS_OF', name)}, with "
                             "--smoke .../smoke/...); finished runs are reused, a killed one resumed")
    shared.add_argument("--results", default=None,
                        help="folder of the results file (default: benchmarks/results; with --smoke a temporary folder)")
    shared.add_argument("--smoke", action="store_true",
                        help=f"tiny data, one epoch, in seconds: the same code path (puts {shlex.join(getattr(module, 'SMOKE', []))!s} "
                             f"first; the runs it trains get {' '.join(SMOKE_DATA)}); results never go to benchmarks/results")
    shared.add_argument("--jobs", type=int, default=1, help="runs trained at once, one process each (where the benchmark "
                                                            "trains independent runs; default 1)")
    result = getattr(module, "RESULT", name)
    shared.add_argument("--name", default=result, help=f"the results file NAME.json (default {result})")
    module.arguments(ap)
    return ap


@dataclass
class Bench:
    """What a benchmark's main() gets: its arguments, its folders, and the writer of its results."""

    name: str
    args: argparse.Namespace
    command: str
    runs: Path
    results: Path
    written: list[Path] = field(default_factory=list)

    @property
    def smoke(self) -> bool:
        return bool(self.args.smoke)

    def result_path(self, name: str | None = None) -> Path:
        return self.results / f"{name or self.args.name}.json"

    def previous(self, name: str | None = None) -> dict:
        """The results file as it stands (the benchmarks that merge a call's rows into earlier ones), or {}."""
        path = self.result_path(name)
        return json.loads(path.read_text()) if path.is_file() else {}

    def path(self, given: str) -> Path:
        """A path from the command line: as given when it is absolute or exists, else under --runs."""
        p = Path(given)
        return p if p.is_absolute() or p.exists() else self.runs / p

    def smoke_first(self, name: str) -> None:
        """Under --smoke, for a benchmark that reads another's runs and found none: benchmark NAME's smoke
        test first, into the same --runs and --results (elsewhere it is up to the user to run NAME)."""
        if self.smoke:
            run(name, ["--smoke", "--runs", str(self.runs), "--results", str(self.results)])

    def stamp(self) -> dict:
        return {"command": self.command, "commit": commit(), "date": time.strftime("%Y-%m-%d"), "machine": machine(),
                "versions": versions(), "smoke": self.smoke}

    def write(self, rows: list[dict] | dict, name: str | None = None, **extra) -> Path:
        """results/NAME.json: the benchmark, the stamp (command, commit, date, machine, versions), the rows
        and ``extra``."""
        out = self.result_path(name)
        payload = {"benchmark": name or self.args.name, **self.stamp(), "results": rows, **extra}
        self.write_json(out, payload)
        return out

    def update(self, change, name: str | None = None) -> Path:
        """Merge into results/NAME.json: read it under an exclusive lock, let ``change(payload)`` change its
        payload in place (``payload["results"]``: the results so far, {} for a new file; its other keys are
        the extra ones), and write it back with this call's stamp. Several processes (one per dataset or
        class, say) can write into one results file."""
        import fcntl

        out = self.result_path(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            stamp = self.stamp()
            old = json.loads(out.read_text()) if out.is_file() else {}
            payload = {k: v for k, v in old.items() if k not in ("benchmark", *stamp)}
            payload.setdefault("results", {})
            change(payload)
            self.write_json(out, {"benchmark": name or self.args.name, **stamp, **payload})
        return out

    def write_json(self, out: Path, payload: dict) -> None:
        """Write a results file atomically (a reader never sees half of one) and note it in ``written``."""
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(out)
        if out not in self.written:
            self.written.append(out)
        print(f"wrote {out}", flush=True)


def run(name: str, argv: list[str]) -> Bench:
    """Run benchmark NAME with the command-line arguments ARGV (in this process); returns its Bench,
    whose ``written`` lists the results files it wrote."""
    module = load(name)
    ap = parser(name, module)
    smoke = "--smoke" in argv
    args = ap.parse_args([*getattr(module, "SMOKE", []), *argv] if smoke else argv)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    if args.jobs > 1 and not getattr(module, "USES_JOBS", False):
        ap.error(f"{name} trains one run at a time: --jobs is not supported")
    if args.results:
        results = Path(args.results)
    elif smoke:
        results = Path(tempfile.mkdtemp(prefix=f"vaelab-smoke-{name}-"))
    else:
        results = RESULTS
    if smoke and results.resolve() == RESULTS.resolve():
        ap.error("--smoke never writes into benchmarks/results: give another --results")
    # a smoke test's runs are kept apart from the real ones (reused by the next smoke test)
    runs = Path(args.runs) if args.runs else runs_root() / ("smoke" if smoke else "") / getattr(module, "RUNS_OF", name)
    b = Bench(name, args, shlex.join(["python", "-m", "benchmarks", name, *argv]), runs, results)
    global _smoke_runs
    before, _smoke_runs = _smoke_runs, smoke
    try:
        module.main(b)
    finally:
        _smoke_runs = before
    return b


# ---- the stamp ----------------------------------------------------------------------------------
def commit() -> str:
    """The checkout's commit (with '-dirty' when tracked files differ from it), or 'unknown'."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty else "")


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import vaelab

    out = {"python": platform.python_version(), "vaelab": vaelab.__version__}
    for pkg in ("torch", "lightning", "numpy", "scikit-learn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


# ---- training: one way, in this process ---------------------------------------------------------
def train_or_reuse(model: str, data: str, epochs: int, runs: Path, overrides: list[str] | tuple[str, ...] = (),
                   latent_dim: int | None = 16, name: str | None = None) -> Path:
    """The run directory of MODEL on DATA for EPOCHS epochs under RUNS (default networks, latent
    LATENT_DIM, and OVERRIDES, e.g. ["data.limit=1000"]), named NAME (default MODEL-DATA-eEPOCHS):
    trained now with vaelab.api.train_run, resumed when a killed run left a checkpoint, reused when
    finished. A finished run whose settings differ from the ones asked for is refused, not reused. Under
    --smoke the run's data are cut to SMOKE_DATA, unless OVERRIDES say otherwise."""
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    run = Path(runs) / (name or f"{model}-{data}-e{epochs}")
    sets = [f"data.name={data}", f"train.epochs={epochs}", "train.progress_bar=false",
            *([f"model.latent_dim={latent_dim}"] if latent_dim is not None else []), *(SMOKE_DATA if _smoke_runs else []), *overrides]
    if (run / "metrics.json").is_file():
        _check_settings(run, model, sets)
        return run
    if (run / "checkpoints" / "last.ckpt").is_file():  # a killed run: continue it, keep its epochs
        _check_settings(run, model, [s for s in sets if not s.startswith("train.epochs=")])
        cfg = RunConfig.load(run / "config.yaml").resumed_with(parse_set([f"train.epochs={epochs}"]))
        print(f"resuming {run}", flush=True)
        train_run(cfg, run, resume=True)
    else:  # vaelab starts a run stopped before its first checkpoint again, and refuses one another process trains
        print(f"training {run}: {model} {' '.join(sets)}", flush=True)
        train_run(RunConfig.build(model, parse_set(sets)), run)
    return run


def fit_or_reuse(cfg, run: Path, data=None):
    """(model, training seconds) of CFG (a vaelab.train.RunConfig) trained into RUN by vaelab.train.fit
    (no evaluation, no report: for benchmarks that time or score the model themselves, or give it their
    own DATA): fitted now, resumed from a killed run's checkpoint, or loaded when an earlier call
    finished it (RUN/bench_fit.json). A finished run of another config is refused, not reused."""
    from vaelab.train import fit, load_run

    marker = Path(run) / "bench_fit.json"
    want = json.loads(json.dumps({k: v for k, v in cfg.to_dict().items() if k != "vaelab_version"}))
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done["config"] != want:
            raise SystemExit(f"{run} was trained with another config: give another --runs")
        return load_run(run), done["seconds"]
    resume = (Path(run) / "checkpoints" / "last.ckpt").is_file()
    t0 = time.perf_counter()
    model, _ = fit(cfg, run, resume=resume, data=data)
    seconds = time.perf_counter() - t0
    marker.write_text(json.dumps({"seconds": seconds, "resumed": resume, "config": want}, indent=2) + "\n")
    return model, seconds


def _check_settings(run: Path, model: str, sets: list[str]) -> None:
    """Refuse a run whose config differs from MODEL with the settings SETS (key=value) in any of them."""
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    have = RunConfig.load(run / "config.yaml").to_dict()
    want = RunConfig.build(model, parse_set(sets)).to_dict()
    keys = [("model", "name")] + [tuple(s.split("=", 1)[0].split(".")) for s in sets
                                  if not s.startswith("train.progress_bar=")]  # how it showed progress, not what it trained
    differ = []
    for key in keys:
        a, b = have, want
        for k in key:
            a = a.get(k) if isinstance(a, dict) else None
            b = b.get(k) if isinstance(b, dict) else None
        if a != b:
            differ.append(f"{'.'.join(key)} is {a!r}, not {b!r}")
    if differ:
        raise SystemExit(f"{run} was trained with other settings ({'; '.join(differ)}): give another --runs")


def cifar10_exact() -> Path:
    """The exact-pixel CIFAR-10 subset ($VAELAB_DATA/cifar10/cifar10_exact_subset.npz: 8,068 training and
    1,017 test images whose pixels are exact, read as `--data npz`) in the first data root that has it."""
    from vaelab.data.download import data_roots

    for root in data_roots():
        if (root / "cifar10" / "cifar10_exact_subset.npz").is_file():
            return root / "cifar10" / "cifar10_exact_subset.npz"
    raise SystemExit("cifar10/cifar10_exact_subset.npz is in no data root; set VAELAB_DATA (e.g. ../shared/data)")


def data_settings(data: str) -> tuple[str, list[str]]:
    """A benchmark's data name as vaelab's (data.name, [other data settings]): a vaelab source, or
    'cifar10-exact', the npz of cifar10_exact()."""
    return ("npz", [f"data.path={cifar10_exact()}"]) if data == "cifar10-exact" else (data, [])


# ---- output -------------------------------------------------------------------------------------
def print_table(rows: list[dict], cols: list[str]) -> None:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    widths = [max([len(c), *(len(fmt(r.get(c, ""))) for r in rows)]) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(fmt(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)))


def add_command_arguments(ap: argparse.ArgumentParser, settings: bool = True) -> None:
    """The options of a benchmark that times a `vaelab` command: --in-process (run it in this process, its
    interpreter start-up and imports not timed: for smoke tests) and, with ``settings``, --set KEY=VALUE (a
    setting added to the command as --set KEY=VALUE; repeatable)."""
    ap.add_argument("--in-process", action="store_true", help="run the timed command in this process (smoke tests)")
    if settings:
        ap.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="added to the timed command as --set KEY=VALUE (repeatable)")


def add_metric_arguments(ap: argparse.ArgumentParser, nll_k: int, nll_images: int, fid_images: int | None = None,
                         few_label: bool = False) -> None:
    """The options of the evaluation metrics a benchmark measures, with its defaults: --nll-k and --nll-images
    (importance samples, test images of the NLL), --fid-images, and the few-label metric's --n-labels and
    --few-label-repeats."""
    ap.add_argument("--nll-k", type=int, default=nll_k, help=f"importance samples of the NLL (default {nll_k})")
    ap.add_argument("--nll-images", type=int, default=nll_images, help=f"test images the NLL scores (default {nll_images})")
    if fid_images is not None:
        ap.add_argument("--fid-images", type=int, default=fid_images, help=f"images per side of the FID (default {fid_images})")
    if few_label:
        ap.add_argument("--n-labels", type=int, default=2000, help="labelled images of the few-label metric (default 2000)")
        ap.add_argument("--few-label-repeats", type=int, default=3, help="draws of them (default 3)")


def set_arguments(settings: list[str]) -> list[str]:
    """["--set", KEY=VALUE, ...] of --set's settings."""
    return [v for s in settings for v in ("--set", s)]


def vaelab_command(argv: list[str], fresh: bool, env: dict | None = None) -> tuple[list[tuple[float, str]], float]:
    """Run `vaelab ARGV` in a fresh process (``fresh``: `python -m vaelab ARGV` with ENV) or in this one
    (vaelab.cli.main, its stdout and stderr caught). Returns its output lines (stdout and stderr), each
    with the seconds from the start to when it came, and the wall time; a failure stops the benchmark."""
    t0 = time.perf_counter()
    lines: list[tuple[float, str]] = []
    if fresh:
        cmd = [sys.executable, "-m", "vaelab", *argv]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert p.stdout is not None
        for line in p.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))
        rc = p.wait()
    else:
        import contextlib
        import io

        from vaelab.cli import main as vaelab_main

        class Lines(io.TextIOBase):
            buf = ""

            def write(self, s: str) -> int:
                self.buf += s
                while "\n" in self.buf:
                    line, self.buf = self.buf.split("\n", 1)
                    lines.append((time.perf_counter() - t0, line))
                return len(s)

        out = Lines()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = vaelab_main(list(argv))
    if rc != 0:
        raise SystemExit(f"vaelab {shlex.join(argv)} failed (exit {rc}):\n" + "\n".join(t for _, t in lines[-30:]))
    return lines, time.perf_counter() - t0
