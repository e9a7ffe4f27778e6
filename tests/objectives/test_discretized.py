import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from vaelab.errors import ConfigError, ModelError
from vaelab.objectives.discretized import DiscretizedGaussian, bits_per_dim
from vaelab.objectives.logistic_mixture import DiscretizedLogisticMixture, from_params, num_params

KINDS = ("gaussian", "mixture", "conditional")
EXTREME_LOG_SCALES = (-30.0, -20.0, -12.0, -5.0, 0.0, 5.0, 12.0, 20.0, 30.0)
LEVEL = np.arange(256.0)
LOWER = np.where(LEVEL == 0, -np.inf, 2 * LEVEL / 255 - 1 - 1 / 255)   # bin edges on the [-1, 1] scale
UPPER = np.where(LEVEL == 255, np.inf, 2 * LEVEL / 255 - 1 + 1 / 255)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _log_scales(shape, gen, dtype=torch.float32, extremes=True):
    """Log-scales drawn from [-8, 8], with the extreme values planted among them if asked."""
    ls = torch.empty(shape, dtype=dtype).uniform_(-8.0, 8.0, generator=gen)
    if extremes:
        flat = ls.view(-1)
        n = min(flat.numel(), len(EXTREME_LOG_SCALES))
        flat[:n] = torch.tensor(EXTREME_LOG_SCALES[:n], dtype=dtype)
    return ls


def _random(kind, gen, batch=2, k=3, hw=(4, 4), dtype=torch.float32, extremes=True):
    """A likelihood of ``kind`` over images (3, *hw) with random parameters, extreme scales included
    unless ``extremes`` is false."""
    event = (3,) + hw
    if kind == "gaussian":
        loc = torch.empty((batch,) + event, dtype=dtype).uniform_(-1.5, 1.5, generator=gen)
        return DiscretizedGaussian(loc, _log_scales(loc.shape, gen, dtype, extremes))
    shape = (batch, k) + event
    means = torch.empty(shape, dtype=dtype).uniform_(-1.5, 1.5, generator=gen)
    log_scales = _log_scales(shape, gen, dtype, extremes)
    if kind == "mixture":
        return DiscretizedLogisticMixture(3 * torch.randn(shape, generator=gen, dtype=dtype), means, log_scales)
    logits = 3 * torch.randn((batch, k, 1) + hw, generator=gen, dtype=dtype)
    coeffs = torch.empty(shape, dtype=dtype).uniform_(-1.0, 1.0, generator=gen)
    return DiscretizedLogisticMixture(logits, means, log_scales, coeffs)


def _random_image(shape, gen, dtype=torch.float32):
    k = torch.randint(0, 256, shape, generator=gen)
    k.view(-1)[:2] = torch.tensor([0, 255])
    return k.to(dtype) / 255


def _chi2_pvalue(samples_levels: np.ndarray, probs: np.ndarray) -> float:
    """Pearson's chi-square p-value of integer samples against a pmf over 0..len(probs)-1, the bins
    expected fewer than 5 times pooled into one (folded into the last kept bin if still too small)."""
    n = len(samples_levels)
    counts = np.bincount(samples_levels, minlength=len(probs)).astype(float)
    expected = probs * n
    big = expected >= 5
    obs, exp = list(counts[big]), list(expected[big])
    rest_obs, rest_exp = counts[~big].sum(), expected[~big].sum()
    if rest_exp >= 5:
        obs.append(rest_obs)
        exp.append(rest_exp)
    else:
        obs[-1] += rest_obs
        exp[-1] += rest_exp
    if len(obs) < 2:                            # (nearly) all the mass on one level
        return 1.0 if obs[0] == n else 0.0
    obs, exp = np.array(obs), np.array(exp)
    return stats.chi2.sf(((obs - exp) ** 2 / exp).sum(), len(obs) - 1)


