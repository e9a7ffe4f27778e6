"""vae-iaf (#19): the posterior's log-density against zuko's own inversion and against the change of
variables written out with torch.autograd's Jacobian; with no transforms it is the VAE, and with the
identity-initialised transforms its Monte Carlo KL has the VAE's analytic KL as its expectation; it
trains an epoch on digits through the API, scores a finite NLL, and reloads with the same outputs."""
from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian
from torch.distributions import Independent
from vaelab._zuko import zuko

import vaelab
from vaelab.config import field_help
from vaelab.errors import ConfigError
from vaelab.models import MODELS, build, make_config
from vaelab.models.vae_iaf import IAFPosterior, VAEIAFConfig
from vaelab.objectives import gaussian_kl_closed_form

SHAPE = (1, 8, 8)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: tiny models, one torch thread


def mk(name="vae-iaf", **kw):
    torch.manual_seed(0)
    return build(make_config(name, {"arch": "mlp", "mlp_hidden": [16], "latent_dim": 3, "flow_hidden": [8, 8], **kw}
                             if name == "vae-iaf" else {"arch": "mlp", "mlp_hidden": [16], "latent_dim": 3, **kw}), SHAPE).eval()


def scramble_flow(m, scale=0.5):
    """Random last layers: transforms far from the identity (they start at it)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for step in m.flow.transforms:
            last = step.hyper[-1]
            last.weight.copy_(scale * torch.randn(last.weight.shape, generator=g))
            last.bias.copy_(scale * torch.randn(last.bias.shape, generator=g))


def test_registered_with_its_options_and_capabilities():
    spec = MODELS["vae-iaf"]
    assert spec.cls.can_sample and spec.cls.has_density
    c = VAEIAFConfig()
    assert (c.flow_transforms, c.flow_hidden) == (2, [64, 64])
    helps = field_help(VAEIAFConfig)
    assert "inverse autoregressive" in helps["flow_transforms"] and "MADE" in helps["flow_hidden"]
    with pytest.raises(ConfigError, match="flow_transforms"):
        make_config("vae-iaf", {"flow_transforms": -1})
    with pytest.raises(ConfigError, match="flow_hidden"):
        make_config("vae-iaf", {"flow_hidden": []})


def test_posterior_log_prob_is_zukos_log_density_and_the_change_of_variables():
    m = mk(latent_dim=2)
    scramble_flow(m)
    x = torch.rand(4, *SHAPE)
    q = m.encode(x)
    assert isinstance(q, IAFPosterior) and isinstance(q, zuko.distributions.NormalizingFlow) and q.batch_shape == (4,) and q.event_shape == (2,)
    # the value kept with rsample is zuko's own log-density of that sample, computed by inverting the flow
    z = q.rsample((5,))
    assert z.shape == (5, 4, 2)
    kept = q.log_prob(z)
    torch.testing.assert_close(kept, zuko.distributions.NormalizingFlow.log_prob(q, z), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(q.log_prob(z.clone()), kept, atol=1e-4, rtol=1e-5)  # another tensor: inverted, same value
    # the change of variables written out: z = f(z0), log q(z) = log N(z0; mu, sigma) - log |det df/dz0|
    z0 = q.gaussian.sample()  # [4, 2]
    zz = q.transform.inv(z0)
    direct = []
    for i in range(4):
        def f(v, i=i):
            rows = z0.clone()
            rows[i] = v
            return q.transform.inv(rows)[i]

        jac = jacobian(f, z0[i])
        direct.append(q.gaussian.log_prob(z0)[i] - torch.linalg.slogdet(jac)[1])
    torch.testing.assert_close(q.log_prob(zz), torch.stack(direct), atol=1e-4, rtol=1e-5)
    # the flow is not the identity here: the density differs from the Gaussian's
    assert float((q.log_prob(zz) - q.gaussian.log_prob(z0)).abs().max()) > 1e-2


def test_one_transform_is_autoregressive_in_its_unit_order():
    """One IAF step: z1_i depends on z0_j for j <= i only (a lower-triangular Jacobian)."""
    m = mk(latent_dim=3, flow_transforms=1, flow_hidden=[32, 32])
    scramble_flow(m)
    q = m.encode(torch.rand(1, *SHAPE))
    z0 = q.gaussian.sample()
    jac = jacobian(lambda v: q.transform.inv(v[None])[0], z0[0])
    assert torch.equal(jac.triu(1), torch.zeros(3, 3)) and float(jac.tril(-1).abs().sum()) > 0


def test_zero_transforms_is_the_vae():
    vae, iaf = mk("vae"), mk(flow_transforms=0)
    assert iaf.flow is None and set(iaf.state_dict()) == set(vae.state_dict())
    iaf.load_state_dict(vae.state_dict())
    x = torch.rand(6, *SHAPE)
    q, p = iaf.encode(x), vae.encode(x)
    assert type(q) is Independent
    torch.testing.assert_close(iaf.kl(q), vae.kl(p))  # analytic, both
    torch.manual_seed(3)
    a = iaf.loss(x).terms
    torch.manual_seed(3)
    b = vae.loss(x).terms
    for k in b:
        torch.testing.assert_close(a[k], b[k])


def test_identity_initialised_transforms_give_the_vae_kl_in_expectation():
    """At initialisation each transform is the identity: the posterior's density and mean are the
    Gaussian's, and the one-sample Monte Carlo KL the contract takes for a flow, averaged over
    40,000 draws, agrees with the VAE's analytic KL within 5 standard errors."""
    vae, iaf = mk("vae"), mk()
    missing = iaf.load_state_dict(vae.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("flow.") for k in missing)
    with torch.no_grad():
        vae.logvar.weight.mul_(4.0)
        iaf.logvar.weight.mul_(4.0)
    x = torch.rand(5, *SHAPE)
    q, p = iaf.encode(x), vae.encode(x)
    assert isinstance(q, IAFPosterior)
    torch.testing.assert_close(q.mean, p.mean)
    z = p.sample((7,))
    torch.testing.assert_close(q.log_prob(z), p.log_prob(z))
    analytic = gaussian_kl_closed_form(p.base_dist.loc, 2 * p.base_dist.scale.log())
    torch.testing.assert_close(vae.kl(p), analytic)
    torch.manual_seed(0)
    with torch.no_grad():
        draws = torch.stack([iaf.kl(q) for _ in range(40)])  # [40, 5]: one fresh draw each
        zs = q.rsample((40_000,))
        mc = q.log_prob(zs) - iaf.prior().log_prob(zs)  # [40000, 5]
    assert torch.isfinite(draws).all()
    se = mc.std(0) / math.sqrt(len(mc))
    assert ((mc.mean(0) - analytic).abs() < 5 * se).all(), (mc.mean(0), analytic, se)


