"""Fitted samplers kept in the run directory (vaelab.generate.cache): a kept fit draws exactly what the
fresh one draws under the same seed; other weights or another option make another key; an entry
reached through a symlink, or one that does not load, is fitted again; `vaelab sample` keeps and
reuses, and says how far a long fit is."""
from __future__ import annotations

import logging
import shutil

import pytest
import torch

import vaelab
from vaelab.generate import fit_sampler, make_sampler, sampler_key

FITTED = {"gmm": {"n_components": 3}, "maf": {"steps": 15, "transforms": 2, "hidden": [16]},
          "iaf": {"steps": 5, "transforms": 1, "hidden": [8]}, "two-stage": {"steps": 15, "hidden": [16]}}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread, no spin-waiting on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _train(root, name, extra):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.data import load_data
    from vaelab.train import RunConfig

    cfg = RunConfig.build(name, parse_set(["data.name=digits", "train.epochs=1", "train.progress_bar=false", "data.limit=400",
                                           "train.batch_size=64", *extra]))
    run, _ = train_run(cfg, root / name)
    return run, load_data(cfg.data, cfg.seed)[0]


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("cache"), "vae", ["model.arch=mlp", "model.mlp_hidden=[32]", "model.latent_dim=3"])


@pytest.fixture(scope="module")
def vq(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("cache"), "vq-vae", ["model.conv_channels=[8]", "model.num_codes=8"])


@pytest.fixture
def notes(caplog):
    caplog.set_level(logging.INFO, logger="vaelab")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "vaelab"]


def _must_not_fit(monkeypatch, name):
    cls = type(make_sampler(name))

    def refuse(self, *a, **k):
        raise AssertionError(f"the {name} sampler was fitted again")

    monkeypatch.setattr(cls, "fit", refuse)


@pytest.mark.parametrize("name", sorted(FITTED))
def test_a_kept_sampler_draws_what_the_fresh_one_draws(vae, name, monkeypatch, notes):
    run, train = vae
    model = vaelab.load(run)
    fresh = make_sampler(name, seed=3, **FITTED[name]).fit(model, train)
    first = fit_sampler(name, model, train, run, seed=3, **FITTED[name])  # fitted and kept
    assert (run / "samplers" / sampler_key(first, run) / "sampler.safetensors").is_file()
    _must_not_fit(monkeypatch, name)
    kept = fit_sampler(name, vaelab.load(run), lambda: pytest.fail("the training images were loaded"), run, seed=3, **FITTED[name])
    assert any(n.startswith(f"reusing the {name} sampler") for n in notes())
    torch.testing.assert_close(kept.sample(16), fresh.sample(16), rtol=0, atol=0)
    z = torch.randn(5, 3)
    torch.testing.assert_close(kept.log_prob_codes(z), fresh.log_prob_codes(z), rtol=0, atol=0)


def test_a_kept_code_prior_draws_what_the_fresh_one_draws(vq, monkeypatch):
    run, train = vq
    opts = {"steps": 5, "width": 16, "heads": 2, "layers": 1, "seed": 1}
    fresh = make_sampler("code-prior", **opts).fit(vaelab.load(run), train)
    fit_sampler("code-prior", vaelab.load(run), train, run, **opts)
    _must_not_fit(monkeypatch, "code-prior")
    kept = fit_sampler("code-prior", vaelab.load(run), None, run, **opts)
    torch.testing.assert_close(kept.sample(8), fresh.sample(8), rtol=0, atol=0)
    assert kept.heldout_bits_per_dim_ == fresh.heldout_bits_per_dim_