# (a) ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_bin_probabilities_sum_to_one(kind):
    gen = torch.Generator().manual_seed(0)
    dist = _random(kind, gen)
    x = _random_image((2, 3, 4, 4), gen)
    lp = dist.bin_log_probs(x)
    assert lp.shape == (2, 3, 4, 4, 256)
    assert torch.isfinite(lp).all()
    total = lp.exp().sum(-1)
    assert (total - 1).abs().max() < 1e-5


# (b) ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_sharp_distribution_centred_on_a_constant_image_gives_it_probability_one(kind):
    for level in (0, 1, 128, 254, 255):
        x = torch.full((2, 3, 4, 4), level / 255)
        centre = torch.full_like(x, 2 * level / 255 - 1)
        off = torch.full_like(x, 2 * ((level + 1) % 256) / 255 - 1)   # one level up (or 255 -> 0)
        if kind == "gaussian":
            log_scale = torch.full_like(x, -12.0)
            sharp, wrong = DiscretizedGaussian(centre, log_scale), DiscretizedGaussian(off, log_scale)
        else:
            # two components, the one centred on x carrying all the weight; the other sits at -centre
            means = torch.stack([centre, -centre], dim=1)
            log_scales = torch.full_like(means, -10.0)
            if kind == "mixture":
                logits = torch.stack([torch.full_like(x, 30.0), torch.full_like(x, -30.0)], dim=1)
                sharp = DiscretizedLogisticMixture(logits, means, log_scales)
                wrong = DiscretizedLogisticMixture(logits, torch.stack([off, -off], dim=1), log_scales)
            else:
                logits = torch.tensor([30.0, -30.0]).view(1, 2, 1, 1, 1).expand(2, 2, 1, 4, 4)
                coeffs = torch.tensor([0.5, -0.7, 0.3]).view(1, 1, 3, 1, 1).expand_as(means)
                c = 2 * level / 255 - 1
                # shift the G and B means back so that the conditional means land on the centre
                shift = torch.tensor([0.0, 0.5 * c, -0.7 * c + 0.3 * c]).view(1, 1, 3, 1, 1)
                sharp = DiscretizedLogisticMixture(logits, means - shift, log_scales, coeffs)
                step = torch.stack([off - centre, off - centre], dim=1)
                wrong = DiscretizedLogisticMixture(logits, means - shift + step, log_scales, coeffs)
        lp = sharp.log_prob(x)
        assert lp.shape == (2,)
        assert (lp <= 0).all() and (lp > -1e-3).all(), (kind, level, lp)
        assert (wrong.log_prob(x) < -100).all(), (kind, level)


# (c) ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_is_the_sum_of_the_bin_log_probs_at_the_image(kind, dtype):
    gen = torch.Generator().manual_seed(1)
    dist = _random(kind, gen, dtype=dtype)
    x = _random_image((2, 3, 4, 4), gen, dtype)
    levels = torch.round(x * 255).long()
    gathered = dist.bin_log_probs(x).gather(-1, levels.unsqueeze(-1)).squeeze(-1).sum((1, 2, 3))
    lp = dist.log_prob(x)
    assert lp.shape == (2,)
    tol = dict(rtol=1e-5, atol=1e-3) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(lp, gathered, **tol)


# (d) ---------------------------------------------------------------------------------------------
def _reference_masses(cdf, sf, loc, scale):
    """Bin masses from a float64 scipy CDF, differenced on the side of the location where the
    difference does not cancel; loc and scale broadcast to [..., 1] against the 256 levels."""
    centre = 2 * LEVEL / 255 - 1
    below = cdf(UPPER, loc, scale) - cdf(LOWER, loc, scale)
    above = sf(LOWER, loc, scale) - sf(UPPER, loc, scale)
    return np.where(centre > loc, above, below)


