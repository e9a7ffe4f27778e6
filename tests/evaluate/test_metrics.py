import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from vaelab.data import DataConfig, ImageSet, load_data
from vaelab.evaluate import active_units, evaluate, few_label, frechet_distance, log_likelihood, mutual_information_gap, nll, probes, reconstruction
from vaelab.models import VAE, build, make_config
from vaelab.objectives import diag_gaussian


class LinearGaussianVAE(VAE):
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I): log p(x) and p(z|x) are known in closed form."""

    exact = True

    def encode(self, x):
        w = self.decoder.linear.weight.double()
        b = self.decoder.linear.bias.double()
        s2 = math.exp(2 * float(self.log_std))
        prec = torch.eye(w.shape[1], dtype=torch.float64) + w.T @ w / s2
        cov = torch.linalg.inv(prec)
        mean = (x.flatten(1).double() - b) @ w @ cov.T / s2
        if self.exact:
            return MultivariateNormal(mean.float(), covariance_matrix=cov.float().expand(len(x), -1, -1))
        return diag_gaussian(mean.float(), torch.log(torch.diagonal(cov)).float().expand(len(x), -1))  # mean-field

    def true_log_px(self, x):
        w, b = self.decoder.linear.weight.double(), self.decoder.linear.bias.double()
        s2 = math.exp(2 * float(self.log_std))
        cov = w @ w.T + s2 * torch.eye(w.shape[0], dtype=torch.float64)
        return MultivariateNormal(b, cov).log_prob(x.flatten(1).double())


def linear_gaussian(exact=True):
    torch.manual_seed(0)
    cfg = make_config("vae", {"arch": "linear", "likelihood": "gaussian", "gaussian_std": 0.3, "latent_dim": 3})
    cfg.image_shape = [1, 3, 3]
    m = LinearGaussianVAE(cfg)
    with torch.no_grad():
        m.decoder.linear.weight.copy_(torch.randn(9, 3) * 0.5)
        m.decoder.linear.bias.copy_(torch.rand(9))
    m.exact = exact
    return m.eval()


def test_nll_exact_posterior_gives_the_true_likelihood():
    m = linear_gaussian(exact=True)
    x = torch.rand(6, 1, 3, 3)
    torch.manual_seed(1)
    est = log_likelihood(m, x, k=7, max_decoded=20)  # chunked: 20 // 6 = 3 samples per chunk
    torch.testing.assert_close(est, m.true_log_px(x), atol=1e-4, rtol=1e-5)


def test_nll_converges_and_is_an_upper_bound():
    m = linear_gaussian(exact=False)
    x = torch.rand(20, 1, 3, 3)
    true = -m.true_log_px(x)
    torch.manual_seed(2)
    errs = {}
    for k in (1, 10, 2000):
        est = -torch.stack([log_likelihood(m, x, k) for _ in range(5)]).mean(0)
        errs[k] = (est - true).mean().item()
    assert errs[2000] < errs[10] < errs[1]  # the bound tightens with k
    assert errs[2000] > -0.02 and errs[2000] < 0.05  # never (meaningfully) below the truth, and close to it


def test_nll_not_below_negative_iwae_bound_same_k():
    """The NLL estimate with k samples and the IWAE loss with k samples are the same estimator:
    their means over independent draws agree within four standard errors of the difference."""
    m = build(make_config("iwae", {"arch": "mlp", "mlp_hidden": [16], "latent_dim": 2, "k": 50}), (1, 4, 4)).eval()
    x = torch.rand(30, 1, 4, 4)
    n = 40
    torch.manual_seed(0)
    est = torch.stack([-log_likelihood(m, x, 50).mean() for _ in range(n)]).double()
    torch.manual_seed(1)
    with torch.no_grad():
        iw = torch.stack([m.loss(x).loss for _ in range(n)]).double()
    se = math.sqrt(est.var().item() / n + iw.var().item() / n)
    assert 0 < se < 0.01  # the draws differ, and 40 of them pin the means down
    assert abs(est.mean().item() - iw.mean().item()) < 4 * se, (est.mean().item(), iw.mean().item(), se)


def test_nll_metric_reports_no_bits_per_dim_for_a_continuous_density():
    """A Gaussian density of pixel values is no code length: the metric gives nats only (bits per
    dimension come with the discretised likelihoods: tests/models/test_discrete_likelihood.py)."""
    m = linear_gaussian(exact=True)
    data = ImageSet.from_float(torch.rand(8, 1, 3, 3))
    out = nll(m, data, nll_k=5)
    assert "bpd" not in out and math.isfinite(out["nll"])
    assert out["nll_images"] == 8


def test_psnr_ssim_match_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio as sk_psnr
    from skimage.metrics import structural_similarity as sk_ssim

    class Fixed(VAE):
        def reconstruct(self, x):
            g = torch.Generator().manual_seed(0)
            return (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)

    cfg = make_config("vae", {"arch": "mlp", "mlp_hidden": [8]})
    cfg.image_shape = [1, 28, 28]
    m = Fixed(cfg)
    data = load_data(DataConfig(name="digits", size=28, resize_mode="resize"))[2].limit(20)
    out = reconstruction(m, data)
    x = data.float()
    r = m.reconstruct(x)
    ref_psnr = np.mean([sk_psnr(x[i, 0].numpy(), r[i, 0].numpy(), data_range=1.0) for i in range(len(x))])
    ref_ssim = np.mean([sk_ssim(x[i, 0].numpy(), r[i, 0].numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False) for i in range(len(x))])
    assert out["psnr"] == pytest.approx(ref_psnr, rel=1e-4)
    assert out["ssim"] == pytest.approx(ref_ssim, abs=1e-4)


def test_frechet_distance_matches_scipy():
    from scipy.linalg import sqrtm

    g = np.random.default_rng(0)
    a = g.normal(size=(500, 6))
    b = g.normal(size=(400, 6)) @ g.normal(size=(6, 6)) * 0.5 + 1.0
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(torch.from_numpy(a), torch.from_numpy(a)) == pytest.approx(0, abs=1e-6)


class Oracle(VAE):
    """A stand-in whose 'latent means' and encoder features are the labels one-hot (informative)
    or noise."""

    informative = True

    def features(self, x):
        return self.embed(x)

    def embed(self, x):
        lab = (x.flatten(1)[:, 0] * 255).round().long() % 10
        g = torch.Generator().manual_seed(int(x.sum() * 1000) % 10_000)
        noise = torch.randn(len(x), 10, generator=g)
        return torch.nn.functional.one_hot(lab, 10).float() * 3 + noise * 0.1 if self.informative else noise


def oracle_data(n):
    lab = torch.arange(n) % 10
    x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8)
    x[:, 0, 0, 0] = lab.to(torch.uint8)
    return ImageSet(x, lab)


@pytest.mark.parametrize("informative", [True, False])
def test_probes_and_transfer_see_what_the_code_holds(informative):
    cfg = make_config("vae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 10})
    cfg.image_shape = [1, 4, 4]
    m = Oracle(cfg)
    m.informative = informative
    tr, te = oracle_data(600), oracle_data(300)
    p = probes(m, te, train=tr)
    f = few_label(m, te, train=tr, n_labels=200)
    if informative:
        assert p["probe_linear_acc"] > 0.95 and p["probe_mlp_acc"] > 0.9
        assert min(f["few_label_encoder_acc"], f["few_label_latent_acc"]) > 0.95 > f["few_label_pixels_acc"]
    else:
        assert p["probe_linear_acc"] < 0.25 and max(f["few_label_encoder_acc"], f["few_label_latent_acc"]) < 0.25
    assert f["few_label_repeats"] == 3 and f["few_label_n"] == 200


def test_mig_extremes():
    g = np.random.default_rng(0)
    factors = np.stack([g.integers(0, 5, 3000), g.integers(0, 8, 3000)], 1)
    perfect = np.concatenate([factors + g.normal(0, 0.01, factors.shape), g.normal(size=(3000, 3))], 1)
    assert mutual_information_gap(perfect, factors)["mig"] > 0.9
    duplicated = np.concatenate([factors[:, :1], factors[:, :1], factors[:, 1:], factors[:, 1:]], 1).astype(float)
    assert mutual_information_gap(duplicated, factors)["mig"] < 0.05
    assert mutual_information_gap(g.normal(size=(3000, 4)), factors)["mig"] < 0.05


def test_active_units_counts_units_whose_mean_varies():
    cfg = make_config("vae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 4})
    cfg.image_shape = [1, 4, 4]
    m = build(cfg)
    with torch.no_grad():
        m.mu.weight.zero_()
        m.mu.weight[0].fill_(5.0)  # only unit 0 depends on x
        m.mu.bias.zero_()
    data = ImageSet.from_float(torch.rand(200, 1, 4, 4))
    assert active_units(m, data)["active_units"] == 1.0
    assert active_units(build(make_config("ae", {"arch": "mlp"}), (1, 4, 4)), data) == {}


def test_evaluate_all_on_a_tiny_run():
    from vaelab.config import parse_set
    from vaelab.train import RunConfig, fit

    cfg = RunConfig.build("vae", parse_set(["data.name=shapes", "model.latent_dim=4", "train.epochs=1", "train.progress_bar=false"]))
    import tempfile

    model, (tr, _, te) = fit(cfg, tempfile.mkdtemp() + "/r")
    out = evaluate(model, te, ["all"], train=tr, nll_k=20, fid_images=60, n_labels=100)
    assert "bpd" not in out  # a Bernoulli likelihood of grey levels is no mass over the 256 levels
    for key in ("nelbo", "mse", "psnr", "ssim", "active_units", "nll", "rfid_lenet", "fid_lenet", "fid_lenet_gmm",
                "probe_linear_acc", "probe_mlp_acc", "few_label_encoder_acc", "few_label_latent_acc", "few_label_pixels_acc", "mig"):
        assert key in out, key
    assert 0 <= out["mig"] <= 1
    # values, not ranges: MSE and PSNR from the reconstructions in numpy, and the k=20 importance-sampled NLL
    # below the negative ELBO it tightens (by more than the noise of a 1-epoch model's test-set mean)
    x = (te.images.float() / 255).to(torch.float32)
    with torch.no_grad():
        r = model.eval().reconstruct(x)
    err = ((r - x).double().numpy() ** 2).reshape(len(x), -1).mean(1)
    assert out["mse"] == pytest.approx(err.mean(), rel=1e-5)
    assert out["psnr"] == pytest.approx(np.mean(10 * np.log10(1 / err)), rel=1e-5)
    assert 0 < out["nll"] < out["nelbo"] - 0.1, (out["nll"], out["nelbo"])
