"""A code that is a map (model.latent_channels = C > 0): C channels at the last conv stage's
resolution, its vector the map flattened, with 3x3 conv heads instead of a fully connected
bottleneck. Checked: the code's size from the image and the conv stages, parameter counts to the
weight, the bidirectional head's transpose as the adjoint of its forward map, refusals that name
the fix, and runs that train, reload and evaluate through the API and the CLI."""
import json
import math

import pytest
import torch

import vaelab
from vaelab.errors import ConfigError
from vaelab.models import build, make_config, models_with
from vaelab.nn import BiMapHead, MapHead, code_map_shape

COLOUR = {"arch": "resnet", "likelihood": "dlogistic", "channel_conditioning": True, "conv_channels": [64, 128],
          "latent_channels": 8}


def test_the_code_size_comes_from_the_map():
    assert code_map_shape((3, 32, 32), [64, 128], 8) == (8, 8, 8)
    assert code_map_shape((3, 32, 32), None, 4) == (4, 4, 4)  # auto channels: three stages, 32 -> 4
    assert code_map_shape((1, 28, 28), [16], 2) == (2, 14, 14)
    m = build(make_config("vae", COLOUR), (3, 32, 32))
    assert m.latent_dim == 512 and m.config.latent_dim == 512
    q = m.encode(torch.rand(3, 3, 32, 32))
    assert q.mean.shape == (3, 512) and m.decode(q.mean).log_prob(torch.rand(3, 3, 32, 32)).shape == (3,)
    # a latent_dim that disagrees with the map is refused with the number to use
    with pytest.raises(ConfigError, match="model.latent_dim=512"):
        build(make_config("vae", {**COLOUR, "latent_dim": 64}), (3, 32, 32))
    assert build(make_config("vae", {**COLOUR, "latent_dim": 512}), (3, 32, 32)).latent_dim == 512


@pytest.mark.parametrize("arch", ["conv", "resnet"])
def test_parameter_counts_to_the_weight(arch):
    cfg = {**COLOUR, "arch": arch}
    uni = build(make_config("vae", cfg), (3, 32, 32))
    c = 128  # the last stage's channels
    head = 9 * c * 8 + 8
    assert sum(p.numel() for p in uni.mu.parameters()) == head == sum(p.numel() for p in uni.logvar.parameters())
    assert uni.num_parameters() == sum(p.numel() for p in [*uni.encoder.parameters(), *uni.decoder.parameters()]) + 2 * head
    # no fully connected layer anywhere near the code
    assert not any(isinstance(mod, torch.nn.Linear) for mod in uni.modules())
    twin = build(make_config("bvae", cfg), (3, 32, 32))
    # the twin: one kernel for the mean head and its transpose (+ a bias per direction), a forward-only log-variance head
    assert sum(p.numel() for p in twin.net.head.parameters()) == 9 * c * 8 + 8 + c
    ratio = twin.num_parameters() / uni.num_parameters()
    assert 0.45 <= ratio <= 0.6, ratio


def test_the_bidirectional_head_transpose_is_the_adjoint():
    torch.manual_seed(0)
    head = BiMapHead((6, 4, 4), 3).double()
    with torch.no_grad():
        head.conv.bias_f.normal_()
        head.conv.bias_b.normal_()
    h, z = torch.randn(2, 6 * 16, dtype=torch.float64), torch.randn(2, 3 * 16, dtype=torch.float64)
    fwd = head(h) - head.conv.bias_f.repeat_interleave(16)
    bwd = head.backward(z) - head.conv.bias_b.repeat_interleave(16)
    torch.testing.assert_close((fwd * z).sum(), (h * bwd).sum())
    # the unidirectional head is the same map with weights of its own
    uni = MapHead((6, 4, 4), 3).double()
    with torch.no_grad():
        uni.conv.weight.copy_(head.conv.weight)
        uni.conv.bias.copy_(head.conv.bias_f)
    torch.testing.assert_close(uni(h), head(h))


def test_refusals_name_the_fix():
    have = models_with("code_maps")
    assert {"vae", "beta-vae", "beta-tcvae", "iwae", "bvae", "beta-bvae", "beta-tcbvae", "biwae"} <= set(have)
    assert not {"cvae", "grad2vae", "vae-iaf", "ae"} & set(have)
    with pytest.raises(ConfigError, match="vector only.*Models whose code can be a map: .*bvae"):
        build(make_config("cvae", {"arch": "conv", "latent_channels": 2}), (1, 8, 8), num_classes=3)
    with pytest.raises(ConfigError, match="model.arch=conv or resnet"):
        make_config("vae", {"arch": "mlp", "latent_channels": 2})
    with pytest.raises(ConfigError, match="must be >= 0"):
        make_config("vae", {"arch": "conv", "latent_channels": -1})
    with pytest.raises(ConfigError, match="your own encoder"):
        build(make_config("vae", {"arch": "conv", "latent_channels": 2}), (1, 8, 8),
              encoder=torch.nn.Flatten(), decoder=torch.nn.Unflatten(1, (1, 8, 8)))


@pytest.mark.parametrize("name", ["vae", "bvae", "biwae"])
def test_a_map_code_trains_reloads_and_evaluates(tmp_path, name):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build(name, parse_set(["data.name=digits", "model.arch=conv", "model.conv_channels=[8]",
                                           "model.latent_channels=2", "train.epochs=1", "train.batch_size=64",
                                           "train.progress_bar=false"]))
    run, m = train_run(cfg, tmp_path / "run")
    assert math.isfinite(m["nelbo"]) and m["kl"] > 0
    model = vaelab.load(run)
    assert model.latent_dim == 2 * 4 * 4  # digits are 8x8: one stage to 4x4
    x = torch.rand(5, 1, 8, 8).round()
    q = model.encode(x)
    assert q.mean.shape == (5, 32)
    assert model.sample(3).shape == (3, 1, 8, 8)
    # one importance weight is log p(x|z) + log p(z) - log q(z|x) at the same draw of z, written out here
    torch.manual_seed(0)
    lw, _ = model.log_weights(x, 1, q)
    torch.manual_seed(0)
    z = q.rsample((1,))[0]
    ref = model.decode(z).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)
    assert lw.shape == (1, 5) and torch.isfinite(lw).all()
    torch.testing.assert_close(lw[0], ref)


def test_the_cli_trains_a_map_code(tmp_path, capsys):
    from vaelab.cli import main

    out = tmp_path / "run"
    main(["train", "vae", "--data", "digits", "--epochs", "1", "--out", str(out), "--set", "model.arch=conv",
          "--set", "model.latent_channels=2", "--set", "train.progress_bar=false"])
    cfg = (out / "config.yaml").read_text()
    assert "latent_channels: 2" in cfg and "latent_dim: 32" in cfg
    assert math.isfinite(json.loads((out / "metrics.json").read_text())["nelbo"])
    capsys.readouterr()
    assert main(["train", "vae", "--data", "digits", "--epochs", "1", "--latent-dim", "16", "--out", str(tmp_path / "bad"),
                 "--set", "model.arch=conv", "--set", "model.latent_channels=2"]) != 0
    assert "model.latent_dim=32" in capsys.readouterr().err
