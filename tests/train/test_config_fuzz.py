"""The CLI's config keys driven with out-of-range values (Hypothesis): every value either makes a
config whose model builds, or is refused with a one-line VaelabError; never a traceback. The model
is built on torch's meta device (its layout checked, nothing allocated), in place of training."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaelab.cli import main
from vaelab.data import DataConfig
from vaelab.models import build, make_config
from vaelab.train.config import TrainConfig

MODELS = ("vae", "ae", "bvae", "vq-vae", "grad2vae", "beta-tcvae")
KEYS = sorted({f"model.{f.name}" for m in MODELS for f in dataclasses.fields(make_config(m, {}))
               if f.name not in ("name", "image_shape", "networks")}
              | {f"train.{f.name}" for f in dataclasses.fields(TrainConfig)}
              | {f"data.{f.name}" for f in dataclasses.fields(DataConfig)})
EXAMPLES = 400

# values a hostile or unlucky user types: extremes, wrong types, non-finite numbers, odd lists
VALUES = st.one_of(
    st.integers(-2**70, 2**70).map(str),
    st.sampled_from(["0", "-1", "-5", "10000000", "1e308", "-1e308", "nan", "inf", "-inf", ".nan", "null", "true", "",
                     "[]", "[0]", "[-5]", "[0, 0]", "[10000000]", "[1, -1]", "[nan]", "{}", "{a: 1}", "x", "'1'",
                     "[[1]]", "1.5", "-0.0", "1e-320", "2**31"]),
    st.lists(st.integers(-3, 5000), max_size=6).map(lambda v: "[" + ", ".join(map(str, v)) + "]"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12).filter(lambda s: "\n" not in s and "\r" not in s),
)


class Built(Exception):
    """Raised by the stand-in for training once the config's model has been laid out."""


@pytest.fixture
def no_training(monkeypatch):
    import vaelab.api.train as api  # the train job's own train_run, which `vaelab train` calls

    def lay_out(cfg, run_dir=None, **kw):
        with torch.device("meta"):
            build(cfg.model, (1, 8, 8))
        raise Built

    monkeypatch.setattr(api, "train_run", lay_out)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(MODELS), key=st.sampled_from(KEYS), value=VALUES)
def test_config_keys_give_a_model_or_a_one_line_error(no_training, capsys, model, key, value):
    try:
        code = main(["train", model, "--data", "digits", "--set", f"{key}={value}"])
    except Built:
        return
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, (key, value, err)
    assert err.startswith("vaelab: error: ") and len(err.strip().splitlines()) == 1, (key, value, err)
