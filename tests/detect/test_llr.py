"""The llr score (Havtorn et al. 2021): L^{>1} of a linear-Gaussian hvae against its closed form, so
LLR^{>1} = L - L^{>1} against the closed form too; an image's score does not depend on its batch;
it runs through the detector on a tiny hvae; and a model without levels is refused with the fix."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.models.test_hvae import A, B, S1, S2, a, b, linear_hvae, marginal
from vaelab.detect import AutoencoderDetector
from vaelab.detect.scores import get_score
from vaelab.errors import ModelError
from vaelab.models import build, make_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny models, one torch thread


def closed_form_l1(m, x: torch.Tensor, from_prior: bool = False) -> torch.Tensor:
    """L^{>1} of the linear-Gaussian model: z2 ~ q(z2|x) = N(m2, v2), z1 ~ p(z1|z2) = N(A z2 + a, s1^2 I),
    E log N(x; B z1 + b, s2^2 I) - KL(q(z2|x) || N(0, 1)), with E||x - B z1 - b||^2 =
    ||x - B(A m2 + a) - b||^2 + v2 ||B A||^2 + s1^2 ||B||_F^2. ``from_prior``: z2 ~ p(z2) = N(0, 1) as well,
    the bound L^{>2} = E_p(z)[log p(x|z)] (m2 = 0, v2 = 1, no KL)."""
    with torch.no_grad():
        m2, lv2 = m.top(m.up[0](x)).chunk(2, -1)  # q(z2 | x), the hvae's own (here exact)
    if from_prior:
        m2, lv2 = torch.zeros_like(m2), torch.zeros_like(lv2)
    v2 = lv2.exp()
    r = x - (m2 @ A.T + a) @ B.T - b
    sq = r.pow(2).sum(1) + v2[:, 0] * (B @ A).pow(2).sum() + S1**2 * B.pow(2).sum()
    loglik = -1.5 * math.log(2 * math.pi * S2**2) - sq / (2 * S2**2)
    kl = 0.5 * (m2.pow(2) + v2 - 1 - lv2).sum(1)
    return loglik - kl


def test_the_bound_with_the_lowest_level_from_the_prior_and_the_llr_are_their_closed_forms():
    """With q the exact posterior, L = log p(x) (closed form, MultivariateNormal) and L^{>1} has the closed
    form above; 40,000 draws of each, sharing their noise (the score's), agree with both, and their
    difference - the score itself - with the closed-form LLR, each within 5 standard errors (L^{>2},
    every level from the prior, too)."""
    torch.manual_seed(5)
    m = linear_hvae()
    x = marginal().sample(torch.Size([5]))
    score = get_score("llr").make(k=1, n_samples=40_000).fit(m, x)
    eps = score.noise(m)
    with torch.no_grad():
        l0 = m.bound_above(x, 0, 40_000, eps)  # [n, 5]
        l1 = m.bound_above(x, 1, 40_000, eps)
        llr = score.batch(m, x)
    exact0, exact1 = marginal().log_prob(x), closed_form_l1(m, x)
    for draws, exact in ((l0, exact0), (l1, exact1), (l0 - l1, exact0 - exact1)):
        se = draws.std(0) / math.sqrt(len(draws))
        assert ((draws.mean(0) - exact).abs() < 5 * se).all(), (draws.mean(0), exact, se)
    torch.testing.assert_close(llr, (l0 - l1).mean(0))
    assert ((exact0 - exact1) > 1).all()  # the prior's guesses of z1 cost these points nats: a score, not a constant
    # the levels drawn from the prior leave their KL out: at k = 2 (every level) the bound is E_p(z)[log p(x|z)] alone
    with torch.no_grad():
        l2 = m.bound_above(x, 2, 40_000, eps)
    se = l2.std(0) / math.sqrt(len(l2))
    assert ((l2.mean(0) - closed_form_l1(m, x, from_prior=True)).abs() < 5 * se).all()


def test_an_images_score_does_not_depend_on_its_batch():
    torch.manual_seed(6)
    m = build(make_config("hvae", {"arch": "mlp", "mlp_hidden": [16], "latent_dim": 2, "hidden_dim": 8, "levels": 3}),
              (1, 6, 6)).eval()
    x = torch.rand(4, 1, 6, 6)
    s = get_score("llr").make(k=2, n_samples=3).fit(m, x)
    with torch.no_grad():
        whole = s.batch(m, x)
        torch.manual_seed(99)  # the noise comes from the fit's seed, not the global generator
        alone = torch.cat([s.batch(m, x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(whole, alone)
    assert float(whole.std()) > 0


def test_runs_through_the_detector_on_a_tiny_hvae():
    torch.manual_seed(7)
    m = build(make_config("hvae", {"arch": "mlp", "mlp_hidden": [16], "latent_dim": 2, "hidden_dim": 8}), (1, 8, 8)).eval()
    normal, other = torch.rand(40, 1, 8, 8) * 0.5, torch.rand(10, 1, 8, 8)
    d = AutoencoderDetector(m, "llr", n_samples=2, calibration=0).fit(normal)
    s = d.decision_function(other, clip=False)
    assert s.shape == (10,) and np.isfinite(s).all()
    assert d.score_.spec() == "llr(k=1, n_samples=2)"


def test_refuses_a_model_without_levels_and_a_k_at_or_above_them():
    torch.manual_seed(8)
    vae = build(make_config("vae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), (1, 8, 8)).eval()
    with pytest.raises(ModelError, match="vaelab train hvae"):
        AutoencoderDetector(vae, "llr", calibration=0).fit(torch.rand(20, 1, 8, 8))
    hv = build(make_config("hvae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 2, "hidden_dim": 8}), (1, 8, 8)).eval()
    with pytest.raises(ModelError, match="k in 1..1"):
        get_score("llr").make(k=2).fit(hv, torch.rand(4, 1, 8, 8))
