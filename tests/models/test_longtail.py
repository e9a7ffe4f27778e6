"""The long tail of #19: VampPrior VAE, WAE-MMD, InfoVAE, RAE-L2 / RAE-GP, DIP-VAE and beta-VAE
capacity annealing. Each objective is checked against an independent computation (an analytic KL,
torch.autograd's Jacobian, numpy's covariance, the formula written out); each model trains an
epoch through the API on digits, logs its terms, reloads with the same outputs, and is listed with
its options by `vaelab models -v`; the capacity schedule continues where a resumed run stopped."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.autograd.functional import jacobian

import vaelab
from vaelab.errors import ConfigError, ModelError
from vaelab.models import MODELS, build, make_config
from vaelab.objectives import gaussian_kl_closed_form
from vaelab.objectives.mmd import mmd

from tests.conftest import vaelab_here

SHAPE = (1, 8, 8)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: these networks are tiny, and a second thread only spin-waits on a shared machine
    (the conftest's fixture of the same name is per test; the training runs here are per module)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def mk(name, **kw):
    torch.manual_seed(0)
    return build(make_config(name, {"arch": "mlp", "mlp_hidden": [16], "latent_dim": 3, **kw}), SHAPE)


def test_capabilities_are_declared_honestly():
    caps = {n: (MODELS[n].cls.can_sample, MODELS[n].cls.has_density) for n in ("vamp", "wae", "info-vae", "rae-l2", "rae-gp", "dip-vae")}
    assert caps == {"vamp": (True, True), "wae": (True, False), "info-vae": (True, True), "rae-l2": (False, False),
                    "rae-gp": (False, False), "dip-vae": (True, True)}


# -- VampPrior ---------------------------------------------------------------------------------------
def test_vamp_prior_is_the_mixture_of_the_pseudo_inputs_posteriors():
    m = mk("vamp", n_pseudo=7)
    u = m.pseudo_inputs
    assert isinstance(u, nn.Parameter) and u.shape == (7, *SHAPE) and 0 <= float(u.min()) and float(u.max()) <= 1
    assert any(p is u for p in m.parameters())
    z = torch.randn(11, 3)
    mu, logvar = m.posterior_params(u.clamp(0, 1))  # [K, d]
    log_comp = (-0.5 * (z[:, None] - mu) ** 2 / logvar.exp() - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
    by_hand = torch.logsumexp(log_comp, 1) - math.log(7)
    torch.testing.assert_close(m.prior().log_prob(z), by_hand)
    # the pseudo-inputs are learned: the loss reaches them
    m.train()
    m.loss(torch.rand(8, *SHAPE)).loss.backward()
    assert u.grad is not None and float(u.grad.abs().sum()) > 0
    assert m.sample(5).shape == (5, *SHAPE)


def test_vamp_with_one_standard_normal_pseudo_posterior_gives_the_vae_kl_in_expectation():
    """One pseudo-input whose posterior is N(0, I): a ReLU MLP without biases maps 0 to 0, so with
    every bias zeroed and the pseudo-input all zeros, its posterior is mu = 0, logvar = 0, while the
    data's posteriors are not. The Monte Carlo KL the contract takes for a mixture prior, averaged
    over 40,000 draws, must agree with the analytic KL to N(0, I) (0.2 to 2.3 nats here) within 5 of
    its standard errors (0.003 to 0.011 nats) and within 2%."""
    m = mk("vamp", n_pseudo=1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.Linear):
                mod.bias.zero_()
        m.logvar.weight.mul_(6.0)  # posteriors of the data far from N(0, I): a KL worth measuring
        m.mu.weight.mul_(6.0)
        m.pseudo_inputs.zero_()
    comp = m.prior().component_distribution
    assert torch.equal(comp.mean, torch.zeros(1, 3)) and torch.equal(comp.stddev, torch.ones(1, 3))
    x = torch.rand(4, *SHAPE)
    with torch.no_grad():
        q = m.encode(x)
        analytic = gaussian_kl_closed_form(q.mean, 2 * q.base_dist.scale.log())
        assert (analytic > 0.1).all(), analytic
        s = 40_000
        mc = m.kl(q, q.sample((s,)))  # [S, B]: log q(z|x) - log p(z) at each draw
    se = mc.std(0) / math.sqrt(s)
    diff = (mc.mean(0) - analytic).abs()
    assert (diff < 5 * se).all() and (diff < 0.02 * analytic).all(), (diff, se, analytic)


# -- WAE and InfoVAE ---------------------------------------------------------------------------------
def test_wae_loss_is_rec_plus_lambda_mmd_to_prior_samples():
    m = mk("wae", lambda_=3.0)
    x = torch.rand(16, *SHAPE)
    assert type(m.encode(x)).__name__ == "PointMass"  # deterministic by default
    torch.manual_seed(5)
    out = m.loss(x)
    torch.manual_seed(5)
    z = m.encode(x).mean
    rec = -m.decode(z).log_prob(x)
    ref_mmd = mmd(z, m.prior().sample((16,)), "imq")
    torch.testing.assert_close(out.terms["rec"], rec)
    torch.testing.assert_close(out.terms["mmd"], ref_mmd.expand(16))
    torch.testing.assert_close(out.loss, rec.mean() + 3.0 * ref_mmd)
    g = mk("wae", encoder_kind="gaussian", kernel="rbf")
    assert g.posterior_width() == 6 and float(g.encode(x).stddev.min()) > 0
    with pytest.raises(ModelError, match="at least 2"):
        m.loss(x[:1])


def test_info_vae_weights_follow_the_paper_and_alpha0_lambda1_is_the_vae():
    a, lam = 0.3, 50.0
    m = mk("info-vae", alpha=a, lambda_=lam)
    x = torch.rand(16, *SHAPE).round()
    torch.manual_seed(2)
    out = m.loss(x)
    t = out.terms
    torch.testing.assert_close(out.loss, t["rec"].mean() + (1 - a) * t["kl"].mean() + (a + lam - 1) * t["mmd"][0])
    torch.manual_seed(2)
    q = m.encode(x)
    z = q.rsample()
    torch.testing.assert_close(t["mmd"][0], mmd(z, m.prior().sample((16,)), "rbf"))
    # alpha = 0, lambda = 1: the MMD weight is 0 and the loss is the VAE's, for the same weights and draws
    info, vae = mk("info-vae", alpha=0.0, lambda_=1.0), mk("vae")
    torch.manual_seed(3)
    lo_info = info.loss(x).loss
    torch.manual_seed(3)
    torch.testing.assert_close(lo_info, vae.loss(x).loss)
    with pytest.raises(ConfigError, match="alpha must be <= 1"):
        make_config("info-vae", {"alpha": 1.5})
    with pytest.raises(ConfigError, match="alpha \\+ model.lambda_ - 1"):
        make_config("info-vae", {"alpha": 0.0, "lambda_": 0.5})


# -- RAE ---------------------------------------------------------------------------------------------
def test_rae_gp_penalty_is_the_decoder_jacobians_frobenius_norm():
    m = mk("rae-gp", mlp_hidden=[8], lambda_=0.5, beta=0.1)
    z = torch.randn(5, 3)
    got = m.decoder_penalty(z)
    ref = torch.stack([jacobian(lambda zi: m.decoder(zi.unsqueeze(0)).squeeze(0), z[i], create_graph=True).pow(2).sum()
                       for i in range(5)])
    torch.testing.assert_close(got, ref)
    # and its gradient, which training follows, is the reference's (the output bias has none: a Jacobian ignores it)
    params = list(m.decoder.parameters())
    ours = torch.autograd.grad(got.sum(), params, allow_unused=True)
    theirs = torch.autograd.grad(ref.sum(), params, allow_unused=True)
    for p, g1, g2 in zip(params, ours, theirs):
        zero = torch.zeros_like(p)
        torch.testing.assert_close(zero if g1 is None else g1, zero if g2 is None else g2)
    assert float(ours[0].abs().sum()) > 0
    x = torch.rand(6, *SHAPE)
    out = m.loss(x)
    code = m.code_of(x)
    torch.testing.assert_close(out.terms["zreg"], 0.5 * code.pow(2).sum(1))
    torch.testing.assert_close(out.loss, (out.terms["rec"] + 0.1 * out.terms["zreg"] + 0.5 * m.decoder_penalty(code)).mean())


def test_rae_l2_penalty_is_the_squared_norm_of_the_decoder_weights():
    m = mk("rae-l2", lambda_=0.01, beta=0.0)
    x = torch.rand(6, *SHAPE)
    out = m.loss(x)
    sq = sum(float(v.pow(2).sum()) for v in m.decoder.state_dict().values())
    assert float(out.terms["l2"][0]) == pytest.approx(sq, rel=1e-6)
    # its gradient adds 2 * lambda * theta to each decoder weight
    params = list(m.decoder.parameters())
    with_pen = torch.autograd.grad(out.loss, params)
    m.config.lambda_ = 0.0
    without = torch.autograd.grad(m.loss(x).loss, params)
    for p, a, b in zip(params, with_pen, without):
        torch.testing.assert_close(a - b, 2 * 0.01 * p.detach(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="unet"):
        make_config("rae-gp", {"arch": "unet"})


# -- DIP-VAE -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dip_type", ["i", "ii"])
def test_dip_covariance_terms_against_numpy(dip_type):
    from vaelab.models.dipvae import dip_covariance

    m = mk("dip-vae", dip_type=dip_type, lambda_od=2.0)
    assert m.config.lambda_d == (20.0 if dip_type == "i" else 2.0)  # the paper's defaults
    x = torch.rand(32, *SHAPE, generator=torch.Generator().manual_seed(4)).round()
    with torch.no_grad():
        m.mu.weight.mul_(10.0)  # codes spread out: covariances of order 1, not of float32 rounding
        mu, logvar = m.posterior_params(x)
        out = m.loss(x)
    mu_np, var_np = mu.double().numpy(), logvar.double().exp().numpy()
    cov = np.cov(mu_np, rowvar=False, bias=True)
    if dip_type == "ii":
        cov = cov + np.diag(var_np.mean(0))
    off = cov - np.diag(np.diag(cov))
    od, d = (off**2).sum(), ((np.diag(cov) - 1) ** 2).sum()
    np.testing.assert_allclose(dip_covariance(mu, logvar, dip_type).double().numpy(), cov, rtol=1e-5, atol=1e-7)
    assert od > 0.05 and d > 0.05, (od, d)
    assert float(out.terms["dip_od"][0]) == pytest.approx(od, rel=1e-4)
    assert float(out.terms["dip_d"][0]) == pytest.approx(d, rel=1e-4)
    t = out.terms
    ref = (t["rec"] + t["kl"]).mean() + 2.0 * od + m.config.lambda_d * d
    assert float(out.loss) == pytest.approx(float(ref), rel=1e-5)


# -- beta-VAE capacity annealing ---------------------------------------------------------------------
def test_capacity_rises_linearly_per_training_step_and_only_then():
    m = mk("beta-vae", capacity_max=5.0, capacity_steps=10, beta=30.0)
    x = torch.rand(8, *SHAPE).round()
    m.train()
    seen = []
    for s in range(15):
        out = m.loss(x)
        seen.append(float(out.terms["capacity"][0]))
        if s == 3:  # neither evaluation nor a forward pass without gradients is a training step
            m.eval()
            m.loss(x)
            m.train()
            with torch.no_grad():
                m.loss(x)
    assert seen == pytest.approx([min(5.0, 5.0 * s / 10) for s in range(15)])
    assert int(m.capacity_step) == 15 and "capacity_step" in m.state_dict()
    t = out.terms
    torch.testing.assert_close(out.loss, t["rec"].mean() + 30.0 * (t["kl"].mean() - 5.0).abs())
    assert "capacity_step" not in mk("beta-vae").state_dict()  # off by default: earlier runs' weights still fit
    now = mk("beta-vae", capacity_max=2.0, capacity_steps=0)
    assert float(now.loss(x).terms["capacity"][0]) == 2.0
    with pytest.raises(ConfigError, match="capacity_max"):
        mk("iwae", capacity_max=5.0)  # an objective of its own: refused rather than ignored


QUICK = ["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=3", "train.epochs=1",
         "train.batch_size=64", "train.progress_bar=false"]


def run_cfg(name, *extra):
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    return RunConfig.build(name, parse_set([*QUICK, *extra]))


def capacity_column(run_dir):
    rows = [r for r in csv.DictReader(open(run_dir / "logs" / "metrics.csv")) if r.get("train/capacity")]
    return [(int(r["step"]), float(r["train/capacity"])) for r in rows]


def test_a_resumed_run_continues_the_capacity_where_it_stopped(tmp_path):
    """C's step counter is a buffer in the state dict: the checkpoint, the weights and a resumed run carry
    it, the log shows C = min(C_max, C_max * s / steps) at every step s of both halves, and the resumed run
    ends with the weights of the uninterrupted one."""
    from vaelab.api import train_run
    from vaelab.train import CHECKPOINT

    extra = ("model.capacity_max=8", "model.capacity_steps=60")  # 21 steps an epoch: C still rising after two
    run = tmp_path / "r"
    train_run(run_cfg("beta-vae", *extra), run)
    first = capacity_column(run)
    n = len(first)
    assert n > 5 and int(vaelab.load(run).capacity_step) == n
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    assert int(ckpt["state_dict"]["model.capacity_step"]) == n
    train_run(run_cfg("beta-vae", *extra, "train.epochs=2"), run, resume=True)
    both = capacity_column(run)
    assert len(both) == 2 * n and int(vaelab.load(run).capacity_step) == 2 * n
    assert [s for s, _ in both] == list(range(2 * n))
    assert [c for _, c in both] == pytest.approx([min(8.0, 8.0 * s / 60) for s in range(2 * n)], rel=1e-6)
    straight = tmp_path / "s"
    train_run(run_cfg("beta-vae", *extra, "train.epochs=2"), straight)
    wr, ws = load_file(str(run / "model.safetensors")), load_file(str(straight / "model.safetensors"))
    assert set(wr) == set(ws) and all(torch.equal(wr[k], ws[k]) for k in ws)


# -- every new model through the API -------------------------------------------------------------------
NEW = {  # name: (extra settings, its own terms)
    "vamp": (["model.n_pseudo=5"], ("rec", "kl", "nelbo")),
    "wae": ([], ("rec", "mmd")),
    "info-vae": ([], ("rec", "kl", "nelbo", "mmd")),
    "rae-l2": ([], ("rec", "zreg", "l2")),
    "rae-gp": ([], ("rec", "zreg", "gp")),
    "dip-vae": (["model.dip_type=ii"], ("rec", "kl", "nelbo", "dip_od", "dip_d")),
    "beta-vae": (["model.capacity_max=5", "model.capacity_steps=100"], ("rec", "kl", "nelbo", "capacity")),
}


@pytest.fixture(scope="module", params=list(NEW))
def trained(request, tmp_path_factory):
    from ..conftest import train_run_keeping_model

    name = request.param
    extra, terms = NEW[name]
    cfg = run_cfg(name, *extra)
    run_dir, metrics, model = train_run_keeping_model(cfg, tmp_path_factory.mktemp(name) / "run")
    return name, cfg, run_dir, metrics, terms, model


def test_each_new_model_trains_logs_its_terms_and_reloads_with_the_same_outputs(trained):
    from vaelab.data import load_data
    from vaelab.evaluate.metrics import elbo_terms
    from vaelab.generate import make_sampler

    name, cfg, run_dir, metrics, terms, trained_model = trained
    for t in terms:  # the test-set metrics hold every term, finite
        assert t in metrics and math.isfinite(metrics[t]), (t, metrics)
    rows = [r for r in csv.DictReader(open(run_dir / "logs" / "metrics.csv")) if r.get("train/loss")]
    assert rows and all(math.isfinite(float(r[f"train/{t}"])) for r in rows for t in terms)  # every step
    model = vaelab.load(run_dir)
    assert type(model) is MODELS[name].cls and not model.training
    train, _, test = load_data(cfg.data, cfg.seed)
    again = elbo_terms(model, test, batch_size=cfg.train.eval_batch_size, seed=cfg.seed)
    for t in terms:  # the reloaded model gives the numbers the trained one gave
        assert again[t] == pytest.approx(metrics[t], rel=1e-6, abs=1e-9), t
    x = test.images[:8].float() / 255
    with torch.no_grad():  # the reloaded model reconstructs as the trained one did
        torch.testing.assert_close(model.reconstruct(x), trained_model.reconstruct(x), rtol=0, atol=0)
    if model.can_sample:
        s = model.sample(6, torch.Generator().manual_seed(0))
        assert s.shape == (6, *SHAPE) and torch.isfinite(s).all()
    else:  # an RAE generates from a density fitted to its codes after training
        with pytest.raises(ModelError, match="can_sample = False"):
            model.sample(2)
        s = make_sampler("gmm", n_components=3).fit(model, train).sample(6)
        assert s.shape == (6, *SHAPE) and torch.isfinite(s).all()


def test_models_verbose_lists_each_new_model_with_its_options():
    out = vaelab_here("models", "-v").stdout
    blocks, current = {}, None
    for line in out.splitlines():
        if line and not line.startswith(" "):
            current = line.split()[0]
            blocks[current] = []
        elif current:
            blocks[current].append(line.strip())
    expect = {
        "vamp": ["model.n_pseudo = 50"],
        "wae": ["model.encoder_kind = deterministic", "model.kernel = imq", "model.lambda_ = 10.0"],
        "info-vae": ["model.alpha = 0.0", "model.lambda_ = 1000.0", "model.kernel = rbf"],
        "rae-l2": ["model.beta = 0.0001", "model.lambda_ = 1e-07"],
        "rae-gp": ["model.beta = 0.0001", "model.lambda_ = 1e-07"],
        "dip-vae": ["model.dip_type = i", "model.lambda_od = 10.0", "model.lambda_d = 100.0"],
        "beta-vae": ["model.capacity_max = null", "model.capacity_steps = 10000"],
        "cvae": ["model.num_classes = null", "model.label_dim = 16", "model.label_dropout = 0.1"],
    }
    for name, options in expect.items():
        assert name in blocks, (name, out[:2000])
        for opt in options:
            line = next((ln for ln in blocks[name] if ln.startswith(opt + " ")), None)
            assert line is not None, (name, opt, blocks[name])
            assert len(line[len(opt):].strip()) > 10, (name, line)  # with its help text
