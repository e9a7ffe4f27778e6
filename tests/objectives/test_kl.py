import math

import torch

from vaelab.objectives import PointMass, diag_gaussian, gaussian_kl_closed_form, kl_to_prior, log_mean_exp, pixel_likelihood, standard_normal


def test_gaussian_kl_matches_closed_form_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(4, 3, generator=g, dtype=torch.float64) * 0.5
    q = diag_gaussian(mu, logvar)
    analytic = kl_to_prior(q, standard_normal(q.event_shape[0]))
    torch.testing.assert_close(analytic, gaussian_kl_closed_form(mu, logvar))
    torch.manual_seed(1)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)).mean(0)
    torch.testing.assert_close(mc, analytic, atol=0.02, rtol=0.01)


def test_bernoulli_likelihood_is_negative_bce_for_grey_targets():
    logits = torch.randn(2, 1, 3, 3)
    x = torch.rand(2, 1, 3, 3)
    lp = pixel_likelihood("bernoulli", logits).log_prob(x)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(lp, -bce)


def test_gaussian_likelihood_sum_over_pixels():
    mean = torch.zeros(1, 1, 2, 2)
    x = torch.ones(1, 1, 2, 2)
    lp = pixel_likelihood("gaussian", mean, 1.0).log_prob(x)
    torch.testing.assert_close(lp, torch.tensor([4 * (-0.5 - 0.5 * math.log(2 * math.pi))]))


def test_point_mass_and_log_mean_exp():
    p = PointMass(torch.tensor([[1.0, 2.0]]))
    assert torch.equal(p.rsample(), p.mean)
    assert p.log_prob(torch.tensor([[1.0, 2.0]])).item() == 0.0
    w = torch.tensor([[0.0], [math.log(3.0)]])
    torch.testing.assert_close(log_mean_exp(w, 0), torch.tensor([math.log(2.0)]))