def test_posterior_refuses_the_moments_it_has_no_closed_form_for():
    from vaelab.explain.gradcam import _variance

    m = mk()
    q = m.encode(torch.rand(2, *SHAPE))
    for what in ("variance", "stddev"):
        with pytest.raises(NotImplementedError, match="no closed-form"):
            getattr(q, what)
    with pytest.raises(NotImplementedError, match="no closed-form entropy"):
        q.entropy()
    assert _variance(q) is None  # the explain stage's use of the variance skips it
    assert m.embed(torch.rand(3, *SHAPE)).shape == (3, 3)


def test_trains_an_epoch_evaluates_a_finite_nll_and_reloads(tmp_path):
    from vaelab.api import evaluate_run, train_run
    from vaelab.config import parse_set
    from vaelab.data import load_data
    from vaelab.detect.scores import NELBOScore, NLLScore, score_images
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vae-iaf", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=3",
                                                "model.flow_hidden=[16,16]", "train.epochs=1", "train.batch_size=64",
                                                "train.progress_bar=false"]))
    run, metrics = train_run(cfg, tmp_path / "run")
    assert all(math.isfinite(metrics[t]) for t in ("rec", "kl", "nelbo"))
    nll = evaluate_run(run, ["nll"], update_report=False, nll_k=50, nll_images=64)
    assert math.isfinite(nll["nll"]) and nll["nll"] > 0
    model = vaelab.load(run)
    assert type(model) is MODELS["vae-iaf"].cls and model.flow is not None and len(model.flow.transforms) == 2
    assert nll == evaluate_run(run, ["nll"], update_report=False, nll_k=50, nll_images=64)  # seeded: the same number
    _, _, test = load_data(cfg.data, cfg.seed)
    x = test.images[:16].float() / 255
    torch.testing.assert_close(model.reconstruct(x), vaelab.load(run).reconstruct(x))
    for score in (NELBOScore(), NLLScore(nll_k=20)):
        s = score_images(model, score.fit(model, test.images[:32]), test.images[:32])
        assert s.shape == (32,) and torch.isfinite(s).all()
    trained = [p for n, p in model.named_parameters() if n.startswith("flow.") and n.endswith("weight")]
    assert any(float(p.abs().sum()) > 0 for p in trained[-1:])  # the zero-initialised last layer has moved


def test_importing_vaelab_leaves_torch_distributions_validation_as_it_was():
    """zuko turns torch.distributions' argument checks off for the whole process when imported;
    vaelab imports it through vaelab._zuko, which puts torch's default back."""
    import subprocess
    import sys

    code = ("from torch.distributions import Distribution as D; before = D._validate_args; "
            "import vaelab.models.vae_iaf, vaelab.generate.flows, vaelab.models; vaelab.models.discover(); "
            "import zuko; assert D._validate_args == before is True, (before, D._validate_args)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-1500:]


def test_one_latent_unit():
    m = mk(latent_dim=1)
    scramble_flow(m)
    q = m.encode(torch.rand(3, *SHAPE))
    z = q.rsample((4,))
    torch.testing.assert_close(q.log_prob(z), q.log_prob(z.clone()), atol=1e-5, rtol=1e-5)
    assert m.loss(torch.rand(3, *SHAPE)).loss.isfinite()
