"""Each objective of the family checked against a closed form, an identity or a reference."""
import itertools
import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from vaelab.errors import ConfigError, ModelError
from vaelab.models import MODELS, build, make_config
from vaelab.models.ae import bernoulli_kl
from vaelab.objectives import diag_gaussian, standard_normal
from vaelab.objectives.tc import log_weights, pairwise_log_q, tc_decomposition

SHAPE = (1, 8, 8)


def mk(name, n_train=500, **kw):
    torch.manual_seed(0)
    return build(make_config(name, {"arch": "mlp", "mlp_hidden": [32], "latent_dim": 4, **kw}), SHAPE, n_train=n_train)


def test_registry_has_the_family():
    assert {"ae", "linear-ae", "sparse-ae", "denoising-ae", "contractive-ae", "vae", "beta-vae", "beta-tcvae", "iwae"} <= set(MODELS)


# -- linear AE = PCA ---------------------------------------------------------------------------
def test_linear_ae_spans_pca_subspace():
    from scipy.linalg import subspace_angles
    from sklearn.decomposition import PCA

    g = torch.Generator().manual_seed(0)
    k, d = 3, 64
    basis = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    scales = torch.tensor([3.0, 2.0, 1.5] + [0.3] * (d - 3))  # a clear gap after the 3rd component
    x = (torch.randn(2000, d, generator=g) * scales) @ basis.T + 0.5  # not centred: the biases must absorb the mean
    torch.manual_seed(0)
    model = build(make_config("linear-ae", {"latent_dim": k}), (1, 8, 8))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xi = x.view(-1, 1, 8, 8)
    for _ in range(1200):
        opt.zero_grad()
        model.loss(xi).loss.backward()
        opt.step()
    pcs = PCA(k).fit(x.numpy()).components_.T
    dec = model.decoder.linear.weight.detach().numpy()  # (d, k): its column space
    angles = np.degrees(subspace_angles(dec, pcs))
    assert angles.max() < 2.0, angles


# -- sparse AE ---------------------------------------------------------------------------------
def test_bernoulli_kl_reference():
    p, q = 0.05, torch.tensor([0.05, 0.5, 0.9])
    ref = torch.tensor([0.0, 0.05 * math.log(0.1) + 0.95 * math.log(1.9), 0.05 * math.log(0.05 / 0.9) + 0.95 * math.log(0.95 / 0.1)])
    torch.testing.assert_close(bernoulli_kl(p, q), ref)


def test_sparse_penalties():
    m = mk("sparse-ae", sparsity="kl", target_rate=0.1, sparsity_weight=2.0)
    x = torch.rand(16, *SHAPE)
    out = m.loss(x)
    h = m.code_of(x)
    pen = bernoulli_kl(0.1, h.mean(0)).sum()
    torch.testing.assert_close(out.terms["sparsity"], pen.expand(16))
    torch.testing.assert_close(out.loss, out.terms["rec"].mean() + 2.0 * pen)
    m1 = mk("sparse-ae", sparsity="l1", code_activation="relu")
    torch.testing.assert_close(m1.loss(x).terms["sparsity"], m1.code_of(x).abs().sum(1))


def test_sparse_kl_needs_sigmoid_codes():
    with pytest.raises(ConfigError, match="sigmoid"):
        make_config("sparse-ae", {"code_activation": "relu"})


# -- denoising AE ------------------------------------------------------------------------------
def test_denoising_scores_against_clean_input():
    m = mk("denoising-ae", noise="masking", drop_prob=0.5)
    x = torch.rand(32, *SHAPE)
    g = torch.Generator().manual_seed(0)
    noisy = m.corrupt(x, g)
    frac = (noisy == 0).float().mean().item()
    assert 0.4 < frac < 0.6 and torch.equal(noisy[noisy != 0], x[noisy != 0])
    torch.manual_seed(5)
    out = m.loss(x)
    torch.manual_seed(5)
    rec_ref = -m.decode(m.code_of(m.corrupt(x))).log_prob(x)
    torch.testing.assert_close(out.terms["rec"], rec_ref)
    mg = mk("denoising-ae", noise="gaussian", noise_std=0.2)
    n = mg.corrupt(torch.full((64, *SHAPE), 0.5))
    assert abs((n - 0.5).std().item() - 0.2) < 0.02


