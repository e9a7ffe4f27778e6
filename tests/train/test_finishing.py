"""A run is finished only when the weights, metrics.json and report of its last checkpoint are
all written: a kill before any of these writes is followed by a resume that finishes the run as an
uninterrupted one; a full disk is a one-line error and leaves the run resumable; a command that
writes a named file replaces none without --force."""
from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaelab
from vaelab.errors import CheckpointError

QUICK = ["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=2",
         "train.progress_bar=false", "train.loggers=csv", "train.checkpoint_every_n_steps=null"]


class Killed(BaseException):
    """What a SIGKILL at this point leaves: the write never happens, and nothing handles it."""


def _cfg(epochs: int):
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    return RunConfig.build("vae", parse_set([*QUICK, f"train.epochs={epochs}"]))


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    from vaelab.api import train_run

    run, _ = train_run(_cfg(1), tmp_path_factory.mktemp("base") / "run")
    return run


@pytest.fixture(scope="module")
def reference(one_epoch, tmp_path_factory):
    """The run resumed to two epochs without interruption."""
    from vaelab.api import train_run

    run = tmp_path_factory.mktemp("ref") / "run"
    shutil.copytree(one_epoch, run)
    _, metrics = train_run(_cfg(2), run, resume=True)
    return run, metrics


def _same_run(run: Path, ref: Path, ref_metrics: dict) -> None:
    from vaelab.train.rundir import is_finished

    a, b = load_file(run / "model.safetensors"), load_file(ref / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = json.loads((run / "metrics.json").read_text())
    # the wall clock differs, and a session killed before it wrote metrics.json leaves no time to add
    strip = lambda m: {k: v for k, v in m.items() if k not in ("train_seconds", "train_seconds_segments")}  # noqa: E731
    assert strip(metrics) == strip(ref_metrics)
    assert (run / "report.html").is_file() and is_finished(run)
    assert f"{metrics['nelbo']:.2f}" in (run / "report.html").read_text()


@pytest.mark.parametrize("point", ["weights", "metrics", "report", "finished mark"])
def test_a_kill_before_each_finishing_write_is_finished_by_resume(point, one_epoch, reference, tmp_path, monkeypatch,
                                                                   caplog):
    import vaelab.api.train as api_train
    import vaelab.report.run as report_run
    import vaelab.train.run as train_run_mod
    from vaelab.api import evaluate_run, train_run

    target = {"weights": (train_run_mod, "save_weights"), "metrics": (report_run, "atomic_write_json"),
              "report": (report_run, "write_report"), "finished mark": (api_train, "mark_finished")}[point]

    def killed(*a, **k):
        raise Killed(point)

    run = tmp_path / "run"
    shutil.copytree(one_epoch, run)
    with monkeypatch.context() as m:
        m.setattr(*target, killed)
        with pytest.raises(Killed):
            train_run(_cfg(2), run, resume=True)
    if point == "weights":  # model.safetensors still holds epoch 1: nothing loads it as the finished run
        with pytest.raises(CheckpointError, match="earlier checkpoint.*--resume"):
            vaelab.load(run)
        with pytest.raises(CheckpointError, match="earlier checkpoint"):
            evaluate_run(run)
    caplog.set_level("INFO", logger="vaelab")
    _, metrics = train_run(_cfg(2), run, resume=True)
    assert "were not all written" in caplog.text
    ref, ref_metrics = reference
    _same_run(run, ref, {k: v for k, v in ref_metrics.items()})
    caplog.clear()
    train_run(_cfg(2), run, resume=True)  # now finished: nothing changes
    assert "nothing changed" in caplog.text


def test_a_full_disk_is_one_line_and_the_run_resumes(one_epoch, reference, tmp_path, monkeypatch, capsys):
    """ENOSPC while writing the weights (through a patched safetensors writer) and while writing
    the checkpoint: one line naming the file and the free space, exit 2, and `--resume` then
    finishes the run as an uninterrupted one."""
    import lightning.pytorch as pl

    import vaelab.models.persist as persist
    from vaelab.cli import main

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    ref, ref_metrics = reference
    for where, (owner, name) in (("model.safetensors", (persist, "save_file")),
                                 ("last.ckpt", (pl.Trainer, "save_checkpoint"))):
        run = tmp_path / where
        shutil.copytree(one_epoch, run)
        with monkeypatch.context() as m:
            m.setattr(owner, name, full)
            assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) >= 1 and err[-1].startswith("vaelab: error: cannot write"), err
        assert where in err[-1] and "disk is full" in err[-1] and "bytes free" in err[-1] and "Traceback" not in err[-1]
        assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
        _same_run(run, ref, ref_metrics)


def test_commands_that_write_a_named_file_replace_none_without_force(one_epoch, tmp_path, capsys):
    from vaelab.cli import main

    out = tmp_path / "mine.png"
    out.write_bytes(b"my own picture")
    for argv in (["sample", str(one_epoch), "-n", "4", "--out", str(out)],
                 ["reconstruct", str(one_epoch), "-n", "4", "--out", str(out)],
                 ["data", "build-ood-study", "--out", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "already exists" in err and "--force" in err and "Traceback" not in err
        assert out.read_bytes() == b"my own picture"
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "nowhere" / "x.png")
    assert main(["sample", str(one_epoch), "-n", "4", "--out", str(dangling)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["sample", str(one_epoch), "-n", "4", "--out", str(out), "--force"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case", ["under a file", "read-only", "long name"])
def test_an_out_that_cannot_be_written_is_one_line(one_epoch, tmp_path, capsys, case):
    import os

    from vaelab.cli import main

    (tmp_path / "file").write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    out = {"under a file": tmp_path / "file" / "s.png", "read-only": ro / "s.png",
           "long name": tmp_path / ("s" * 300 + ".png")}[case]
    if case == "read-only" and os.access(ro, os.W_OK):
        pytest.skip("running as root: a read-only folder is writable")
    assert main(["sample", str(one_epoch), "-n", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vaelab: error: cannot write") and "Traceback" not in "".join(err), err


@pytest.mark.parametrize("case", ["dangling symlink", "under a file"])
def test_a_run_directory_that_cannot_be_made_is_one_line(tmp_path, capsys, case):
    from vaelab.cli import main

    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    out = {"dangling symlink": tmp_path / "dangling", "under a file": tmp_path / "file" / "run"}[case]
    argv = ["train", "vae", "--data", "digits", "--epochs", "1", "--out", str(out)]
    assert main([*argv, *(a for k in QUICK for a in ("--set", k))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vaelab: error: ") and str(out) in err[-1] and "Traceback" not in "".join(err), err
    assert not (tmp_path / "nowhere").exists() and (tmp_path / "file").read_text() == "x"
