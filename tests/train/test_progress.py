"""What a training run shows while it trains: a bar on a terminal, one plain line per epoch elsewhere."""
import io
import logging
import sys

import pytest

from vaelab.config import parse_set
from vaelab.data import DataConfig, load_data
from vaelab.train import RunConfig, fit


def cfg() -> RunConfig:
    return RunConfig.build("vae", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=2",
                                             "train.epochs=2", "train.batch_size=256", "train.progress_bar=true"]))


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(name="digits", limit=512))


def test_a_log_file_gets_one_plain_line_per_epoch(tmp_path, digits, caplog, capfd):
    import vaelab.train.run as run_mod

    log = logging.getLogger("vaelab")
    state = {"quiet": run_mod.is_quiet(), "tty": sys.stdout.isatty(), "disabled": log.disabled, "propagate": log.propagate,
             "callback": type(run_mod.progress_callback()).__name__}  # what decides whether the lines are written
    with caplog.at_level(logging.INFO, logger="vaelab"):
        fit(cfg(), tmp_path / "run", data=digits)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    got = [line.split(":")[0] for line in lines]
    assert got == ["epoch 1/2", "epoch 2/2"] and all("train/loss" in line for line in lines), state
    out = capfd.readouterr()
    assert "\r" not in out.out + out.err  # no bar redrawn into the file


def test_the_terminal_bar_shows_the_loss_and_no_v_num(tmp_path, digits, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stdout", term)  # where Lightning draws its bar
    fit(cfg(), tmp_path / "run", data=digits)
    shown = term.getvalue()
    assert "train/loss=" in shown and "\r" in shown and "v_num" not in shown