@pytest.mark.parametrize("kw,msg", [({"drop_prob": 1.0}, "drop_prob"), ({"drop_prob": -0.1}, "drop_prob"), ({"noise_std": 0.0}, "noise_std")])
def test_denoising_bad_parameters(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        make_config("denoising-ae", kw)


# -- contractive AE ----------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_contractive_exact_matches_autograd_jacobian(arch):
    torch.manual_seed(0)
    shape = (1, 8, 8)
    m = build(make_config("contractive-ae", {"arch": arch, "mlp_hidden": [16], "hidden_dim": 16, "latent_dim": 3}), shape).double()
    x = torch.rand(5, *shape, dtype=torch.float64)
    ours = m.jacobian_frobenius(x)
    ref = torch.stack([jacobian(lambda xi: m.code_of(xi.unsqueeze(0)).squeeze(0), x[i]).pow(2).sum() for i in range(5)])
    torch.testing.assert_close(ours, ref)


def test_contractive_closed_form_matches_exact():
    torch.manual_seed(0)
    exact = build(make_config("contractive-ae", {"arch": "linear", "latent_dim": 3}), SHAPE).double()
    closed = build(make_config("contractive-ae", {"arch": "linear", "latent_dim": 3, "jacobian": "closed_form"}), SHAPE).double()
    closed.load_state_dict(exact.state_dict())
    x = torch.rand(6, *SHAPE, dtype=torch.float64)
    torch.testing.assert_close(closed.jacobian_frobenius(x), exact.jacobian_frobenius(x))
    with pytest.raises(ConfigError, match="one-layer sigmoid"):
        make_config("contractive-ae", {"jacobian": "closed_form"})


def test_contractive_penalty_trains_the_encoder():
    m = mk("contractive-ae", contractive_weight=1.0)
    out = m.loss(torch.rand(4, *SHAPE))
    torch.testing.assert_close(out.loss, (out.terms["rec"] + out.terms["contractive"]).mean())
    out.terms["contractive"].sum().backward()
    assert m.code[0].weight.grad.abs().sum() > 0


# -- beta-VAE ----------------------------------------------------------------------------------
def test_beta_vae_with_beta_one_is_the_vae():
    x = torch.rand(8, *SHAPE)
    vae, bvae = mk("vae"), mk("beta-vae", beta=1.0)
    bvae.load_state_dict(vae.state_dict())
    torch.manual_seed(3)
    a = vae.loss(x)
    torch.manual_seed(3)
    b = bvae.loss(x)
    assert torch.equal(a.loss, b.loss)
    assert make_config("beta-vae").beta == 4.0
    with pytest.raises(ConfigError, match="beta"):
        make_config("beta-vae", {"beta": -1.0})


# -- beta-TCVAE --------------------------------------------------------------------------------
def test_tc_terms_sum_to_the_single_sample_kl():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(10, 3, generator=g, dtype=torch.float64), torch.randn(10, 3, generator=g, dtype=torch.float64) * 0.3
    q = diag_gaussian(mu, logvar)
    z = q.sample()
    for est in ("mss", "mws"):
        t = tc_decomposition(z, mu, logvar, dataset_size=1000, estimator=est, log_pz=standard_normal(z.shape[1]).log_prob(z))
        mc_kl = q.log_prob(z) - torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1).double()
        torch.testing.assert_close(t["mi"] + t["tc"] + t["dwkl"], mc_kl)


def test_tcvae_unit_weights_match_the_vae_in_expectation():
    vae, tc = mk("vae"), mk("beta-tcvae", alpha=1.0, beta=1.0, gamma=1.0, n_train=500)
    tc.load_state_dict(vae.state_dict())
    x = torch.rand(64, *SHAPE)
    torch.manual_seed(0)
    losses = torch.stack([tc.loss(x).loss.detach() for _ in range(300)])
    torch.manual_seed(0)
    ref = torch.stack([vae.loss(x).loss.detach() for _ in range(300)])
    assert abs(losses.mean() - ref.mean()) < 3 * math.hypot(losses.std(), ref.std()) / math.sqrt(300) + 0.05


def _brute_force_q(z_i, mus, logvars):
    """(1/N) sum_n q(z_i | x_n) and its per-dimension marginals, by explicit loops."""
    n = len(mus)
    joint = sum(math.exp(sum(torch.distributions.Normal(mus[j][d], math.exp(0.5 * logvars[j][d])).log_prob(z_i[d]).item()
                             for d in range(len(z_i)))) for j in range(n)) / n
    marg = [sum(math.exp(torch.distributions.Normal(mus[j][d], math.exp(0.5 * logvars[j][d])).log_prob(z_i[d]).item())
                for j in range(n)) / n for d in range(len(z_i))]
    return joint, marg


