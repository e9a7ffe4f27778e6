"""What vaelab guarantees when things go wrong: a killed run resumes exactly, writes are atomic,
loading never unpickles and refuses what does not fit, gradients are clipped, one process per
run directory, downloads are verified and retried."""
from __future__ import annotations

import ast
import csv
import errno
import hashlib
import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaelab
from vaelab.config import parse_set
from vaelab.data import DataConfig, ImageSet, load_data
from vaelab.data.download import RemoteFile, download
from vaelab.errors import CheckpointError, ConfigError, DataError, TrainingError
from vaelab.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from vaelab.models import build, make_config
from vaelab.models.persist import save_weights
from vaelab.train import CHECKPOINT, LitAutoencoder, RunConfig, TrainConfig, fit
from vaelab.train.rundir import run_lock

from tests.conftest import vaelab_here

SRC = Path(vaelab.__file__).parent
SMALL = ["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[32]", "model.latent_dim=2",
         "train.batch_size=64", "train.progress_bar=false"]


def small_cfg(*extra: str) -> RunConfig:
    return RunConfig.build("vae", parse_set([*SMALL, "train.epochs=1", *extra]))


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(name="digits"))


# ---- 1. killed mid-epoch with SIGKILL, resumed from the CLI: identical to an uninterrupted run ----
CLI_ARGS = ["train", "vae", "--data", "digits", "--epochs", "3", "--batch-size", "64", "--latent-dim", "2", "--seed", "5",
            "--set", "model.arch=mlp", "--set", "model.mlp_hidden=[32]", "--set", "train.progress_bar=false",
            "--set", "train.checkpoint_every_n_steps=4", "--set", "train.schedule=onecycle", "--set", "train.kl_warmup_steps=30"]
STEPS_PER_EPOCH = 21  # 1,294 digits / 64
STALL_AT = 30  # epoch 1, batch 9: the last checkpoint is at step 28 (epoch 1, after 7 of 21 batches)

