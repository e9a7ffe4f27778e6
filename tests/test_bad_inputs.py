"""Inputs that gave tracebacks give one-line VaelabErrors: NaN images through the API, NaN weights
in model.safetensors, a CSV of a million columns (refused while it is read, before a table is built)."""
from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import load_file, save_file

import vaelab
from vaelab.errors import CheckpointError, DataError, ModelError


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_images_are_refused_by_the_model(value):
    from vaelab.models import build, make_config

    model = build(make_config("vae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), (1, 8, 8))
    x = torch.rand(2, 1, 8, 8)
    x[1, 0, 3, 3] = value
    for call in (model.loss, model.encode, model.reconstruct):
        with pytest.raises(ModelError, match="NaN or infinite") as e:
            call(x)
        assert "\n" not in str(e.value)


def test_nan_weights_are_refused_when_a_run_loads(tmp_path):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("ae", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[8]",
                                           "model.latent_dim=2", "train.epochs=1", "train.progress_bar=false",
                                           "train.loggers=csv"]))
    run, _ = train_run(cfg, tmp_path / "run")
    from safetensors import safe_open

    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    state = load_file(run / "model.safetensors")
    key = next(iter(state))
    state[key] = torch.full_like(state[key], float("nan"))
    save_file(state, str(run / "model.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="NaN or infinite weights") as e:
        vaelab.load(run)
    assert key in str(e.value) and "\n" not in str(e.value)


def test_a_million_column_csv_is_refused_at_once(tmp_path):
    from vaelab.data.sources import CSV

    path = tmp_path / "wide.csv"
    path.write_text(",".join(["1"] * 1_000_000) + "\n" + ",".join(["2"] * 1_000_000) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="at most 65,536 columns"):
        CSV.load("train", str(path))
    assert time.perf_counter() - t0 < 30
