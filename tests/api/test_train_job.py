"""The train job (vaelab.api.train_run): what a resumed run reports about its training time."""
import json

import pytest

from vaelab.api import train_run
from vaelab.config import parse_set
from vaelab.train import RunConfig


def cfg(epochs: int) -> RunConfig:
    return RunConfig.build("vae", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=2",
                                             f"train.epochs={epochs}", "train.batch_size=128", "train.progress_bar=false"]))


def test_train_seconds_of_a_resumed_run_is_the_sum_of_its_sessions(tmp_path):
    run, first = train_run(cfg(1), tmp_path / "run")
    assert first["train_seconds_segments"] == [first["train_seconds"]] and first["train_seconds"] > 0
    _, second = train_run(cfg(2), run, resume=True)
    _, third = train_run(cfg(3), run, resume=True)
    seg = third["train_seconds_segments"]
    assert len(seg) == 3 and seg[:2] == second["train_seconds_segments"] and seg[0] == first["train_seconds"]
    assert third["train_seconds"] == pytest.approx(sum(seg), rel=1e-12) and third["train_seconds"] > seg[-1] > 0
    assert json.loads((run / "metrics.json").read_text())["train_seconds"] == third["train_seconds"]
    # a finished run resumed at the same length trains nothing and keeps its figures
    _, again = train_run(cfg(3), run, resume=True)
    assert again["train_seconds_segments"] == seg
