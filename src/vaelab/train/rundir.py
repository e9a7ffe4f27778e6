"""The run directory: its lock, its files (config.yaml, model.safetensors, metrics, the resumable
checkpoint) and ``load_run``, the one loader of a trained model (``vaelab.load`` is it)."""
from __future__ import annotations

import csv
import fcntl
import io
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import CheckpointError, ConfigError, TrainingError, VaelabError
from ..fileio import atomic_write_json, atomic_write_text
from ..models import Autoencoder, build
from ..models.persist import describe_mismatch, save_weights
from ..runfiles import check_links, open_lock
from .config import RunConfig

log = logging.getLogger("vaelab")


CHECKPOINT = "checkpoints/last.ckpt"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One process per run directory: a second one is refused instead of interleaving."""
    run_dir.mkdir(parents=True, exist_ok=True)
    check_links(run_dir)  # a symlinked .lock, logs/, figures/... would lead the run's writes out of it
    fd = open_lock(run_dir / ".lock")  # O_NOFOLLOW, never truncated
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TrainingError(f"{run_dir} is in use by another vaelab process; wait for it or choose another --out") from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# Lightning's CSV logger deletes logs/metrics.csv when it starts, so a resumed run keeps the earlier
# rows aside (metrics.part<i>.csv) and merges them back when it finishes.
def _stash_metrics(run_dir: Path) -> None:
    cur = run_dir / "logs" / "metrics.csv"
    if cur.is_file():
        i = 0
        while cur.with_name(f"metrics.part{i}.csv").exists():
            i += 1
        os.replace(cur, cur.with_name(f"metrics.part{i}.csv"))


def read_metrics_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a Lightning metrics.csv. It is an append-only log, so a killed writer
    can leave a torn last line: rows with missing fields, no integer step, or values that are not
    numbers are dropped."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    good = []
    for r in rows:
        if None in r or None in r.values() or not str(r.get("step", "")).isdigit():
            continue
        try:
            [float(v) for v in r.values() if v != ""]
        except ValueError:
            continue
        good.append(r)
    return good


def merge_metrics(run_dir: Path) -> None:
    """One logs/metrics.csv from the segments of a run resumed any number of times: from each
    segment the rows before the step the next one resumed at (later steps were done again)."""
    logs = run_dir / "logs"
    parts = sorted(logs.glob("metrics.part*.csv"), key=lambda p: int(p.stem[len("metrics.part"):] or 0))
    if not parts:
        return
    segments = [read_metrics_rows(p) for p in parts] + [read_metrics_rows(logs / "metrics.csv")]
    rows: list[dict[str, str]] = []
    for i, seg in enumerate(segments):
        later = [int(r["step"]) for s in segments[i + 1 :] for r in s]
        cut = min(later) if later else None
        rows += [r for r in seg if cut is None or int(r["step"]) < cut]
    fields = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(logs / "metrics.csv", buf.getvalue())
    for p in parts:
        p.unlink()


def epochs_done(run_dir: str | Path) -> int | None:
    """How many whole epochs the run's resumable checkpoint has trained, or None without one."""
    ckpt = Path(run_dir) / CHECKPOINT
    if not ckpt.is_file():
        return None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        return int(state["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"])
    except Exception as e:  # noqa: BLE001 - any damage: say so with the fix
        raise CheckpointError(f"{ckpt} is not a readable training checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}); it is truncated or damaged. "
                              "Train a new run, or restore the file") from None


# vaelab's own mark on a directory it trains a run in: only a directory that carries it counts as a
# run stopped before its first checkpoint (any config.yaml of the user's does not)
MARKER = ".vaelab-run"


def mark_run(run_dir: Path) -> None:
    """Mark ``run_dir`` as a vaelab run (written once, atomically, before its config)."""
    from ..runfiles import inside

    path = inside(run_dir, MARKER)
    if not path.is_file():
        from .._version import __version__

        atomic_write_text(path, f"vaelab run directory (vaelab {__version__})\n")


def is_marked(run_dir: Path) -> bool:
    path = Path(run_dir) / MARKER
    return path.is_file() and not path.is_symlink()


# written last when a run finishes: which checkpoint its weights, metrics.json and report belong to
FINISHED = "finished.json"


