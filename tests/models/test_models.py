import pytest
import torch

from vaelab.errors import CheckpointError, ConfigError, ModelError
from vaelab.models import MODELS, build, make_config
from vaelab.models.persist import load_weights, save_weights


@pytest.mark.parametrize("name", ["ae", "vae"])
@pytest.mark.parametrize("arch", ["conv", "mlp"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 32, 32), (3, 32, 32), (3, 64, 64)])
def test_shapes_and_terms(name, arch, shape):
    m = build(make_config(name, {"arch": arch, "latent_dim": 5}), shape)
    x = torch.rand(3, *shape)
    q = m.encode(x)
    assert q.mean.shape == (3, 5)
    px = m.decode(q.rsample())
    assert px.mean.shape == (3, *shape) and px.log_prob(x).shape == (3,)
    out = m.loss(x)
    assert out.loss.ndim == 0 and all(v.shape == (3,) for v in out.terms.values())
    out.loss.backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_default_conv_vae_size_matches_reference():
    # the reference conv VAE has about 1.7 M parameters
    m = build(make_config("vae", {"latent_dim": 16}), (1, 28, 28))
    assert 1.6e6 < m.num_parameters() < 1.8e6


def test_vae_elbo_terms_are_consistent():
    m = build(make_config("vae", {"arch": "mlp"}), (1, 8, 8))
    out = m.loss(torch.rand(4, 1, 8, 8))
    torch.testing.assert_close(out.terms["nelbo"], out.terms["rec"] + out.terms["kl"])
    torch.testing.assert_close(out.loss, out.terms["nelbo"].mean())
    assert (out.terms["kl"] >= 0).all()


def test_beta_and_warmup_scale_only_the_kl():
    cfg = make_config("vae", {"arch": "mlp", "beta": 3.0})
    m = build(cfg, (1, 8, 8))
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(0)
    a = m.loss(x, kl_weight=0.5)
    torch.manual_seed(0)
    b = m.loss(x)
    torch.testing.assert_close(a.loss, (a.terms["rec"] + 1.5 * a.terms["kl"]).mean())
    torch.testing.assert_close(b.loss, (b.terms["rec"] + 3.0 * b.terms["kl"]).mean())


def test_learned_gaussian_std_is_a_parameter():
    m = build(make_config("vae", {"arch": "mlp", "likelihood": "gaussian", "learn_std": True, "gaussian_std": 0.2}), (1, 8, 8))
    assert any(n == "log_std" for n, _ in m.named_parameters())
    fixed = build(make_config("vae", {"arch": "mlp", "likelihood": "gaussian"}), (1, 8, 8))
    assert not any(n == "log_std" for n, _ in fixed.named_parameters())


def test_wrong_input_shape_is_a_clear_error():
    m = build(make_config("vae"), (1, 28, 28))
    with pytest.raises(ModelError, match=r"\(N, 1, 28, 28\)"):
        m.check_input(torch.rand(2, 3, 32, 32))


def test_unknown_model_and_bad_values():
    with pytest.raises(ConfigError, match="vae"):
        make_config("transformer")
    with pytest.raises(ConfigError, match="beta"):
        make_config("vae", {"beta": -1.0})
    with pytest.raises(ConfigError, match="valid keys"):
        make_config("vae", {"betta": 2.0})


def test_save_load_roundtrip_identical_outputs(tmp_path):
    m = build(make_config("vae"), (1, 28, 28)).eval()
    save_weights(m, tmp_path / "w.safetensors")
    m2 = load_weights(build(make_config("vae"), (1, 28, 28)), tmp_path / "w.safetensors").eval()
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(m.encode(x).mean, m2.encode(x).mean)
    assert torch.equal(m.reconstruct(x), m2.reconstruct(x))


def test_load_refuses_other_model_and_shapes(tmp_path):
    save_weights(build(make_config("ae"), (1, 28, 28)), tmp_path / "ae.safetensors")
    with pytest.raises(CheckpointError, match="'ae' model"):
        load_weights(build(make_config("vae"), (1, 28, 28)), tmp_path / "ae.safetensors")
    save_weights(build(make_config("vae", {"latent_dim": 8}), (1, 28, 28)), tmp_path / "v8.safetensors")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_weights(build(make_config("vae", {"latent_dim": 16}), (1, 28, 28)), tmp_path / "v8.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError):
        load_weights(build(make_config("vae"), (1, 28, 28)), tmp_path / "junk.safetensors")


def test_registry_lists_foundation_models():
    assert {"ae", "vae"} <= set(MODELS)
