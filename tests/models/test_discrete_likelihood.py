"""Discretised likelihoods in the models (#21): model.likelihood=dgaussian|dlogistic sizes the decoder
for them, the NLL metric reports bits per dimension for them only, and the models that cannot take
them refuse."""
from __future__ import annotations

import math

import pytest
import torch

from vaelab.data import ImageSet
from vaelab.errors import ConfigError
from vaelab.evaluate.likelihood import nll
from vaelab.models import build, make_config
from vaelab.objectives.discretized import DiscretizedGaussian
from vaelab.objectives.logistic_mixture import DiscretizedLogisticMixture, num_params


@pytest.mark.parametrize("kind,conditional", [("dgaussian", False), ("dlogistic", False), ("dlogistic", True)])
def test_decoder_outputs_the_likelihoods_parameters(kind, conditional):
    m = build(make_config("vae", {"likelihood": kind, "channel_conditioning": conditional, "n_mix": 3, "latent_dim": 4}), (3, 8, 8))
    px = m.decode(torch.zeros(2, 4))
    assert isinstance(px, DiscretizedGaussian if kind == "dgaussian" else DiscretizedLogisticMixture)
    want = 6 if kind == "dgaussian" else num_params(3, 3, conditional)
    assert m.likelihood_channels() == want and m.discrete_likelihood
    x = torch.randint(0, 256, (2, 3, 8, 8)).float() / 255
    lp = px.log_prob(x)
    assert lp.shape == (2,) and (lp <= 0).all()  # a log-probability mass
    out = m.loss(x)
    assert torch.isfinite(out.loss) and out.terms["rec"].shape == (2,)
    r = m.reconstruct(x)
    assert r.shape == x.shape and r.min() >= 0 and r.max() <= 1  # the likelihood's mean, an image


def test_bits_per_dimension_only_for_discrete_likelihoods():
    data = ImageSet.from_float(torch.rand(6, 1, 4, 4))
    torch.manual_seed(0)
    d = build(make_config("vae", {"likelihood": "dgaussian", "arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), (1, 4, 4)).eval()
    out = nll(d, data, nll_k=4)
    assert out["bpd"] == pytest.approx(out["nll"] / (16 * math.log(2)))  # bpd = nats / (D ln 2)
    g = build(make_config("vae", {"likelihood": "gaussian", "arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), (1, 4, 4)).eval()
    assert "bpd" not in nll(g, data, nll_k=4) and "nll" in nll(g, data, nll_k=4)  # a density of continuous values: no bpd


@pytest.mark.parametrize("kind,conditional", [("dgaussian", False), ("dlogistic", False), ("dlogistic", True)])
@pytest.mark.parametrize("arch", ["conv", "resnet"])
def test_bidirectional_twin_decodes_the_location_through_the_shared_network(kind, conditional, arch):
    """The shared backward pass's output is added to every location slot of the likelihood head's
    parameters; the twin keeps about half its unidirectional model's parameters."""
    kw = {"likelihood": kind, "channel_conditioning": conditional, "n_mix": 3, "latent_dim": 8, "arch": arch,
          "conv_channels": [16, 32], "hidden_dim": 64}
    torch.manual_seed(0)
    m = build(make_config("bvae", kw), (3, 16, 16))
    z = torch.randn(2, 8)
    a = m.net.backward_to_first(z)
    loc, head = m.net.first.backward(a), m.likelihood_head(a)
    torch.testing.assert_close(loc, m.net.backward(z))  # backward = first layer's transpose of backward_to_first
    px = m.decode(z)
    if kind == "dgaussian":
        torch.testing.assert_close(px.loc, loc + head[:, :3])
        torch.testing.assert_close(px.log_scale, head[:, 3:])
    else:
        K = 3
        start = K if conditional else K * 3
        means = (head[:, start:start + 3 * K] + loc.repeat(1, K, 1, 1)).reshape(2, K, 3, 16, 16)
        torch.testing.assert_close(px.means, means)
    x = torch.randint(0, 256, (2, 3, 16, 16)).float() / 255
    out = m.loss(x)
    out.loss.backward()
    assert m.net.first.weight.grad.abs().sum() > 0 and m.likelihood_head.weight.grad.abs().sum() > 0
    nb, nu = m.num_parameters(), build(make_config("vae", kw), (3, 16, 16)).num_parameters()
    assert 0.45 <= nb / nu <= 0.60, (nb, nu)


def test_models_that_cannot_take_them_refuse():
    with pytest.raises(ConfigError, match="arch=mlp"):
        make_config("bvae", {"likelihood": "dlogistic", "arch": "mlp"})
    with pytest.raises(ConfigError, match="grad2vae"):
        make_config("grad2vae", {"likelihood": "dgaussian"})
    with pytest.raises(ConfigError, match="colour"):
        build(make_config("vae", {"likelihood": "dlogistic", "channel_conditioning": True}), (1, 8, 8))


def test_colour_run_reports_bpd_and_evaluates_exact_test_images(tmp_path):
    """A dlogistic run on 8x8 colour images: its report says what the images show; `vaelab evaluate
    --test-data` scores another set's test split (bits per dimension on it) beside the run's own
    numbers, and refuses images of another shape."""
    import json

    import numpy as np

    from vaelab.cli import main
    from vaelab.config import parse_set
    from vaelab.api.train import train_run
    from vaelab.train import RunConfig

    rng = np.random.default_rng(0)
    data = tmp_path / "colour.npz"
    np.savez(data, x_train=rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8), x_test=rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8))
    other = tmp_path / "exact.npz"
    np.savez(other, x_test=rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8))
    wrong = tmp_path / "gray.npz"
    np.savez(wrong, x_test=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8))
    cfg = RunConfig.build("bvae", parse_set(["data.name=npz", f"data.path={data}", "train.epochs=1", "model.latent_dim=4",
                                             "model.likelihood=dlogistic", "model.conv_channels=[8,16]", "model.hidden_dim=32",
                                             "train.progress_bar=false"]))
    train_run(cfg, tmp_path / "run")
    assert "Likelihood: dlogistic" in (tmp_path / "run" / "report.html").read_text()
    own = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert main(["evaluate", str(tmp_path / "run"), "--metrics", "nll", "--nll-k", "8", "--test-data", str(other), "--json"]) == 0
    after = json.loads((tmp_path / "run" / "metrics.json").read_text())
    ev = after["evaluations"][str(other)]
    assert ev["n_test"] == 10 and ev["bpd"] == pytest.approx(ev["nll"] / (3 * 64 * math.log(2))) and ev["bpd"] > 0
    assert {k: v for k, v in after.items() if k != "evaluations"} == own  # the run's own numbers are untouched
    assert main(["evaluate", str(tmp_path / "run"), "--metrics", "nll", "--test-data", str(wrong)]) == 2
    assert main(["evaluate", str(tmp_path / "run"), "--metrics", "nll", "--test-data", "no-such-set"]) == 2
