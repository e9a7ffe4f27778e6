import pytest

from vaelab.config import parse_set
from vaelab.errors import ConfigError
from vaelab.train import RunConfig


def test_set_parsing_types():
    d = parse_set(["model.beta=4", "train.lr=1e-3", "data.classes=[1,2]", "data.path=/x y", "train.grad_clip=null"])
    assert d == {"model": {"beta": 4}, "train": {"lr": 1e-3, "grad_clip": None}, "data": {"classes": [1, 2], "path": "/x y"}}


def test_run_config_yaml_roundtrip(tmp_path):
    cfg = RunConfig.build("vae", parse_set(["model.beta=2.5", "train.schedule=onecycle", "data.classes=[3]", "seed=7"]))
    cfg.save(tmp_path / "c.yaml")
    back = RunConfig.load(tmp_path / "c.yaml")
    assert back.to_dict() == cfg.to_dict()
    assert back.model.beta == 2.5 and back.train.schedule == "onecycle" and back.seed == 7


@pytest.mark.parametrize("item,msg", [
    ("train.lrr=1", "valid keys"),
    ("train.schedule=cosine", "constant"),
    ("train.epochs=0", "epochs"),
    ("train.lr=fast", "number"),
    ("wat=1", "top-level"),
])
def test_bad_keys_and_values(item, msg):
    with pytest.raises(ConfigError, match=msg):
        RunConfig.build("vae", parse_set([item]))


def test_bad_set_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["beta4"])
