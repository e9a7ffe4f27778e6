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
from vaelab.objectives.discretized import DiscretizedGaussian, DiscretizedLogisticMixture, num_params


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


def test_models_that_cannot_take_them_refuse():
    with pytest.raises(ConfigError, match="bidirectional"):
        make_config("bvae", {"likelihood": "dlogistic"})
    with pytest.raises(ConfigError, match="grad2vae"):
        make_config("grad2vae", {"likelihood": "dgaussian"})
    with pytest.raises(ConfigError, match="colour"):
        build(make_config("vae", {"likelihood": "dlogistic", "channel_conditioning": True}), (1, 8, 8))
