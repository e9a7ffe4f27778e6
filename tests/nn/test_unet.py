"""The U-Net architecture of the deterministic autoencoders: skips at every scale, wired to the
matching decoder stage, used by reconstructions and zeroed by decode(z) alone."""
import pytest
import torch

import vaelab
from vaelab.api import evaluate_run, train_run
from vaelab.config import parse_set
from vaelab.errors import ConfigError, ModelError
from vaelab.models import build, make_config
from vaelab.nn import auto_conv_channels
from vaelab.train import RunConfig


pytestmark = pytest.mark.usefixtures("one_thread")


def unet(name, shape, channels=None, **kw):
    torch.manual_seed(0)
    chans = channels or [4 + 2 * i for i in range(len(auto_conv_channels(shape[1])))]
    cfg = make_config(name, {"arch": "unet", "conv_channels": chans, "hidden_dim": 16, "latent_dim": 3, **kw})
    return build(cfg, shape)


SHAPES = [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32), (1, 64, 64), (3, 64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
def test_skips_connect_matching_scales(shape):
    c, h, w = shape
    m = unet("ae", shape)
    chans = m.config.conv_channels
    n_scales = {28: 2, 32: 3, 64: 4}[h]  # every resolution above the 7x7 / 4x4 bottleneck
    assert len(chans) == n_scales
    x = torch.rand(2, *shape)
    feats, skips = m.encoder.features_and_skips(x)
    assert [tuple(s.shape) for s in skips] == [(2, chans[s], h // 2**s, w // 2**s) for s in range(n_scales)]
    # the decoder stage at scale s concatenates its upsampled map with skip s: capture its inputs
    seen = {}
    for i, merge in enumerate(m.decoder.merges):
        merge.register_forward_hook(lambda mod, inp, out, i=i: seen.__setitem__(n_scales - 1 - i, tuple(inp[0].shape)))
    out = m.decoder(m.code(feats), skips)
    assert seen == {s: (2, 2 * chans[s], h // 2**s, w // 2**s) for s in range(n_scales)}
    assert tuple(out.shape) == (2, c, h, w)
    assert m.reconstruct(x).shape == x.shape


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64)])
def test_each_skip_reaches_the_output(shape):
    m = unet("ae", shape).eval()
    x = torch.rand(2, *shape)
    with torch.no_grad():
        h, skips = m.code_and_skips(x)
        full = m.decoder(h, skips)
        torch.testing.assert_close(m.mean_image(m.likelihood(full)), m.reconstruct(x))
        for s in range(len(skips)):
            cut = [torch.zeros_like(t) if i == s else t for i, t in enumerate(skips)]
            # at random initialisation the deepest skip's effect is small (1e-6 of outputs ~0.1 at 64x64)
            # but far above float rounding (~1e-8); an unused skip would change nothing at all
            assert (m.decoder(h, cut) - full).abs().max() > 1e-7, f"skip {s} does not reach the output"
        # decode(z) alone: every skip is zero (documented), not the reconstruction
        torch.testing.assert_close(m.decode(h).mean, m.likelihood(m.decoder(h, [torch.zeros_like(t) for t in skips])).mean)
        assert (m.decode(h).mean - m.likelihood(full).mean).abs().max() > 1e-5


def test_wrong_skips_are_refused():
    m = unet("ae", (1, 28, 28))
    x = torch.rand(2, 1, 28, 28)
    h, skips = m.code_and_skips(x)
    with pytest.raises(ModelError, match="skip"):
        m.decoder(h, skips[:1])
    with pytest.raises(ModelError, match="shape"):
        m.decoder(h, list(reversed(skips)))


def test_denoising_unet_loss_takes_skips_of_the_corrupted_input():
    m = unet("denoising-ae", (1, 28, 28), noise="masking", drop_prob=0.5)
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(1)
    out = m.loss(x)
    torch.manual_seed(1)
    noisy = m.corrupt(x)
    feats, skips = m.encoder.features_and_skips(noisy)
    ref = -m.likelihood(m.decoder(m.code(feats), skips)).log_prob(x)
    torch.testing.assert_close(out.terms["rec"], ref)
    torch.testing.assert_close(out.loss, ref.mean())


@pytest.mark.parametrize("name", ["vae", "ssvae", "beta-tcvae", "iwae"])
def test_unet_is_refused_for_variational_models(name):
    with pytest.raises(ConfigError, match="unet"):
        make_config(name, {"arch": "unet"})


def test_unet_cannot_halve_odd_maps():
    with pytest.raises(ConfigError, match="halve"):
        unet("ae", (1, 28, 28), channels=[4, 4, 4])  # 28 -> 14 -> 7 -> 3.5


def test_unet_denoising_ae_trains_and_reloads(tmp_path, figures):
    cfg = RunConfig.build("denoising-ae", parse_set([
        "data.name=digits", "data.size=16", "data.limit=300", "data.test_limit=64", "model.arch=unet",
        "model.conv_channels=[4,8]", "model.hidden_dim=16", "model.latent_dim=3", "train.epochs=1",
        "train.batch_size=64", "train.progress_bar=false"]))
    run_dir, metrics = train_run(cfg, tmp_path / "unet")
    assert metrics["rec"] == metrics["rec"] and 0 <= metrics["mse"] < 1
    model = vaelab.load(run_dir)
    assert model.config.arch == "unet" and [s[1] for s in model.decoder.skip_shapes] == [16, 8]
    again = evaluate_run(run_dir, update_report=False)
    assert again["mse"] == pytest.approx(metrics["mse"], rel=1e-6)
    assert (run_dir / "figures" / "denoising.png").is_file()