def _compare_log_masses(got: np.ndarray, ref: np.ndarray, tol: float):
    ok = ref > 1e-250                           # where the float64 reference has a meaningful log
    err = np.abs(got[ok] - np.log(ref[ok])) / np.maximum(1.0, np.abs(np.log(ref[ok])))
    assert err.max() < tol, err.max()
    assert np.abs(np.exp(got) - ref).max() < 10 * tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gaussian_bins_match_scipy(dtype):
    rng = np.random.default_rng(2)
    loc = rng.uniform(-1.3, 1.3, 400)
    # float32 rounds bin centres by ~1e-7, which the narrowest Gaussians magnify: start at -4 there
    log_scale = rng.uniform(-9.0 if dtype == torch.float64 else -4.0, 12.0, 400)
    loc, log_scale = (np.asarray(torch.tensor(v, dtype=dtype), dtype=np.float64) for v in (loc, log_scale))
    got = DiscretizedGaussian(torch.tensor(loc, dtype=dtype), torch.tensor(log_scale, dtype=dtype), event_dims=0)
    ref = _reference_masses(stats.norm.cdf, stats.norm.sf, loc[:, None], np.exp(log_scale)[:, None])
    _compare_log_masses(got.bin_log_probs().double().numpy(), ref, 1e-7 if dtype == torch.float64 else 2e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_logistic_mixture_bins_match_scipy(dtype):
    rng = np.random.default_rng(3)
    k, n = 4, 200
    logits = rng.normal(0.0, 2.0, (n, k))
    means = rng.uniform(-1.3, 1.3, (n, k))
    log_scales = rng.uniform(-9.0 if dtype == torch.float64 else -4.0, 12.0, (n, k))
    logits, means, log_scales = (torch.tensor(v, dtype=dtype) for v in (logits, means, log_scales))
    dist = DiscretizedLogisticMixture(logits, means, log_scales, event_dims=0)
    logits, means, log_scales = (v.double().numpy() for v in (logits, means, log_scales))   # as rounded
    per_component = _reference_masses(stats.logistic.cdf, stats.logistic.sf, means[..., None],
                                      np.exp(log_scales)[..., None])
    ref = (special.softmax(logits, axis=1)[..., None] * per_component).sum(1)          # [n, 256]
    _compare_log_masses(dist.bin_log_probs().double().numpy(), ref, 1e-7 if dtype == torch.float64 else 2e-5)


def test_conditional_mixture_matches_scipy_chain_rule():
    gen = torch.Generator().manual_seed(4)
    # no extreme scales: scipy's CDF differences lose the bins of a scale of 1e8 to cancellation
    dist = _random("conditional", gen, batch=3, k=3, hw=(2, 2), dtype=torch.float64, extremes=False)
    x = _random_image((3, 3, 2, 2), gen, torch.float64)
    logits = dist.logit_probs.squeeze(2).numpy()                     # [B, K, H, W]
    means, scales, coeffs = dist.means.numpy(), dist.log_scales.exp().numpy(), dist.coeffs.numpy()
    c = 2 * np.round(x.numpy() * 255) / 255 - 1                      # [B, 3, H, W]
    r, g = c[:, None, 0], c[:, None, 1]
    shifted = np.stack([means[:, :, 0], means[:, :, 1] + coeffs[:, :, 0] * r,
                        means[:, :, 2] + coeffs[:, :, 1] * r + coeffs[:, :, 2] * g], axis=2)
    # [B, K, 3, H, W, 256]
    mass = _reference_masses(stats.logistic.cdf, stats.logistic.sf, shifted[..., None], scales[..., None])
    weights = special.softmax(logits, axis=1)                        # [B, K, H, W]
    levels = np.round(x.numpy() * 255).astype(int)
    at_x = np.take_along_axis(mass, levels[:, None, ..., None], axis=-1)[..., 0]   # [B, K, 3, H, W]
    joint = np.log((weights * at_x.prod(2)).sum(1)).sum((1, 2))
    torch.testing.assert_close(dist.log_prob(x), torch.from_numpy(joint), rtol=1e-9, atol=1e-7)
    bins = dist.bin_log_probs(x).exp().numpy()                       # [B, 3, H, W, 256]
    red = (weights[..., None] * mass[:, :, 0]).sum(1)
    # the component weights given the image's red (and green) levels
    given_r = weights * at_x[:, :, 0]
    given_rg = given_r * at_x[:, :, 1]
    green = (given_r[..., None] * mass[:, :, 1]).sum(1) / given_r.sum(1)[..., None]
    blue = (given_rg[..., None] * mass[:, :, 2]).sum(1) / given_rg.sum(1)[..., None]
    for channel, ref in enumerate((red, green, blue)):
        np.testing.assert_allclose(bins[:, channel], ref, rtol=1e-6, atol=1e-12)


# (e) ---------------------------------------------------------------------------------------------
def test_bits_per_dim_hand_examples():
    assert bits_per_dim(3072 * math.log(2) * 4, 3072) == pytest.approx(4.0, rel=1e-12)
    assert bits_per_dim(784 * math.log(256), 784) == pytest.approx(8.0, rel=1e-12)   # uniform over 256 levels
    t = bits_per_dim(torch.tensor([0.0, 10 * math.log(2)]), 5)
    torch.testing.assert_close(t, torch.tensor([0.0, 2.0]))


def test_bits_per_dim_of_a_uniform_mixture_is_eight():
    # one logistic component per level, each sharply on its level: the mixture is uniform over 256
    centres = torch.arange(256.0) * (2 / 255) - 1
    dist = DiscretizedLogisticMixture(torch.zeros(256, 1), centres.view(256, 1), torch.full((256, 1), -10.0), event_dims=1)
    x = torch.rand(1000, 1, generator=torch.Generator().manual_seed(5))
    assert bits_per_dim(-dist.log_prob(torch.round(x * 255) / 255), 1).sub(8.0).abs().max() < 1e-5


# (f) ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_are_finite_at_extremes(kind):
    # every (location, log-scale) pair of the grid is one pixel of a 3 x 1 x 45 image
    grid = torch.meshgrid(torch.tensor([-1.5, -1.0, 0.0, 1.0, 1.5]), torch.tensor(EXTREME_LOG_SCALES), indexing="ij")
    loc, log_scale = (t.reshape(1, 1, -1) for t in grid)
    n = loc.shape[-1]
    x = torch.stack([torch.zeros(3, 1, n), torch.ones(3, 1, n), torch.full((3, 1, n), 128 / 255)])   # 3 images

    def leaf(t, *shape):
        return t.expand(*shape).clone().requires_grad_()

    if kind == "gaussian":
        params = {"loc": leaf(loc, 3, 1, n), "log_scale": leaf(log_scale, 3, 1, n)}
        dist = DiscretizedGaussian(**params)
    else:
        # two components: the extreme one, carrying the weight, and an ordinary one
        params = {"means": leaf(torch.cat([loc, torch.zeros(1, 1, n)]).unsqueeze(1), 2, 3, 1, n),
                  "log_scales": leaf(torch.cat([log_scale, torch.full((1, 1, n), -3.0)]).unsqueeze(1), 2, 3, 1, n)}
        logits = torch.tensor([20.0, -20.0]).view(2, 1, 1, 1)
        if kind == "mixture":
            params["logit_probs"] = leaf(logits, 2, 3, 1, n)
        else:
            params["logit_probs"] = leaf(logits, 2, 1, 1, n)
            params["coeffs"] = leaf(torch.tensor(0.9), 2, 3, 1, n)
        dist = DiscretizedLogisticMixture(**params)
    lp = dist.log_prob(x)
    assert lp.shape == (3,) and torch.isfinite(lp).all()
    (lp.sum() + dist.bin_log_probs(x).logsumexp(-1).sum()).backward()
    for name, p in params.items():
        assert torch.isfinite(p.grad).all(), name


# (g) ---------------------------------------------------------------------------------------------
def _check_samples(samples: torch.Tensor):
    assert samples.min() >= 0 and samples.max() <= 1
    levels = samples * 255
    assert (levels - levels.round()).abs().max() < 1e-4
    return levels.round().long()


def test_gaussian_samples_follow_the_bin_probabilities():
    # ordinary, near the black edge, beyond the white edge (piling onto 255), and sharp
    loc = torch.tensor([0.3, -0.97, 1.02, 0.1])
    log_scale = torch.tensor([0.05, 0.1, 0.2, 1e-4]).log()
    dist = DiscretizedGaussian(loc, log_scale, event_dims=1)
    torch.manual_seed(6)
    levels = _check_samples(dist.sample((20000,)))
    assert levels.shape == (20000, 4)
    probs = dist.bin_log_probs().exp().double().numpy()
    for i in range(4):
        assert _chi2_pvalue(levels[:, i].numpy(), probs[i]) > 1e-3, i
    # the test has power: the samples do not pass against a slightly wider distribution
    wider = DiscretizedGaussian(loc, log_scale + 0.1, event_dims=1).bin_log_probs().exp().double().numpy()
    assert _chi2_pvalue(levels[:, 0].numpy(), wider[0]) < 1e-6


def test_logistic_mixture_samples_follow_the_bin_probabilities():
    logits = torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])   # [D=3, K=3] -> components on dim 1
    means = torch.tensor([[-0.5, 0.2, 0.6], [-1.1, -0.9, 0.0], [0.98, 0.5, 1.2]])
    log_scales = torch.tensor([[0.05, 0.03, 0.1], [0.1, 0.02, 0.3], [0.02, 0.05, 0.2]]).log()
    dist = DiscretizedLogisticMixture(logits.T, means.T, log_scales.T, event_dims=1)   # [K, D]
    torch.manual_seed(7)
    levels = _check_samples(dist.sample((20000,)))
    assert levels.shape == (20000, 3)
    probs = dist.bin_log_probs().exp().double().numpy()
    for i in range(3):
        assert _chi2_pvalue(levels[:, i].numpy(), probs[i]) > 1e-3, i


