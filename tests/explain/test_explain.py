"""Explanations: the gradient attention of Liu et al. for any conv VAE (against a hand-written
Grad-CAM and the per-unit loop), its anomaly variant on a case where the defect must light up, the
grad2 method, and the figures."""
import pytest
import torch
import torch.nn.functional as F

from vaelab.errors import ConfigError, ModelError
from vaelab.explain import (anomaly_distance, conv_layers, explain, explanation_figure, gradcam, gradcam_anomaly,
                            normal_statistics, resolve_layer)
from vaelab.models import build, make_config

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)


def conv_vae(name="vae", seed=0, **kw):
    torch.manual_seed(seed)
    return build(make_config(name, {"arch": "conv", "conv_channels": [4], "hidden_dim": 16, "latent_dim": 3, **kw}), SHAPE).eval()


def test_conv_layers_in_the_order_encode_runs_them():
    assert conv_layers(conv_vae()) == ["encoder.features.0"]
    g2 = build(make_config("grad2vae", {"conv_channels": [2, 3], "hidden_dim": 8, "latent_dim": 2}), SHAPE)
    assert conv_layers(g2) == ["encoder.0.0", "encoder.1.0", "encoder.1.3"]  # the trunk pools (encoder.1.2) first
    assert resolve_layer(g2) == "encoder.1.3" and resolve_layer(g2, 0) == "encoder.0.0" and resolve_layer(g2, "1") == "encoder.1.0"
    bvae = conv_vae("bvae", conv_channels=[4, 4], hidden_dim=8)
    assert len(conv_layers(bvae)) >= 1  # the shared network's conv layers, run forward by encode
    with pytest.raises(ModelError, match="not a conv layer"):
        resolve_layer(g2, "decoder.last")
    with pytest.raises(ModelError, match="out of range"):
        resolve_layer(g2, 5)
    mlp = build(make_config("vae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), SHAPE)
    with pytest.raises(ModelError, match="convolutional layers"):
        gradcam(mlp, torch.rand(2, *SHAPE))


def _manual_gradcam(model, x, unit):
    """Grad-CAM written out for the conv VAE: A = the first conv stage after its activation."""
    x = x.clone().requires_grad_(True)
    a = model.encoder.features(x)  # conv + activation
    mu = model.mu(model.encoder.fc(a))
    (g,) = torch.autograd.grad(mu[:, unit].sum(), a)
    cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    return F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False).detach()


def test_gradcam_equals_the_hand_written_one_and_the_loop_over_units():
    m = conv_vae()
    x = torch.rand(5, *SHAPE)
    per_unit = [gradcam(m, x, unit=i, normalize=False) for i in range(3)]
    for i in range(3):
        torch.testing.assert_close(per_unit[i], _manual_gradcam(m, x, i))
    torch.testing.assert_close(gradcam(m, x, normalize=False), torch.stack(per_unit).mean(0))  # vectorised over units


@pytest.mark.parametrize("name", ["vae", "grad2vae", "bvae"])
def test_gradcam_shape_and_range(name):
    m = conv_vae(name) if name != "grad2vae" else build(
        make_config("grad2vae", {"conv_channels": [2, 3], "hidden_dim": 8, "latent_dim": 3}), SHAPE)
    x = torch.rand(4, *SHAPE)
    mode = m.training
    maps = gradcam(m, x)
    assert maps.shape == (4, 1, 8, 8) and not maps.requires_grad
    assert maps.min() >= 0 and maps.max() <= 1
    peaks = maps.amax((1, 2, 3))
    assert ((peaks == 1) | (peaks == 0)).all() and (peaks == 1).any()
    assert m.training == mode and all(p.grad is None for p in m.parameters())  # no side effects


def _nonnegative(model):
    """Zero biases, non-negative weights: the codes and every gradient grow with the activations."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            else:
                p.abs_()
    return model


def test_anomaly_attention_lights_up_the_defect():
    """Normal images are blank; the test image has a bright 2x2 defect. With non-negative weights
    and zero biases the conv features are zero away from the defect and every channel's pooled
    gradient of the distance is >= 0, so the map must be positive on the defect and zero far from it."""
    m = _nonnegative(conv_vae(activation="relu"))
    normal = torch.zeros(10, *SHAPE)
    stats = normal_statistics(m, normal)
    assert stats.n == 10 and torch.equal(stats.mu_mean, torch.zeros(3, dtype=torch.float64))
    x = torch.zeros(2, *SHAPE)
    x[0, 0, 5:7, 5:7] = 1.0  # the defect; image 1 stays normal
    maps = gradcam_anomaly(m, x, stats)
    defect, far = maps[0, 0, 5:7, 5:7], maps[0, 0, :3, :3]
    assert defect.min() > 0.3 and far.abs().max() == 0
    assert defect.mean() > 2 * maps[0].mean()
    assert maps[1].abs().max() == 0  # a normal image: no distance, no attention (and no NaN)
    # the distance it explains
    q = m.encode(x)
    torch.testing.assert_close(anomaly_distance(q, stats), 0.5 * q.mean.double().pow(2).sum(1).float())
    with_var = gradcam_anomaly(m, x, stats, use_var=True, standardize=True)
    assert with_var.shape == (2, 1, 8, 8) and torch.isfinite(with_var).all()


def test_explain_dispatch_and_errors(tmp_path):
    from PIL import Image

    vae = conv_vae()
    x = torch.rand(3, *SHAPE)
    torch.testing.assert_close(explain(vae, x, "gradcam"), gradcam(vae, x))
    with pytest.raises(ModelError, match="grad2vae"):
        explain(vae, x, "grad2")
    with pytest.raises(ConfigError, match="unknown explanation method"):
        explain(vae, x, "lime")
    stats = normal_statistics(vae, torch.rand(6, *SHAPE))
    with pytest.raises(ConfigError, match="gradcam"):
        explain(vae, x, "grad2", stats=stats)
    g2 = build(make_config("grad2vae", {"conv_channels": [2, 3], "hidden_dim": 8, "latent_dim": 3}), SHAPE).eval()
    torch.testing.assert_close(explain(g2, x, "grad2"), g2.attention_maps(x))
    for model, method, kw in [(vae, "gradcam", {}), (vae, "gradcam", {"stats": stats}), (g2, "grad2", {})]:
        out = explanation_figure(model, x, tmp_path / f"{method}{len(kw)}.png", method, col_titles=["a", "b", "c"], **kw)
        w, h = Image.open(out).size
        assert w > 150 and h > 150