# the child trains through the real CLI; at step 30 it announces itself and stalls, as a machine
# would when its power is about to go, so the test can kill it at a known point mid-epoch
STALLING_CHILD = f"""
import sys, time
from pathlib import Path
from vaelab.train.lit import LitAutoencoder
marker = Path(sys.argv[1])
step = LitAutoencoder.training_step
def stalling(self, batch, i):
    if self.global_step == {STALL_AT}:
        marker.write_text(str(self.global_step))
        time.sleep(600)
    return step(self, batch, i)
LitAutoencoder.training_step = stalling
from vaelab.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the same arithmetic in every process


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=open(log, "w"), stderr=subprocess.STDOUT, env=_env())


def _metric_rows(run: Path) -> list[tuple[str, ...]]:
    rows = list(csv.DictReader(open(run / "logs" / "metrics.csv", newline="")))
    return [(r["step"], r.get("train/loss", ""), r.get("val/loss", ""), r.get("train/lr", "")) for r in rows]


def test_sigkill_mid_epoch_then_cli_resume_equals_uninterrupted_run(tmp_path, one_thread):
    """The run that is killed is a real process; the uninterrupted reference (trained meanwhile), the
    refused second command and the resume run through the CLI's main() in this process, a process of
    its own towards the child's lock, with one thread as the child has."""
    run, ref, marker = tmp_path / "run", tmp_path / "ref", tmp_path / "stalled"
    child = _spawn(["-c", STALLING_CHILD, str(marker), *CLI_ARGS, "--out", str(run)], tmp_path / "child.log")
    reference = vaelab_here(*CLI_ARGS, "--out", str(ref))  # meanwhile, uninterrupted
    assert reference.returncode == 0, reference.stderr
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert child.poll() is None, f"the child ended early:\n{(tmp_path / 'child.log').read_text()}"
            assert time.monotonic() < deadline, "the child never reached the step where it stalls"
            time.sleep(0.1)
        ckpt = torch.load(run / CHECKPOINT, weights_only=True)  # plain data only
        assert ckpt["global_step"] == 28 and ckpt["epoch"] == 1
        assert ckpt["global_step"] % STEPS_PER_EPOCH  # written mid-epoch ...
        assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 1, "batches_done": 7}]  # ... and it says where

        # while the stalled process holds the run directory, a second one is refused and changes nothing
        before = {p: p.read_bytes() for p in (run / "config.yaml", run / CHECKPOINT)}
        second = vaelab_here("train", "--resume", str(run))
        assert second.returncode == 2 and "in use by another vaelab process" in second.stderr
        assert "Traceback" not in second.stderr
        assert all(p.read_bytes() == b for p, b in before.items())
    finally:
        child.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel releases its lock
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    resumed = vaelab_here("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr

    w_run, w_ref = load_file(str(run / "model.safetensors")), load_file(str(ref / "model.safetensors"))
    assert w_run.keys() == w_ref.keys()
    assert all(torch.equal(w_run[k], w_ref[k]) for k in w_ref), "resumed weights differ from the uninterrupted run"
    c_run, c_ref = (torch.load(r / CHECKPOINT, weights_only=True) for r in (run, ref))
    assert c_run["global_step"] == c_ref["global_step"] == 3 * STEPS_PER_EPOCH
    for s_run, s_ref in zip(c_run["optimizer_states"][0]["state"].values(), c_ref["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(s_run[k], s_ref[k]) for k in s_ref)  # Adam's moments too
    assert c_run["lr_schedulers"] == c_ref["lr_schedulers"]
    # the log survives the resume: every step once, the same losses and learning rates as uninterrupted
    assert _metric_rows(run) == _metric_rows(ref)
    assert [int(s) for s, loss, _, _ in _metric_rows(run) if loss] == list(range(3 * STEPS_PER_EPOCH))


def test_mid_epoch_checkpoint_option_is_validated_and_spares_the_last_batch(tmp_path, digits):
    with pytest.raises(ConfigError, match="checkpoint_every_n_steps must be >= 1"):
        TrainConfig(checkpoint_every_n_steps=0)
    assert TrainConfig().checkpoint_every_n_steps == 200 and TrainConfig(checkpoint_every_n_steps=None).checkpoint_every_n_steps is None
    saved = []
    from vaelab.train.run import AtomicCheckpoint

    orig = AtomicCheckpoint._save_checkpoint
    # with steps every 7 and 21 steps per epoch: mid-epoch at 7 and 14; 21 is the epoch end's own checkpoint
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AtomicCheckpoint, "_save_checkpoint", lambda self, tr: (saved.append(tr.global_step), orig(self, tr)))
        fit(small_cfg("train.checkpoint_every_n_steps=7"), tmp_path / "r", data=digits)
    assert saved == [7, 14, 21]


# ---- 2. atomic writes ------------------------------------------------------------------------
_WATCH: dict[str, list] = {}


def _audit(event: str, args: tuple) -> None:
    if "events" not in _WATCH:
        return
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writes:
            _WATCH["events"].append(("write", os.path.abspath(os.fsdecode(path))))
    elif event == "os.rename":
        _WATCH["events"].append(("rename", os.path.abspath(os.fsdecode(args[1]))))


def test_every_file_of_a_run_directory_arrives_by_atomic_rename(tmp_path, digits):
    """Audit every open-for-writing and rename (sys.addaudithook) during a whole run: outside the
    append-only logs/ and the .lock, nothing is ever written under its final name."""
    from vaelab.api import train_run

    if "hook" not in _WATCH:
        sys.addaudithook(_audit)  # cannot be removed; inert unless _WATCH["events"] exists
        _WATCH["hook"] = []
    run = tmp_path / "run"
    _WATCH["events"] = []
    try:
        train_run(small_cfg("train.checkpoint_every_n_steps=5"), run, data=digits)
    finally:
        events = _WATCH.pop("events")
    exempt = lambda p: p.parts[0] == "logs" or p.name == ".lock"  # noqa: E731
    written = {Path(p).relative_to(run) for kind, p in events if kind == "write" and p.startswith(str(run))}
    renamed = {Path(p).relative_to(run) for kind, p in events if kind == "rename" and p.startswith(str(run))}
    direct = sorted(str(p) for p in written if not exempt(p) and not (p.name.startswith(".") and p.name.endswith(".tmp")))
    assert not direct, f"written in place, not via a temporary file: {direct}"
    final = {p.relative_to(run) for p in run.rglob("*") if p.is_file()}
    assert {"config.yaml", "model.safetensors", "metrics.json", "report.html", CHECKPOINT} <= {str(p) for p in final}
    assert not [p for p in final if p.name.endswith(".tmp")], "a temporary file was left behind"
    not_renamed = sorted(str(p) for p in final if not exempt(p) and p not in renamed)
    assert not not_renamed, f"files that did not arrive by os.replace: {not_renamed}"


def _leftovers(d: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name not in keep)


@pytest.mark.parametrize("writer", ["bytes", "text", "json", "config", "weights"])
def test_interrupted_write_keeps_the_previous_version(tmp_path, monkeypatch, writer):
    target = tmp_path / "file"
    model = build(make_config("vae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), (1, 4, 4))
    write = {
        "bytes": lambda: atomic_write_bytes(target, os.urandom(4096)),
        "text": lambda: atomic_write_text(target, "new " * 1000),
        "json": lambda: atomic_write_json(target, {"new": list(range(500))}),
        "config": lambda: small_cfg("seed=9").save(target),
        "weights": lambda: save_weights(model, target),
    }[writer]
    write()
    before = target.read_bytes()
    real_write_bytes = Path.write_bytes

    def torn(self, data):  # half of the bytes get out, then the disk is full
        real_write_bytes(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    monkeypatch.setattr(Path, "write_bytes", torn)
    import vaelab.models.persist as persist

    def torn_safetensors(state, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\x00" * 100)  # part of a header, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device (simulated)")

    monkeypatch.setattr(persist, "save_file", torn_safetensors)
    with pytest.raises(OSError, match="No space left"):
        write()
    assert target.read_bytes() == before
    assert _leftovers(tmp_path, {"file"}) == []


def test_interrupted_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, digits):
    import lightning.pytorch as pl

    real = pl.Trainer.save_checkpoint
    calls = {"n": 0}

    def dies_on_second(self, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(path).write_bytes(b"PK\x03\x04 torn")
            raise OSError(errno.EIO, "I/O error (simulated)")
        return real(self, path, *a, **k)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", dies_on_second)
    with pytest.raises(OSError, match="simulated"):
        fit(small_cfg("train.epochs=2"), tmp_path / "r", data=digits)
    ckpt = torch.load(tmp_path / "r" / CHECKPOINT, weights_only=True)  # the first one, whole
    assert ckpt["epoch"] == 0 and ckpt["global_step"] == STEPS_PER_EPOCH
    assert _leftovers(tmp_path / "r" / "checkpoints", {"last.ckpt"}) == []


def test_torn_metrics_log_does_not_break_the_report(tmp_path):
    from vaelab.report.figures import loss_curves, read_metrics_csv

    png = b"\x89PNG\r\n\x1a\n"
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,train/loss,train/rec\n0,0,5.0,4.0\n0,1,4.0,3.5\n0,2,3.")  # killed mid-row
    assert [(r["train/loss"], r["train/rec"]) for r in read_metrics_csv(log)] == [("5.0", "4.0"), ("4.0", "3.5")]
    assert loss_curves(log, tmp_path / "c.png") == tmp_path / "c.png" and (tmp_path / "c.png").read_bytes()[:8] == png
    log.write_text("epoch,step,train/loss\n0,0,5.0\n0,1,4.0e")
    assert [r["train/loss"] for r in read_metrics_csv(log)] == ["5.0"]  # "4.0e" is a torn number, not 4.0
    assert loss_curves(log, tmp_path / "d.png") == tmp_path / "d.png" and (tmp_path / "d.png").read_bytes()[:8] == png


# ---- 3. safe loading: nothing unpickled, other models / versions / shapes refused -------------
def _run_dir(tmp_path: Path, name: str = "run", model: str = "vae", latent: int = 2, version: str | None = None) -> Path:
    d = tmp_path / name
    cfg = RunConfig.build(model, parse_set([*SMALL, f"model.latent_dim={latent}"]))
    m = build(cfg.model, (1, 8, 8))
    cfg.save(d / "config.yaml")
    save_weights(m, d / "model.safetensors")
    if version is not None:
        text = (d / "config.yaml").read_text().replace(f"vaelab_version: {vaelab.__version__}", f"vaelab_version: {version}")
        (d / "config.yaml").write_text(text)
    return d


def test_run_dir_of_another_model_or_shape_is_refused(tmp_path):
    assert vaelab.load(_run_dir(tmp_path)).config.latent_dim == 2
    other = _run_dir(tmp_path, "other")
    (other / "model.safetensors").write_bytes((_run_dir(tmp_path, "ae", model="ae").joinpath("model.safetensors")).read_bytes())
    with pytest.raises(CheckpointError, match="'ae' model, not 'vae'"):
        vaelab.load(other)
    wide = _run_dir(tmp_path, "wide")
    (wide / "model.safetensors").write_bytes((_run_dir(tmp_path, "l3", latent=3) / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match=r"shape mismatch .*mu.weight: file \(3, 32\) vs model \(2, 32\)"):
        vaelab.load(wide)


def test_run_dir_of_another_vaelab_version(tmp_path):
    major, minor = (int(x) for x in vaelab.__version__.split(".")[:2])
    with pytest.raises(CheckpointError, match=rf"written by vaelab {major + 1}\.0\.0.*another major version"):
        vaelab.load(_run_dir(tmp_path, "major", version=f"{major + 1}.0.0"))
    with pytest.warns(UserWarning, match="another minor version"):
        model = vaelab.load(_run_dir(tmp_path, "minor", version=f"{major}.{minor + 1}.0"))
    assert model.config.latent_dim == 2
    with pytest.raises(CheckpointError, match="not a version number"):
        vaelab.load(_run_dir(tmp_path, "junk", version="banana"))
    # the weights file carries its own version: refused the same way
    d = _run_dir(tmp_path, "weights")
    with pytest.MonkeyPatch.context() as mp:
        import vaelab.models.persist as persist

        mp.setattr(persist, "__version__", f"{major + 1}.0.0")
        save_weights(build(RunConfig.load(d / "config.yaml").model), d / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors was written by vaelab .*another major version"):
        vaelab.load(d)


class _Evil:
    """Unpickling this would create a file: a stand-in for arbitrary code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_resume_refuses_pickles_damage_and_another_config(tmp_path, digits):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "payload": _Evil(marker)}, run / CHECKPOINT)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        fit(small_cfg(), run, resume=True, data=digits)
    assert not marker.exists()
    (run / CHECKPOINT).write_bytes(b"PK\x03\x04" + b"\0" * 50)
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        fit(small_cfg(), run, resume=True, data=digits)
    wider = LitAutoencoder(build(small_cfg("model.latent_dim=3").model, (1, 8, 8)), TrainConfig(), 1)
    torch.save({"state_dict": wider.state_dict(), "vaelab": {"model": "vae", "vaelab_version": vaelab.__version__}}, run / CHECKPOINT)
    with pytest.raises(CheckpointError, match=r"shape mismatch .*model.mu.weight"):
        fit(small_cfg(), run, resume=True, data=digits)
    torch.save({"state_dict": wider.state_dict(), "vaelab": {"model": "ae"}}, run / CHECKPOINT)
    with pytest.raises(CheckpointError, match="checkpoint of a 'ae' model"):
        fit(small_cfg(), run, resume=True, data=digits)
    assert not (run / "config.yaml").exists()  # a refused resume writes nothing


def test_config_yaml_never_builds_python_objects(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "config.yaml").write_text(f"!!python/object/apply:pathlib.Path.touch [{str(marker)!r}]\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.load(tmp_path / "config.yaml")
    assert not marker.exists()


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield owner, name, {k.arg: k.value for k in node.keywords}, node


def test_source_never_loads_with_pickle():
    """A static audit of src/vaelab: every loader call is the safe variant."""
    bad = []
    for path in SRC.rglob("*.py"):
        for owner, name, kw, node in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(SRC)}:{node.lineno}"
            if owner == "torch" and name == "load":
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    bad.append(f"{where} torch.load without weights_only=True")
            elif owner == "np" and name == "load":
                if not (isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False):
                    bad.append(f"{where} np.load without allow_pickle=False")
            elif owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all", "unsafe_load_all"):
                bad.append(f"{where} yaml.{name}")
            elif owner in ("pickle", "dill", "cloudpickle", "joblib") and name in ("load", "loads"):
                bad.append(f"{where} {owner}.{name}")
            elif name in ("fit", "load_from_checkpoint") and "ckpt_path" in kw and "weights_only" not in kw:
                bad.append(f"{where} Lightning restore without weights_only")
    assert not bad, bad


# ---- 4. bad data reaching training ----------------------------------------------------------
def test_fit_refuses_empty_training_set_and_mismatched_splits(tmp_path, digits):
    train, val, test = digits
    empty = ImageSet(train.images[:0], None, "empty")
    with pytest.raises(DataError, match="no training images"):
        fit(small_cfg(), tmp_path / "a", data=(empty, val, test))
    big = ImageSet(torch.zeros(4, 1, 9, 9, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"different image shapes .*data.size"):
        fit(small_cfg(), tmp_path / "b", data=(train, val, big))


# ---- 5. gradient clipping is configured and effective ----------------------------------------
@pytest.mark.parametrize("clip", [None, 0.5])
def test_grad_clip_bounds_the_gradient_norm(tmp_path, monkeypatch, digits, clip):
    seen = []
    orig = LitAutoencoder.configure_gradient_clipping

    def norm(lit):
        return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in lit.parameters() if p.grad is not None])).item()

    def spy(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        before = norm(self)
        orig(self, optimizer, gradient_clip_val, gradient_clip_algorithm)
        seen.append((gradient_clip_val, before, norm(self)))

    monkeypatch.setattr(LitAutoencoder, "configure_gradient_clipping", spy)
    fit(small_cfg(*([f"train.grad_clip={clip}"] if clip else [])), tmp_path / "r", data=digits)
    assert len(seen) == STEPS_PER_EPOCH and all(v == clip for v, _, _ in seen)  # Lightning got the config's value
    if clip is None:
        assert all(after == before for _, before, after in seen)
    else:
        assert min(before for _, before, _ in seen) > 2 * clip  # clipping had work to do at every step
        for _, before, after in seen:
            assert after <= clip * (1 + 1e-5)
            assert after == pytest.approx(min(before, clip), rel=1e-4)


# ---- 7. downloads: verified, retried, never used partially ----------------------------------
def _remote(payload: bytes, *urls: str) -> RemoteFile:
    return RemoteFile("data.bin", urls, hashlib.sha256(payload).hexdigest(), len(payload))


def test_download_falls_back_to_a_good_mirror(tmp_path):
    payload = os.urandom(20000)
    (tmp_path / "good.bin").write_bytes(payload)
    (tmp_path / "partial.bin").write_bytes(payload[:7000])  # a mirror serving a cut-off file
    (tmp_path / "wrong.bin").write_bytes(os.urandom(20000))  # and one serving other bytes
    r = _remote(payload, (tmp_path / "missing.bin").as_uri(), (tmp_path / "partial.bin").as_uri(),
                (tmp_path / "wrong.bin").as_uri(), (tmp_path / "good.bin").as_uri())
    dest = tmp_path / "dest"
    assert download(r, dest, retries=1).read_bytes() == payload
    assert sorted(p.name for p in dest.iterdir()) == ["data.bin"]


def test_download_retries_after_a_transient_failure(tmp_path, monkeypatch):
    import vaelab.data.download as dl

    payload = os.urandom(5000)
    (tmp_path / "src.bin").write_bytes(payload)
    real = urllib.request.urlopen
    failures = [urllib.error.URLError("temporary failure in name resolution"), "incomplete"]

    class DiesMidway:  # a response that breaks off after its first block
        def __init__(self, resp):
            self.resp = resp

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.resp.close()

        def read(self, n):
            raise http.client.IncompleteRead(self.resp.read(100), 4900)

    def flaky(url, timeout=None):
        if failures:
            f = failures.pop(0)
            if f == "incomplete":
                return DiesMidway(real(url, timeout=timeout))
            raise f
        return real(url, timeout=timeout)

    monkeypatch.setattr(dl.urllib.request, "urlopen", flaky)
    sleeps = []
    monkeypatch.setattr(dl.time, "sleep", sleeps.append)
    r = _remote(payload, (tmp_path / "src.bin").as_uri())
    assert download(r, tmp_path / "dest", retries=3, backoff=0.5).read_bytes() == payload
    assert sleeps == [0.5, 1.0] and not failures  # two failed rounds, each followed by a longer wait
    failures[:] = [urllib.error.URLError("down"), urllib.error.URLError("still down")]
    with pytest.raises(DataError, match=r"(?s)could not download.*down.*still down.*place the file"):
        download(RemoteFile("other.bin", r.urls, r.sha256, r.size), tmp_path / "dest", retries=2, backoff=0)
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["data.bin"]  # no partial file


# ---- 6. concurrent use (a second real process; see also the SIGKILL test) --------------------
def test_second_process_on_a_locked_run_dir_is_refused(tmp_path):
    run = tmp_path / "run"
    small_cfg().save(run / "config.yaml")
    (run / "checkpoints").mkdir()
    (run / CHECKPOINT).write_bytes(b"not yet read: the lock comes first")
    with run_lock(run):  # this process holds the run
        p = subprocess.run([sys.executable, "-m", "vaelab", "train", "--resume", str(run)],
                           capture_output=True, text=True, timeout=300, env=_env())
    assert p.returncode == 2 and "in use by another vaelab process" in p.stderr and "Traceback" not in p.stderr
    with run_lock(run):  # released by the holder, available again
        pass
    with pytest.raises(TrainingError, match="in use"):
        with run_lock(run), run_lock(run):  # a second open file description in one process is refused too
            pass