def checkpoint_stamp(run_dir: str | Path) -> dict[str, int] | None:
    """Which state the resumable checkpoint holds (whole epochs and optimisation steps), or None
    without one."""
    ckpt = Path(run_dir) / CHECKPOINT
    if not ckpt.is_file():
        return None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        return {"epochs": int(state["loops"]["fit_loop"]["epoch_progress"]["total"]["processed"]),
                "global_step": int(state["global_step"])}
    except Exception as e:  # noqa: BLE001 - any damage: say so with the fix
        raise CheckpointError(f"{ckpt} is not a readable training checkpoint ({type(e).__name__}); it is truncated "
                              "or damaged. Train a new run, or restore the file") from None


def mark_finished(run_dir: Path) -> None:
    """Record that the weights, metrics.json and report of the run's last checkpoint are all
    written; called after the last of them."""
    import json

    stamp = checkpoint_stamp(run_dir)
    if stamp is not None:
        atomic_write_text(Path(run_dir) / FINISHED, json.dumps(stamp, sort_keys=True) + "\n")


def is_finished(run_dir: Path) -> bool:
    """Are the weights, metrics.json and report of the run's last checkpoint all written?"""
    import json

    from ..runfiles import read_text

    path = Path(run_dir) / FINISHED
    if not path.is_file() or not (Path(run_dir) / "report.html").is_file():
        return False
    try:
        return json.loads(read_text(path, 4096)) == checkpoint_stamp(run_dir)
    except (ValueError, CheckpointError):
        return False


