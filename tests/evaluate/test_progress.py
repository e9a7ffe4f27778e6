"""The NLL and FID passes say how far they are (vaelab.progress: a line per batch of images once the
interval has passed), and say nothing under --quiet."""
from __future__ import annotations

import logging

import pytest
import torch

from vaelab import progress
from vaelab.data import ImageSet
from vaelab.evaluate import fid, nll
from vaelab.models import build, make_config


@pytest.fixture
def lines(caplog, monkeypatch, tmp_path):
    monkeypatch.setattr(progress, "EVERY_S", 0.0)  # a line at every update
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path))  # the FID feature network's cache
    caplog.set_level(logging.INFO, logger="vaelab")
    yield lambda: [r.getMessage() for r in caplog.records if r.name == "vaelab"]
    progress.set_quiet(False)


def tiny():
    g = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 256, (30, 1, 8, 8), generator=g, dtype=torch.uint8), torch.arange(30) % 3, "tiny")
    torch.manual_seed(0)
    return build(make_config("vae", {"arch": "mlp", "mlp_hidden": [16], "latent_dim": 2}), (1, 8, 8)), data


def test_nll_logs_its_count_of_images_per_batch(lines):
    model, data = tiny()
    out = nll(model, data, batch_size=10, nll_k=3)
    got = [m for m in lines() if m.startswith("nll, 3 importance samples per image")]
    assert [m.split(": ", 1)[1].rsplit(",", 1)[0] for m in got[:3]] == [f"{n}/30 images ({round(100 * n / 30)}%)"
                                                                      for n in (10, 20, 30)]
    assert got[3].startswith("nll, 3 importance samples per image: done, 30/30 images") and len(got) == 4
    assert out["nll_images"] == 30.0


def test_fid_logs_the_images_it_embeds_and_quiet_silences_both(lines):
    model, data = tiny()
    out = fid(model, data, batch_size=10, train=data, fid_images=20, fid_samplers=("prior",))
    got = [m for m in lines() if m.startswith("fid_lenet features")]
    # the real images, their reconstructions and the prior's samples: 3 x 20, 10 at a time
    assert [m.split(": ", 1)[1].split(" (")[0] for m in got[:6]] == [f"{n}/60 images" for n in range(10, 61, 10)]
    assert got[6].startswith("fid_lenet features: done, 60/60 images") and {"rfid_lenet", "fid_lenet"} <= set(out)
    progress.set_quiet(True)
    before = len(lines())
    nll(model, data, batch_size=10, nll_k=3)
    fid(model, data, batch_size=10, train=data, fid_images=20, fid_samplers=("prior",))
    assert len(lines()) == before