def test_other_weights_or_another_option_is_another_key(vae, tmp_path):
    run, _ = vae
    key = sampler_key(make_sampler("gmm", seed=0), run)
    assert sampler_key(make_sampler("gmm", seed=0), run) == key
    assert sampler_key(make_sampler("gmm", seed=1), run) != key
    assert sampler_key(make_sampler("gmm", seed=0, n_components=4), run) != key
    assert sampler_key(make_sampler("maf", seed=0), run) != key
    other = tmp_path / "other"
    shutil.copytree(run, other)
    w = other / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-1] + bytes([w.read_bytes()[-1] ^ 1]))  # one bit of the weights file
    assert sampler_key(make_sampler("gmm", seed=0), other) != key


def test_a_symlinked_entry_is_not_used(vae, tmp_path, notes):
    run, train = vae
    mine = tmp_path / "mine"
    shutil.copytree(run, mine, ignore=shutil.ignore_patterns("samplers"))
    s = fit_sampler("gmm", vaelab.load(mine), train, mine, n_components=2)  # kept in mine/samplers/KEY
    key = sampler_key(s, mine)
    theirs = tmp_path / "theirs"
    shutil.copytree(run, theirs, ignore=shutil.ignore_patterns("samplers"))
    (theirs / "samplers").mkdir()
    (theirs / "samplers" / key).symlink_to(mine / "samplers" / key)
    before = notes()
    fit_sampler("gmm", vaelab.load(theirs), train, theirs, n_components=2)
    new = notes()[len(before):]
    assert any("symlink" in n for n in new) and any(n.startswith("fitting the gmm sampler") for n in new)
    assert (theirs / "samplers" / key).is_symlink()  # nothing written through it


def test_a_damaged_entry_is_fitted_again(vae, tmp_path, notes):
    run, train = vae
    mine = tmp_path / "run"
    shutil.copytree(run, mine, ignore=shutil.ignore_patterns("samplers"))
    s = fit_sampler("gmm", vaelab.load(mine), train, mine, n_components=2)
    (mine / "samplers" / sampler_key(s, mine) / "sampler.safetensors").write_bytes(b"not tensors")
    again = fit_sampler("gmm", vaelab.load(mine), train, mine, n_components=2)
    assert any("does not load" in n for n in notes())
    torch.testing.assert_close(again.sample(4), s.sample(4), rtol=0, atol=0)


def test_the_command_keeps_and_reuses_and_reports_a_long_fit(vq, tmp_path, monkeypatch, capsys):
    """`vaelab sample RUN --sampler code-prior` says how far its fit is (every line with EVERY_S at 0),
    keeps it, and the second call draws the same images without fitting; --quiet silences the lines."""
    import vaelab.progress
    from vaelab.cli import main
    from vaelab.generate import CodePriorSampler

    run, _ = vq
    monkeypatch.setattr(CodePriorSampler, "DEFAULT_STEPS", 6)
    monkeypatch.setattr(vaelab.progress, "EVERY_S", 0.0)
    shutil.rmtree(run / "samplers", ignore_errors=True)
    assert main(["sample", str(run), "--sampler", "code-prior", "-n", "8", "--out", str(tmp_path / "a.png")]) == 0
    err = capsys.readouterr().err
    assert "fitting the code-prior sampler: 3/6 steps (50%)" in err and "done, 6/6 steps" in err
    assert main(["sample", str(run), "--sampler", "code-prior", "-n", "8", "--out", str(tmp_path / "b.png")]) == 0
    assert "reusing the code-prior sampler" in capsys.readouterr().err
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    shutil.rmtree(run / "samplers")
    assert main(["sample", str(run), "--sampler", "code-prior", "-n", "8", "--out", str(tmp_path / "c.png"), "--quiet"]) == 0
    assert "fitting" not in capsys.readouterr().err


def test_a_run_without_its_weights_file_fits_without_keeping(vae, tmp_path, notes):
    run, train = vae
    bare = tmp_path / "bare"
    bare.mkdir()
    s = fit_sampler("gmm", vaelab.load(run), train, bare, n_components=2)
    assert s.sample(2).shape[0] == 2 and not (bare / "samplers").exists()
    assert any("fitted without keeping it" in n for n in notes())