def check_new_run_dir(run_dir: Path) -> bool:
    """May a new run be trained into ``run_dir``? Yes if it does not exist or is empty, or if it
    holds a run stopped before its first checkpoint, which only a directory with vaelab's marker
    (``MARKER``) can be (nothing trained to lose: returns True, the caller says it takes the
    directory over). A run with a checkpoint or weights, a file, or a
    non-empty directory that is not a vaelab run (the user's own files) is refused."""
    if run_dir.is_symlink() and not run_dir.exists():
        raise ConfigError(f"--out {run_dir} is a symlink to {os.readlink(run_dir)}, which does not exist; give a "
                          "directory for the run (a new one is created)")
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is an existing file, not a directory; choose a directory for the run")
    entries = [p.name for p in run_dir.iterdir() if p.name != ".lock"]
    if not entries:
        return False
    if (run_dir / "config.yaml").is_file() and ((run_dir / CHECKPOINT).exists() or (run_dir / "model.safetensors").exists()):
        raise TrainingError(f"{run_dir} already holds a run; resume it with `vaelab train --resume {run_dir}`, "
                            "or choose another --out")
    if is_marked(run_dir):
        return True
    shown = ", ".join(sorted(entries)[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise TrainingError(f"{run_dir} is not empty and is not a vaelab run (it holds {shown}); a run writes config.yaml, "
                        "report.html, metrics.json and figures/ there and would overwrite your files. Choose a new or "
                        "empty directory for --out")


def load_run(run_dir: str | Path, encoder: torch.nn.Module | None = None,
                   decoder: torch.nn.Module | None = None, finished_only: bool = True) -> Autoencoder:
    """The trained model of a run directory (config.yaml + model.safetensors) in eval mode; refuses
    weights of another model or shape. ``vaelab.load`` is this function; a run trained with
    networks of your own needs the same (untrained) ``encoder`` and ``decoder`` again.
    ``finished_only``: refuse weights that record an earlier checkpoint than the run's resumable
    one (a run stopped after its last checkpoint, before it wrote its weights again)."""
    from ..models.persist import load_weights

    run_dir = Path(run_dir)
    check_links(run_dir)
    cfg = RunConfig.load(run_dir / "config.yaml")
    weights = run_dir / "model.safetensors"
    if finished_only and weights.is_file() and (run_dir / CHECKPOINT).is_file():
        from ..models.persist import read_metadata

        try:
            recorded = read_metadata(weights).get("checkpoint")
        except CheckpointError:
            recorded = None  # a damaged weights file: load_weights below says so, naming the checkpoint
        if recorded is not None and _json_or_none(recorded) != checkpoint_stamp(run_dir):
            raise CheckpointError(f"{weights} holds the weights of an earlier checkpoint than {run_dir / CHECKPOINT} (the "
                                  "run stopped before it wrote them again): `vaelab train --resume "
                                  f"{run_dir}` writes them, the metrics and the report from the checkpoint")
    if not weights.is_file():
        if (run_dir / CHECKPOINT).is_file():
            raise CheckpointError(f"{run_dir} has no model.safetensors, but {run_dir / CHECKPOINT} holds the weights: "
                                  f"`vaelab train --resume {run_dir}` writes model.safetensors again from it")
        raise CheckpointError(f"{run_dir} has no model.safetensors yet (training never finished an epoch)")
    try:
        return load_weights(build(cfg.model, encoder=encoder, decoder=decoder), weights).eval()
    except CheckpointError as e:
        if (run_dir / CHECKPOINT).is_file() and ("corrupt" in str(e) or "not a readable" in str(e)):
            raise CheckpointError(f"{e}. {run_dir / CHECKPOINT} still holds the weights: "
                                  f"`vaelab train --resume {run_dir}` writes model.safetensors again from it") from None
        raise


def _json_or_none(text: str) -> object:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return None


def restore_weights(run_dir: str | Path, cfg: RunConfig, encoder: torch.nn.Module | None = None,
                    decoder: torch.nn.Module | None = None) -> Autoencoder:
    """The model of the run's resumable checkpoint, written again as model.safetensors (for a
    finished run whose weights file was lost or damaged)."""
    run_dir = Path(run_dir)
    model = build(cfg.model, encoder=encoder, decoder=decoder)
    state = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=True)
    sd = {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
    problem = describe_mismatch(model.state_dict(), sd)
    if problem:
        raise CheckpointError(f"{run_dir / CHECKPOINT} does not fit the run's config ({problem})")
    model.load_state_dict(sd)
    save_weights(model, run_dir / "model.safetensors", checkpoint_stamp(run_dir))
    return model.eval()


def read_run_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's metrics.json as a dict; {} when it is missing, unreadable, a symlink or not an object."""
    import json

    from ..runfiles import inside, read_text

    try:
        m = json.loads(read_text(inside(run_dir, "metrics.json")))
    except (OSError, ValueError, VaelabError):
        return {}
    return m if isinstance(m, dict) else {}


def update_run_metrics(run_dir: Path, new: dict[str, Any], under: str | None = None) -> dict[str, Any]:
    """Merge ``new`` into the run's metrics.json (into ``metrics[under][...]`` when given), written
    atomically; returns the whole merged dict."""
    m = read_run_metrics(run_dir)
    if under is None:
        m.update(new)
    else:
        m[under] = {**(m[under] if isinstance(m.get(under), dict) else {}), **new}
    atomic_write_json(Path(run_dir) / "metrics.json", m)
    return m


def earlier_segments(run_dir: Path) -> list[float]:
    """The training times of the sessions of ``run_dir`` that finished before this resume (from its
    metrics.json; a session killed before it wrote metrics is not counted)."""
    m = read_run_metrics(run_dir)
    seg = m.get("train_seconds_segments")
    if isinstance(seg, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in seg):
        return [float(v) for v in seg]
    t = m.get("train_seconds")  # a run written before segments were kept
    return [float(t)] if isinstance(t, (int, float)) and not isinstance(t, bool) and t >= 0 else []


def invocation() -> str:
    """The command line of this process as a user would retype it: ``vaelab ...`` for the CLI
    (also when started as ``python -m vaelab``), else the Python program and its arguments."""
    import shlex
    import sys

    prog = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    if prog.name == "vaelab" or (prog.name == "__main__.py" and prog.parent.name == "vaelab"):
        return shlex.join(["vaelab", *sys.argv[1:]])
    return "python " + shlex.join(sys.argv) + "  (vaelab.api.train_run)"


def record_command(run_dir: Path) -> None:
    """Append this process's command line to RUN_DIR/command.txt (one line per training session:
    the first run, then each resume), written atomically."""
    from ..runfiles import inside, read_text

    path = inside(run_dir, "command.txt")  # a symlink is refused, never read into the report
    lines = read_text(path).splitlines() if path.is_file() else []
    atomic_write_text(path, "\n".join([*lines, invocation()]) + "\n")


