"""VQ-VAE (#20): the straight-through gradient, the EMA codebook against its closed form, a one-code
model that learns the mean image, dead-code restarts, and a run through the trainer."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelab.models import build, make_config

SHAPE = (1, 8, 8)


def vq(**o):
    return build(make_config("vq-vae", {"conv_channels": [8], "hidden_dim": 16, "code_dim": 3, "num_codes": 4, **o}), SHAPE)


def test_straight_through_gradient_is_the_identity_on_the_encoder_side():
    torch.manual_seed(0)
    m = vq(commitment=0.0, codebook_update="loss")
    x = torch.rand(5, *SHAPE).round()
    ze = m.encoder(x).detach().requires_grad_(True)
    q, _ = m.quantise(ze)
    zq = ze + (q - ze).detach()
    rec = -m.likelihood(m.decoder(zq)).log_prob(x)
    (g_ze,) = torch.autograd.grad(rec.sum(), ze)
    qd = q.detach().requires_grad_(True)  # the decoder's gradient at the codes themselves
    (g_q,) = torch.autograd.grad((-m.likelihood(m.decoder(qd)).log_prob(x)).sum(), qd)
    torch.testing.assert_close(g_ze, g_q)
    torch.testing.assert_close(zq, q)  # forward: the codes


def test_ema_codebook_equals_its_closed_form_running_mean():
    m = vq(num_codes=1, ema_decay=0.9, dead_after=0)
    d = 0.9
    init_sum, init_count = m.ema_sum.clone(), float(m.ema_count[0])
    v = torch.tensor([0.5, -1.0, 2.0])
    ze = v.view(1, 3, 1, 1).expand(2, 3, 4, 4).contiguous()  # 32 outputs, all equal to v, all assigned to the one code
    for t in range(1, 8):
        m.ema_update(ze, torch.zeros(2, 4, 4, dtype=torch.long))
        count = d**t * init_count + (1 - d**t) * 32
        total = d**t * init_sum[0] + (1 - d**t) * 32 * v
        torch.testing.assert_close(m.codebook.data[0], total / count)
        assert float(m.ema_count[0]) == pytest.approx(count)


def test_one_code_reconstructs_the_mean_image():
    from vaelab.data import DataConfig, load_split

    torch.manual_seed(0)
    x = load_split(DataConfig(name="digits"), "train").float()[:64]
    m = build(make_config("vq-vae", {"conv_channels": [8], "code_dim": 2, "num_codes": 1, "likelihood": "gaussian",
                                     "codebook_update": "loss", "dead_after": 0}), SHAPE)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(600):
        opt.zero_grad()
        m.loss(x).loss.backward()
        opt.step()
    r = m.eval().reconstruct(x)
    mean = x.mean(0, keepdim=True)
    assert torch.allclose(r[0], r[1:], atol=1e-6)  # one code: every image decodes to the same one
    spread = (x - mean).pow(2).mean()  # what the mean image misses of the images
    assert (r[0] - mean[0]).pow(2).mean() < 0.05 * spread


def test_dead_codes_restart_at_encoder_outputs():
    torch.manual_seed(0)
    m = vq(num_codes=4, dead_after=1)
    ze = torch.randn(2, 3, 4, 4)
    before = m.codebook.data.clone()
    m.restart_dead(ze, torch.zeros(2, 4, 4, dtype=torch.long))  # only code 0 chosen: codes 1-3 restart
    flat = ze.permute(0, 2, 3, 1).reshape(-1, 3)
    assert torch.equal(m.codebook.data[0], before[0])
    for k in (1, 2, 3):
        assert (flat == m.codebook.data[k]).all(1).any()  # each restarted code is one of the batch's outputs


def test_trains_logs_codebook_usage_and_reloads(tmp_path):
    import vaelab
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    from ..conftest import train_run_keeping_model

    cfg = RunConfig.build("vq-vae", parse_set(["data.name=digits", "model.conv_channels=[8]", "model.num_codes=16",
                                               "train.epochs=1", "train.progress_bar=false"]))
    run, metrics, trained = train_run_keeping_model(cfg, tmp_path / "run")
    assert math.isfinite(metrics["rec"])
    assert "train/perplexity" in (run / "logs" / "metrics.csv").read_text().splitlines()[0]
    m = vaelab.load(run)
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():  # the reloaded model is the trained one: same codebook, same reconstructions
        torch.testing.assert_close(m.codebook, trained.codebook, rtol=0, atol=0)
        torch.testing.assert_close(m.reconstruct(x), trained.reconstruct(x), rtol=0, atol=0)
    # codebook usage on the test split (one batch of eval_batch_size) from a histogram of its codes
    from scipy.stats import entropy

    from vaelab.data import load_data

    test = load_data(cfg.data, cfg.seed)[2]
    assert len(test) <= cfg.train.eval_batch_size
    with torch.no_grad():
        idx = m.quantise(m.encoder(test.images.float() / 255))[1]
    counts = np.bincount(idx.reshape(-1).numpy(), minlength=16)
    assert metrics["perplexity"] == pytest.approx(math.exp(entropy(counts)), rel=1e-4)
    assert metrics["codes_used"] == pytest.approx((counts > 0).mean(), abs=1e-6)
    assert m.latent_dim == cfg.model.code_dim * 4 * 4  # the flattened 4 x 4 grid of codes
    assert not m.can_sample
