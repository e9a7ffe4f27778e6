"""docs/guide/adding-a-sampler.md as printed: its one file registers a sampler that `vaelab sample` and FID
take through --import, whose fit is kept in the run and reused by the next call."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaelab

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide" / "adding-a-sampler.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE.read_text(), flags=re.S)


@pytest.fixture
def guide_dir(tmp_path, monkeypatch, one_thread):
    """A folder with the guide's file and a small digits VAE at runs/tour-vae, as the guide's commands expect."""
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.generate import SAMPLERS
    from vaelab.train import RunConfig

    code = next(b for b in _blocks("python") if b.startswith("# gaussian_sampler.py"))
    (tmp_path / "gaussian_sampler.py").write_text(code)
    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "data.limit=500", "train.epochs=1", "model.arch=mlp",
                                            "model.mlp_hidden=[32]", "model.latent_dim=4", "train.progress_bar=false"]))
    train_run(cfg, tmp_path / "runs" / "tour-vae")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    SAMPLERS.pop("gaussian", None)


def test_the_guides_sampler_is_one_file_that_every_command_takes(guide_dir, capsys):
    from vaelab.cli import main
    from vaelab.data import load_run_data
    from vaelab.generate import SAMPLERS
    from vaelab.models import embed_images
    from vaelab.train import RunConfig

    lines = [ln.split("  #")[0] for ln in _blocks("bash")[0].splitlines() if ln.startswith("vaelab ")]
    assert len(lines) == 3
    outputs = []
    for line in lines:
        assert main(shlex.split(line)[1:]) == 0, line
        outputs.append(capsys.readouterr())
    assert "fitting the gaussian sampler" in outputs[0].err and "reusing the gaussian sampler" in outputs[1].err
    assert (guide_dir / "gaussian.png").read_bytes() == (guide_dir / "again.png").read_bytes()
    fid = json.loads(outputs[2].out)
    assert fid["fid_lenet_gaussian"] > 0 and "reusing the gaussian sampler" in outputs[2].err  # FID drew from the kept fit
    # what was kept is the fit: the mean of the training codes
    run = guide_dir / "runs" / "tour-vae"
    (kept,) = (run / "samplers").iterdir()
    cfg = RunConfig.load(run / "config.yaml")
    z = embed_images(vaelab.load(run), load_run_data(cfg.data, cfg.seed, run)[0]).double()
    torch.testing.assert_close(load_file(kept / "sampler.safetensors")["loc"], z.mean(0))
    assert SAMPLERS["gaussian"].__module__.startswith("vaelab_user_gaussian_sampler")


def test_register_sampler_takes_sampler_classes_only():
    from vaelab.errors import ModelError

    with pytest.raises(ModelError, match="subclass of vaelab.generate.PriorSampler"):
        vaelab.register_sampler("not-a-sampler")(dict)