def test_conditional_mixture_samples_follow_the_joint_log_prob():
    # one RGB pixel whose channels each spread over a few levels, so that the joint pmf of
    # (r, g, b) can be enumerated over the box the samples fall in; in the first component green
    # is all but fixed by red, which catches a sampler that shifts it by the unquantised red draw
    logits = torch.tensor([0.5, -0.5]).view(2, 1, 1, 1)
    means = torch.tensor([[0.1, -0.2, 0.3], [-0.4, 0.4, -0.95]]).view(2, 3, 1, 1)
    log_scales = torch.tensor([[0.012, 1e-4, 0.012], [0.012, 0.012, 0.012]]).log().view(2, 3, 1, 1)
    coeffs = torch.tensor([[0.8, -0.6, 0.5], [-0.9, 0.7, 0.4]]).view(2, 3, 1, 1)
    dist = DiscretizedLogisticMixture(logits, means, log_scales, coeffs)
    torch.manual_seed(8)
    levels = _check_samples(dist.sample((20000,))).view(20000, 3)
    lo, hi = levels.min(0).values, levels.max(0).values
    axes = [torch.arange(a, b + 1) for a, b in zip(lo.tolist(), hi.tolist())]
    cells = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).view(-1, 3)
    pmf = dist.log_prob(cells.view(-1, 3, 1, 1).float() / 255).exp().double().numpy()
    assert pmf.sum() > 0.999                        # the box holds (nearly) all the mass
    sizes = (hi - lo + 1).tolist()
    index = ((levels - lo) * torch.tensor([sizes[1] * sizes[2], sizes[2], 1])).sum(1)
    assert _chi2_pvalue(index.numpy(), pmf / pmf.sum()) > 1e-3


