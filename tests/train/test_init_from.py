"""train.init_from: a run starts from an earlier run's weights (fine-tuning), and weights of another
model or of other network settings are refused with what differs."""
import pytest
import torch

from vaelab.config import parse_set
from vaelab.errors import ConfigError
from vaelab.train import RunConfig, load_run
from vaelab.train.run import fit

BASE = ["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=2", "train.epochs=1",
        "train.progress_bar=false", "train.loggers=[csv]"]


def _fit(tmp_path, name, model="vae", extra=()):
    cfg = RunConfig.build(model, parse_set([*BASE, *extra]))
    m, _ = fit(cfg, tmp_path / name)
    return m


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_a_run_starts_from_the_weights_it_is_given(tmp_path):
    src = _state(_fit(tmp_path, "src", extra=["train.lr=0.01"]))
    fresh = _state(_fit(tmp_path, "fresh"))
    # a learning rate so small that the weights stay where they started: where they started is the source's
    tuned = _state(_fit(tmp_path, "tuned", extra=[f"train.init_from={tmp_path / 'src'}", "train.lr=1e-12"]))
    for k in src:
        assert torch.allclose(tuned[k], src[k], atol=1e-6), k
    assert max(float((fresh[k] - src[k]).abs().max()) for k in src) > 1e-2  # without it, training starts elsewhere
    # a .safetensors file works as well as the run's directory, and the run's config records its start
    tuned2 = _state(_fit(tmp_path, "tuned2", extra=[f"train.init_from={tmp_path / 'src' / 'model.safetensors'}", "train.lr=1e-12"]))
    assert all(torch.allclose(tuned2[k], src[k], atol=1e-6) for k in src)
    assert RunConfig.load(tmp_path / "tuned2" / "config.yaml").train.init_from.endswith("model.safetensors")


def test_fine_tuning_trains_from_there(tmp_path):
    """At an ordinary learning rate the fine-tuned run moves away from its start, and its reload is itself."""
    src = _state(_fit(tmp_path, "src"))
    m = _fit(tmp_path, "tuned", extra=[f"train.init_from={tmp_path / 'src'}"])
    tuned = _state(m)
    assert max(float((tuned[k] - src[k]).abs().max()) for k in src) > 1e-4
    again = load_run(tmp_path / "tuned").state_dict()
    assert all(torch.equal(again[k], tuned[k]) for k in tuned)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    _fit(tmp_path, "src")
    with pytest.raises(ConfigError, match=r"train.init_from: .*shape mismatch"):
        _fit(tmp_path, "wide", extra=[f"train.init_from={tmp_path / 'src'}", "model.latent_dim=3"])
    with pytest.raises(ConfigError, match=r"train.init_from: .*'vae' model, not 'ae'"):
        _fit(tmp_path, "other", model="ae", extra=[f"train.init_from={tmp_path / 'src'}"])
    with pytest.raises(ConfigError, match=r"train.init_from: .*does not exist"):
        _fit(tmp_path, "gone", extra=[f"train.init_from={tmp_path / 'nowhere'}"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"train.init_from: .*without model.safetensors"):
        _fit(tmp_path, "empty-src", extra=[f"train.init_from={tmp_path / 'empty'}"])
    from vaelab.train.config import TrainConfig

    with pytest.raises(ConfigError, match="train.init_from must be"):
        TrainConfig(init_from=" ")


def test_the_cli_fine_tunes(tmp_path, capsys):
    from vaelab.cli import main

    _fit(tmp_path, "src")
    rc = main(["train", "vae", "--data", "digits", "--out", str(tmp_path / "tuned"), "--set", "model.arch=mlp",
               "--set", "model.mlp_hidden=[16]", "--set", "model.latent_dim=2", "--epochs", "1", "--set", "train.progress_bar=false",
               "--set", f"train.init_from={tmp_path / 'src'}"])
    assert rc in (0, None)
    assert (tmp_path / "tuned" / "model.safetensors").is_file()
    assert RunConfig.load(tmp_path / "tuned" / "config.yaml").train.init_from == str(tmp_path / "src")
