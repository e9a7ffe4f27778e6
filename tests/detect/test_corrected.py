"""The scores for detection where likelihoods fail (#43): complexity, likelihood_ratio, restoration."""
import io
import math

import pytest
import torch
from PIL import Image

from vaelab.detect import AutoencoderDetector
from vaelab.detect.scores import make_score, score_images
from vaelab.detect.scores.corrected import code_length_bits, perturb, to_uint8
from vaelab.errors import ModelError
from vaelab.models import build, make_config


def _vae(shape=(1, 8, 8)):
    torch.manual_seed(0)
    return build(make_config("vae", {"latent_dim": 3, "arch": "mlp", "mlp_hidden": [16], "likelihood": "dlogistic",
                                     "n_mix": 1}), shape).eval()


def _images(n=12, shape=(1, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    smooth = torch.linspace(0, 255, shape[-1]).round().to(torch.uint8).expand(n // 2, *shape)  # few PNG bits
    noisy = torch.randint(0, 256, (n - n // 2, *shape), generator=g, dtype=torch.uint8)  # many
    return torch.cat([smooth, noisy])


@pytest.mark.parametrize("codec,level", [("png", 9), ("png", 1), ("webp", 6)])
def test_complexity_is_the_nll_in_bits_minus_the_codecs_bits(codec, level):
    model, x = _vae(), _images()
    bits = []
    for a in x:
        buf = io.BytesIO()
        im = Image.fromarray(a[0].numpy())
        if codec == "png":
            im.save(buf, format="PNG", compress_level=level)
        else:
            im.save(buf, format="WEBP", lossless=True, quality=100, method=level)
        bits.append(8 * len(buf.getvalue()))  # the codec's own file size
    bits = torch.tensor(bits, dtype=torch.float64)
    assert torch.equal(torch.from_numpy(code_length_bits(to_uint8(x.double() / 255), codec, level)), bits)
    nll = score_images(model, make_score("nelbo").fit(model, x), x)
    got = score_images(model, make_score("complexity", codec=codec, codec_level=level).fit(model, x), x)
    torch.testing.assert_close(got, nll / math.log(2) - bits, rtol=0, atol=1e-9)
    assert bits[: len(x) // 2].max() < bits[len(x) // 2 :].min()  # the smooth images are the simple ones


def test_likelihood_ratio_of_a_model_against_itself_is_zero():
    model, x = _vae(), _images()
    s = make_score("likelihood_ratio").use_background(model).fit(model, x, seed=3)
    assert torch.equal(score_images(model, s, x), torch.zeros(len(x), dtype=torch.float64))


def test_perturbation_replaces_about_the_rate_of_sub_pixels():
    x = torch.full((200, 1, 8, 8), 7, dtype=torch.uint8)
    y = perturb(x, 0.2, torch.Generator().manual_seed(0))
    changed = (y != x).double().mean().item()
    assert abs(changed - 0.2 * 255 / 256) < 0.01  # a replaced level is 7 again with probability 1/256


def test_detector_trains_the_background_and_a_saved_detector_scores_the_same(tmp_path):
    model, x = _vae(), _images(40)
    det = AutoencoderDetector(model, score="likelihood_ratio", background_epochs=1, calibration=0.2).fit(x)
    s = torch.as_tensor(det.raw_scores(x[:10]))
    assert det.score_.background_state_ is not None and torch.isfinite(s).all()
    assert s.abs().min() > 0  # log p(x) under a second model, trained on perturbed images: not the model's own
    det.save(tmp_path / "det")
    again = AutoencoderDetector.load(tmp_path / "det")
    torch.testing.assert_close(torch.as_tensor(again.raw_scores(x[:10])), s)
    torch.testing.assert_close(torch.as_tensor(again.decision_function(x[:10])), torch.as_tensor(det.decision_function(x[:10])))


def test_restoration_scores_are_arnets_own_and_refused_elsewhere():
    torch.manual_seed(0)
    arnet = build(make_config("arnet", {"latent_dim": 4, "transform_head": True}), (3, 8, 8)).eval()
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    xf = x.float() / 255
    torch.testing.assert_close(score_images(arnet, make_score("restoration").fit(arnet, x), x),
                               arnet.restoration_error(xf).double())
    torch.testing.assert_close(score_images(arnet, make_score("transform_nll").fit(arnet, x), x),
                               arnet.transform_nll(xf).double())
    with pytest.raises(ModelError, match="vaelab train arnet"):
        make_score("restoration").fit(_vae((3, 8, 8)), x)
    no_head = build(make_config("arnet", {"latent_dim": 4}), (3, 8, 8))
    with pytest.raises(ModelError, match="transform_head=true"):
        make_score("transform_nll").fit(no_head, x)