def test_conditional_mean_follows_the_samples_away_from_the_edges():
    # far from 0 and 1 the plug-in for green and blue is close to the exact mean
    logits = torch.tensor([0.3, -0.3]).view(2, 1, 1, 1)
    means = torch.tensor([[0.2, -0.3, 0.1], [-0.4, 0.3, -0.2]]).view(2, 3, 1, 1)
    log_scales = torch.full((2, 3, 1, 1), math.log(0.05))
    coeffs = torch.tensor([[0.8, -0.6, 0.5], [-0.7, 0.6, 0.4]]).view(2, 3, 1, 1)
    dist = DiscretizedLogisticMixture(logits, means, log_scales, coeffs)
    torch.manual_seed(12)
    empirical = dist.sample((20000,)).mean(0)
    torch.testing.assert_close(dist.mean, empirical, rtol=0, atol=2e-3)


# means, layout, shapes ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gaussian", "mixture"])
def test_mean_is_the_expected_level(kind):
    dist = _random(kind, torch.Generator().manual_seed(9), dtype=torch.float64)
    expected = (dist.bin_log_probs().exp() * torch.arange(256, dtype=torch.float64) / 255).sum(-1)
    torch.testing.assert_close(dist.mean, expected, rtol=1e-9, atol=1e-9)