def test_stratified_estimator_is_unbiased_by_enumeration():
    """Enumerate every minibatch {i} + (M-1 others, without replacement) of a 5-image dataset:
    the stratified estimate of q(z_i), averaged over them, equals the exact aggregate posterior."""
    g = torch.Generator().manual_seed(1)
    n, m, d = 5, 3, 2
    mus, logvars = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64) * 0.3
    zs = mus + torch.randn(n, d, generator=g, dtype=torch.float64) * torch.exp(0.5 * logvars)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        est_joint, est_marg = [], []
        for combo in itertools.combinations(others, m - 1):
            idx = torch.tensor([i, *combo])
            z = zs[idx].clone()
            z[1:] = 0  # only row 0's estimate is read; the others' samples do not matter
            mat = pairwise_log_q(z, mus[idx], logvars[idx])
            lw = log_weights(m, n, "mss", dtype=torch.float64)
            est_joint.append(torch.logsumexp(lw + mat.sum(2), 1)[0].exp().item())
            est_marg.append(torch.logsumexp(lw.unsqueeze(2) + mat, 1)[0].exp())
        joint, marg = _brute_force_q(zs[i], mus, logvars)
        assert np.mean(est_joint) == pytest.approx(joint, rel=1e-9)
        torch.testing.assert_close(torch.stack(est_marg).mean(0), torch.tensor(marg, dtype=torch.float64))


def test_weighted_estimator_matches_its_definition_by_loops():
    g = torch.Generator().manual_seed(2)
    m, n, d = 4, 100, 3
    mus, logvars = torch.randn(m, d, generator=g, dtype=torch.float64), torch.randn(m, d, generator=g, dtype=torch.float64) * 0.3
    z = mus + torch.randn(m, d, generator=g, dtype=torch.float64) * torch.exp(0.5 * logvars)
    t = tc_decomposition(z, mus, logvars, n, "mws", log_pz=standard_normal(z.shape[1], dtype=z.dtype).log_prob(z))
    for i in range(m):
        joint, marg = _brute_force_q(z[i], mus, logvars)  # mean over the M batch images
        # MWS: log q(z_i) = log (1/(N M)) sum_j q(z_i|x_j) = log(mean_j q(z_i|x_j)) - log N
        assert t["log_qz"][i].item() == pytest.approx(math.log(joint) - math.log(n), rel=1e-9)
        assert t["log_qz_marginals"][i].item() == pytest.approx(sum(math.log(v) - math.log(n) for v in marg), rel=1e-9)


def test_tcvae_requires_dataset_size_and_logs_terms():
    with pytest.raises(ModelError, match="dataset_size"):
        build(make_config("beta-tcvae", {"arch": "mlp"}), SHAPE)  # no training data, no size
    with pytest.raises(ConfigError, match="dataset_size"):
        make_config("beta-tcvae", {"dataset_size": 1})
    m = mk("beta-tcvae", n_train=500)
    assert m.config.dataset_size == 500
    assert {"mi", "tc", "dwkl", "kl", "rec"} <= set(m.loss(torch.rand(6, *SHAPE)).terms)


# -- IWAE --------------------------------------------------------------------------------------
def test_iwae_k1_equals_the_elbo():
    m = mk("iwae", k=1)
    x = torch.rand(8, *SHAPE)
    torch.manual_seed(0)
    out = m.loss(x)
    torch.manual_seed(0)
    q = m.encode(x)
    z = q.rsample((1,))[0]
    elbo = m.decode(z).log_prob(x) + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1) - q.log_prob(z)
    torch.testing.assert_close(out.terms["iwae"], -elbo)
    # and in expectation the analytic-KL ELBO of the VAE: the same seed gives both the same draws of z, so
    # per draw they differ only by the Monte Carlo KL against the closed-form one, whose mean over 400
    # draws is within four of its standard errors of 0 for each image
    n = 400
    torch.manual_seed(1)
    vals = torch.stack([m.loss(x).terms["iwae"].detach() for _ in range(n)]).double()
    torch.manual_seed(1)
    ref = torch.stack([m.loss(x).terms["nelbo"].detach() for _ in range(n)]).double()
    diff = vals - ref
    se = diff.std(0) / n ** 0.5
    assert (se > 0).all() and (diff.mean(0).abs() < 4 * se).all(), (diff.mean(0), se)


def test_iwae_bound_does_not_decrease_with_k():
    m = mk("iwae")
    x = torch.rand(32, *SHAPE)
    bounds = []
    for k in (1, 5, 50):
        m.config.k = k
        torch.manual_seed(0)
        bounds.append(-torch.stack([m.loss(x).loss.detach() for _ in range(20)]).mean().item())
    assert bounds[0] <= bounds[1] + 0.05 and bounds[1] <= bounds[2] + 0.05, bounds
    assert bounds[2] > bounds[0]


def test_iwae_rejects_k_below_one():
    with pytest.raises(ConfigError, match="k"):
        make_config("iwae", {"k": 0})
