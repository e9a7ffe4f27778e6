"""The detector's default on colour images: with no model it trains arnet with its rotation head network,
whose default combo is the head's transform_nll alone; its scores export (the rotations are flips and a
transpose), and grayscale images keep the vae."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.detect import DEFAULT_COMBO, DEFAULT_HEAD_NET_COMBO, AutoencoderDetector
from vaelab.detect.export import export_detector
from vaelab.exported import load_exported
from vaelab.models.restore import rotate
from tests.conftest import require_module

NET = {"latent_dim": 4, "conv_channels": [4], "hidden_dim": 16}
SMALL = {"model": {**NET, "head_width": 4}}
FORMATS = ("torchscript", "onnx")


def _images(channels: int, n: int = 96, side: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, channels, side, side, generator=g) * 255).to(torch.uint8)


@pytest.fixture(scope="module")
def colour_detector():
    torch.manual_seed(0)
    x = _images(3)
    return AutoencoderDetector(epochs=1, overrides=SMALL).fit(x), x


def test_colour_images_train_arnet_with_its_head_network_scored_by_the_head(colour_detector):
    det, x = colour_detector
    assert det.model_name_ == "arnet" and det.model_.config.head_net and det.model_.config.latent_dim == 4
    assert [m.name for m in det.score_.members] == list(DEFAULT_HEAD_NET_COMBO) == ["transform_nll"]
    # the raw score is the head's own mean -log p(k | rot_k x), z-scored by the fitted mean and std
    imgs = x[:16].float() / 255
    with torch.no_grad():
        logp = torch.stack([torch.log_softmax(det.model_.head(rotate(imgs, k)), 1)[:, k] for k in range(4)])
    nll = -logp.mean(0).double()
    expected = ((nll - det.score_.mean_[0]) / det.score_.std_[0]).numpy()
    np.testing.assert_allclose(det.raw_scores(x[:16]), expected, rtol=1e-6, atol=1e-6)


def test_grayscale_images_and_a_user_choice_keep_their_model():
    gray = AutoencoderDetector(epochs=1, overrides={"model": NET}).fit(_images(1, 64))
    assert gray.model_name_ == "vae" and [m.name for m in gray.score_.members] == list(DEFAULT_COMBO)
    asked = AutoencoderDetector(model_name="vae", epochs=1, overrides={"model": NET}).fit(_images(3, 64))
    assert asked.model_name_ == "vae" and [m.name for m in asked.score_.members] == list(DEFAULT_COMBO)
    # the user's overrides win over the colour default's: without the head network arnet scores as any model
    plain = AutoencoderDetector(epochs=1, overrides={"model": {**SMALL["model"], "head_net": False}}).fit(_images(3, 64))
    assert plain.model_name_ == "arnet" and not plain.model_.config.head_net
    assert [m.name for m in plain.score_.members] == list(DEFAULT_COMBO)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("score", ["transform_nll", "restoration"])
def test_the_restoring_scores_export(colour_detector, score, fmt, tmp_path):
    if fmt == "onnx":
        require_module("onnx")
        require_module("onnxruntime")
    base, x = colour_detector
    det = AutoencoderDetector(base.model_, score).fit(x)
    scorer = load_exported(export_detector(det, tmp_path / "bundle", fmt))
    got = scorer((x[:16].float() / 255).numpy())["raw_score"]
    # float32 in the bundle: a few units in the last place of scores near ln 4
    np.testing.assert_allclose(got, det.raw_scores(x[:16]), rtol=1e-6, atol=1e-6)


def test_the_colour_default_saves_and_reloads(colour_detector, tmp_path):
    from vaelab.detect.persist import load_detector, save_detector

    det, x = colour_detector
    back = load_detector(save_detector(det, tmp_path / "det"))
    assert back.model_.config.head_net and [m.name for m in back.score_.members] == ["transform_nll"]
    np.testing.assert_array_equal(back.raw_scores(x[:16]), det.raw_scores(x[:16]))
    np.testing.assert_array_equal(back.predict(x[:16]), det.predict(x[:16]))