def test_conditional_mean_is_exact_for_red_and_without_coupling():
    gen = torch.Generator().manual_seed(10)
    dist = _random("conditional", gen, dtype=torch.float64)
    x = _random_image((2, 3, 4, 4), gen, torch.float64)
    grid = torch.arange(256, dtype=torch.float64) / 255
    mean = dist.mean
    assert mean.shape == (2, 3, 4, 4) and mean.min() >= 0 and mean.max() <= 1
    torch.testing.assert_close(mean[:, 0], (dist.bin_log_probs(x)[:, 0].exp() * grid).sum(-1), rtol=1e-9, atol=1e-9)
    # with zero coefficients the channels are independent given the component: all three exact
    uncoupled = DiscretizedLogisticMixture(dist.logit_probs, dist.means, dist.log_scales, torch.zeros_like(dist.coeffs))
    marginal = DiscretizedLogisticMixture(dist.logit_probs.expand_as(dist.means), dist.means, dist.log_scales)
    torch.testing.assert_close(uncoupled.mean, (marginal.bin_log_probs().exp() * grid).sum(-1), rtol=1e-9, atol=1e-9)


def test_from_params_layout_and_num_params():
    assert num_params(10, 3, conditional=True) == 100
    assert num_params(5, 3) == 45 and num_params(5, 1) == 15
    B, K, C, H, W = 2, 4, 3, 5, 6
    gen = torch.Generator().manual_seed(11)
    logits, means, log_scales = (torch.randn(B, K, C, H, W, generator=gen) for _ in range(3))
    # component-major: channel j * C + c of each group
    packed = torch.cat([t.reshape(B, K * C, H, W) for t in (logits, means, log_scales)], dim=1)
    dist = from_params(packed, K, C)
    assert packed.shape[1] == num_params(K, C)
    for got, want in ((dist.logit_probs, logits), (dist.means, means), (dist.log_scales, log_scales)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert dist.means[1, 2, 1, 3, 4] == packed[1, K * C + 2 * C + 1, 3, 4]
    cond_logits = torch.randn(B, K, 1, H, W, generator=gen)
    raw_coeffs = torch.randn(B, K, 3, H, W, generator=gen)
    groups = [cond_logits.reshape(B, K, H, W)] + [t.reshape(B, 3 * K, H, W) for t in (means, log_scales, raw_coeffs)]
    packed = torch.cat(groups, dim=1)
    dist = from_params(packed, K, 3, conditional=True)
    assert packed.shape[1] == num_params(K, 3, conditional=True)
    torch.testing.assert_close(dist.logit_probs, cond_logits, rtol=0, atol=0)
    torch.testing.assert_close(dist.means, means, rtol=0, atol=0)
    torch.testing.assert_close(dist.coeffs, torch.tanh(raw_coeffs))
    assert dist.batch_shape == (B,) and dist.event_shape == (3, H, W)
    assert dist.sample().shape == (B, 3, H, W) and dist.log_prob(torch.rand(B, 3, H, W)).shape == (B,)
    assert dist.sample((7,)).shape == (7, B, 3, H, W)


def test_helpful_errors():
    with pytest.raises(ConfigError, match="channels=3"):
        num_params(5, 1, conditional=True)
    with pytest.raises(ConfigError):
        num_params(0, 3)
    with pytest.raises(ModelError, match="num_params"):
        from_params(torch.zeros(1, 44, 2, 2), 5, 3)
    with pytest.raises(ModelError, match="RGB"):
        grey = torch.zeros(2, 1, 4, 4)                   # K = 2 components of a 1-channel image
        DiscretizedLogisticMixture(grey, grey, grey, grey)
    with pytest.raises(ModelError, match="pass the image"):
        _random("conditional", torch.Generator().manual_seed(0)).bin_log_probs()
    with pytest.raises(ValueError):
        checked = DiscretizedGaussian(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), validate_args=True)
        checked.log_prob(torch.full((1, 1, 2, 2), 1.5))


