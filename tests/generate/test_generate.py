import pytest
import torch

from vaelab.data import ImageSet
from vaelab.errors import ModelError
from vaelab.generate import interpolate, latent_traversal, make_sampler, slerp
from vaelab.models import build, make_config


def small(name="vae", d=3):
    torch.manual_seed(0)
    return build(make_config(name, {"arch": "mlp", "mlp_hidden": [16], "latent_dim": d}), (1, 6, 6)).eval()


def test_prior_sampler_is_seeded():
    m = small()
    a = make_sampler("prior", seed=1).fit(m).sample(5)
    b = make_sampler("prior", seed=1).fit(m).sample(5)
    c = make_sampler("prior", seed=2).fit(m).sample(5)
    assert a.shape == (5, 1, 6, 6) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    with pytest.raises(ModelError, match="can_sample = False"):
        make_sampler("prior").fit(small("ae"))


def test_gmm_sampler_fits_the_codes():
    m = small("ae", d=2)
    train = ImageSet.from_float(torch.rand(300, 1, 6, 6))
    s = make_sampler("gmm", seed=0, n_components=3).fit(m, train)
    z = s.sample_latents(4000)
    from vaelab.models import embed_images

    codes = embed_images(m, train)
    torch.testing.assert_close(z.mean(0), codes.mean(0), atol=0.05 * codes.std(0).max().item() + 1e-3, rtol=0)
    assert s.sample(7).shape == (7, 1, 6, 6)


def test_a_kept_gmm_draws_and_scores_as_scikit_learn_does():
    """A kept gmm is loaded without scikit-learn: its draws are scikit-learn's GaussianMixture.sample under
    the same seed, bit for bit, and its log-density is score_samples (the independent reference)."""
    m = small("ae", d=3)
    train = ImageSet.from_float(torch.rand(300, 1, 6, 6))
    fitted = make_sampler("gmm", seed=4, n_components=3).fit(m, train)
    tensors, values = fitted.fitted_state()
    kept = make_sampler("gmm", seed=4, n_components=3).load_fitted(m, tensors, values)
    assert type(kept.gmm_).__module__ == "vaelab.generate.samplers"  # not a scikit-learn object
    fitted.gmm_.random_state = 4
    ref, _ = fitted.gmm_.sample(101)
    assert torch.equal(kept.sample_latents(101), torch.from_numpy(ref).float())
    assert torch.equal(fitted.sample_latents(101), kept.sample_latents(101))
    z = torch.randn(50, 3, dtype=torch.float64) * 2
    torch.testing.assert_close(kept.log_prob_codes(z), torch.from_numpy(fitted.gmm_.score_samples(z.numpy())), rtol=1e-12, atol=1e-12)
    with pytest.raises(ModelError, match="other shapes"):
        make_sampler("gmm", seed=4, n_components=2).load_fitted(m, tensors, values)


def test_slerp_endpoints_and_norm():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    t = torch.linspace(0, 1, 5)
    p = slerp(a.expand(5, -1), b.expand(5, -1), t)
    torch.testing.assert_close(p[0], a[0])
    torch.testing.assert_close(p[-1], b[0])
    torch.testing.assert_close(p.norm(dim=1), torch.ones(5))  # stays on the unit circle


@pytest.mark.parametrize("mode", ["linear", "slerp"])
def test_interpolation_ends_at_the_reconstructions(mode):
    m = small()
    x = torch.rand(2, 1, 6, 6)
    path = interpolate(m, x[0], x[1], 6, mode)
    assert path.shape == (6, 1, 6, 6)
    torch.testing.assert_close(path[0], m.reconstruct(x[:1])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(path[-1], m.reconstruct(x[1:])[0], atol=1e-5, rtol=0)


def test_traversal_moves_one_unit_per_row():
    m = small(d=3)
    x = torch.rand(1, 6, 6)
    t = latent_traversal(m, x, span=2.0, steps=5, units=[0, 2])
    assert t.shape == (10, 1, 6, 6)
    z0 = m.embed(x.unsqueeze(0))[0]
    zs = z0.repeat(5, 1)
    zs[:, 2] = torch.linspace(-2, 2, 5)
    torch.testing.assert_close(t[5:], m.mean_image(m.decode(zs)))
