"""The code-prior sampler of a VQ-VAE: the causal transformer is a normalised autoregressive
density (its probabilities of every sequence sum to 1, position t sees only the symbols before it),
the fitted prior beats the uniform code distribution on held-out grids, and sampling decodes images."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import vaelab
from vaelab.errors import ModelError
from vaelab.generate import make_sampler
from vaelab.generate.code_prior import CodeTransformer


def test_probabilities_of_every_sequence_sum_to_one():
    torch.manual_seed(0)
    net = CodeTransformer(num_codes=3, length=3, width=16, layers=1, heads=2).eval()
    seqs = torch.tensor(list(itertools.product(range(3), repeat=3)))
    with torch.no_grad():
        total = torch.exp(-net.nll(seqs).double()).sum()
    assert float(total) == pytest.approx(1.0, abs=1e-5)


def test_position_t_depends_only_on_earlier_symbols():
    torch.manual_seed(0)
    net = CodeTransformer(num_codes=5, length=6, width=16, layers=2, heads=2).eval()
    a = torch.randint(0, 5, (4, 6))
    for t in range(6):
        b = a.clone()
        b[:, t:] = torch.randint(0, 5, (4, 6 - t))
        with torch.no_grad():
            torch.testing.assert_close(net(a)[:, : t + 1], net(b)[:, : t + 1])


@pytest.fixture(scope="module")
def vq(tmp_path_factory):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.data import load_data
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vq-vae", parse_set(["data.name=digits", "train.epochs=5", "train.progress_bar=false",
                                               "model.conv_channels=[16]", "model.num_codes=16", "train.batch_size=64"]))
    run, _ = train_run(cfg, tmp_path_factory.mktemp("vq") / "run")
    return run, load_data(cfg.data, cfg.seed)


def test_fitted_prior_beats_the_uniform_codes_and_samples_images(vq, capsys):
    run, (train, _, test) = vq
    model = vaelab.load(run)
    s = make_sampler("code-prior", steps=150, width=32, heads=2).fit(model, train)  # test bits 2.13 (1.84 at 300 steps); the bound is 3
    uniform = math.log2(16)
    test_bits = s.bits_per_dim(test)
    with capsys.disabled():
        print(f"\ncode prior on digits (16 codes, 4 x 4 grid): {s.train_bits_per_dim_:.3f} bits per position on its grids, "
              f"{s.heldout_bits_per_dim_:.3f} held out, {test_bits:.3f} on the test split; uniform {uniform:.0f}")
    assert test_bits < uniform - 1 and s.heldout_bits_per_dim_ < uniform - 1
    x = s.sample(6)
    assert x.shape == (6, *model.image_shape) and float(x.min()) >= 0 and float(x.max()) <= 1
    idx = model.code_indices(test.images[:5])
    z = model.codes_to_latent(idx)
    assert torch.equal(model.latent_to_codes(z), idx)
    torch.testing.assert_close(z, model.encode(test.images[:5].float() / 255).mean)
    lp = s.log_prob_codes(z)
    with torch.no_grad():
        torch.testing.assert_close(lp, -s.prior_.nll(idx).double())


def test_cli_samples_a_vq_vae_and_the_sampler_refuses_continuous_codes(vq, tmp_path, monkeypatch):
    from vaelab.cli import main
    from vaelab.generate.code_prior import CodePriorSampler
    from vaelab.models import build, make_config

    run, (train, _, _) = vq
    monkeypatch.setattr(CodePriorSampler, "DEFAULT_STEPS", 20)  # the CLI fits with the defaults: keep it short here
    assert main(["sample", str(run), "--sampler", "code-prior", "-n", "8", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    vae = build(make_config("vae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), (1, 8, 8))
    with pytest.raises(ModelError, match="discrete codes"):
        make_sampler("code-prior").fit(vae, train)