@pytest.mark.parametrize("kind", ["logistic", "gaussian", "conditional"])
def test_image_mean_is_the_clamped_continuous_mean_within_half_a_level(kind):
    """``image_mean`` (what reconstructions and samples show): the continuous distribution's mean
    clamped to the pixel range, checked by numerical integration with scipy's densities, and within
    half a grey level of the exact discretised ``mean``."""
    from scipy import integrate

    gen = torch.Generator().manual_seed(3)
    shape = (60, 3, 3, 2, 2)
    means = torch.empty(shape, dtype=torch.float64).uniform_(-1.5, 1.5, generator=gen)
    log_scales = torch.empty(shape, dtype=torch.float64).uniform_(-7, 0.5, generator=gen)
    if kind == "gaussian":
        d = DiscretizedGaussian(means[:, 0], log_scales[:, 0])
        locs, scales, law = means[:, 0], log_scales[:, 0].exp(), stats.norm
    elif kind == "logistic":
        d = DiscretizedLogisticMixture(torch.zeros(shape, dtype=torch.float64), means, log_scales)
        locs, scales, law = means, log_scales.exp(), stats.logistic
    else:
        coeffs = torch.tanh(torch.randn(shape, generator=gen, dtype=torch.float64))
        d = DiscretizedLogisticMixture(torch.randn((60, 3, 1, 2, 2), generator=gen, dtype=torch.float64), means,
                                       log_scales, coeffs)
    assert (d.image_mean - d.mean).abs().max() <= 0.5 / 255 + 1e-9
    if kind == "conditional":
        return
    for loc, sc in list(zip(locs.flatten().tolist(), scales.flatten().tolist()))[:40]:
        def f(y, loc=loc, sc=sc):
            return min(max(y, -1.0), 1.0) * law.pdf(y, loc, sc)
        pts = sorted({-1.0, 1.0, loc})  # the peak as a breakpoint, so quad cannot miss a narrow one
        ref = sum(integrate.quad(f, a, b, epsabs=1e-12, limit=200)[0] for a, b in zip([-np.inf, *pts], [*pts, np.inf]))
        t = torch.tensor([loc], dtype=torch.float64), torch.tensor([sc], dtype=torch.float64).log()
        one = (DiscretizedGaussian(*t, event_dims=0) if kind == "gaussian" else
               DiscretizedLogisticMixture(torch.zeros(1, dtype=torch.float64), *t, event_dims=0))
        assert float(one.image_mean) == pytest.approx((ref + 1) / 2, abs=1e-7)
