"""Bidirectional VAEs: one weight per layer run forward (encoder) and backward (decoder).

Checked against independent references: the transposes are the adjoints of the forward maps
(<A x, y> = <x, A^T y>) and equal torch's conv_transpose2d / y @ W; gradients of both directions
add up in one Parameter; the parameter budget is about half of the unidirectional twin's; the
losses are the unidirectional objectives evaluated on (q_f, p_b); every model trains and reloads.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal

import vaelab
from vaelab.errors import ConfigError, ModelError
from vaelab.models import MODELS, build, make_config
from vaelab.models.bvae import BIWAE, BVAE, BetaTCBVAE, BVAEConfig
from vaelab.nn import BiConv2d, BiLinear, BiResBlock, auto_conv_channels
from vaelab.objectives import diag_gaussian, gaussian_kl_closed_form, kl_to_prior, standard_normal

BIDIRECTIONAL = ["bvae", "beta-bvae", "beta-tcbvae", "biwae"]
TWIN = {"bvae": "vae", "beta-bvae": "beta-vae", "beta-tcbvae": "beta-tcvae", "biwae": "iwae"}
SMALL = {"mlp_hidden": [32, 16], "hidden_dim": 24, "latent_dim": 4}
SHAPE = (1, 8, 8)


def small(name, arch="mlp", shape=SHAPE, n_train=500, seed=0, **kw):
    torch.manual_seed(seed)
    chans = [4 * 2 ** i for i in range(len(auto_conv_channels(shape[1])))]
    return build(make_config(name, {**SMALL, "arch": arch, "conv_channels": chans, **kw}), shape, n_train=n_train)


def _randomise_biases(layer):
    with torch.no_grad():
        layer.bias_f.normal_()
        layer.bias_b.normal_()
    return layer


# -- the layers --------------------------------------------------------------------------------
def test_bilinear_forward_is_x_Wt_and_backward_is_y_W():
    torch.manual_seed(0)
    layer = _randomise_biases(BiLinear(5, 3).double())
    x, y = torch.randn(4, 5, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    w = layer.weight
    assert w.shape == (3, 5)
    torch.testing.assert_close(layer(x), x @ w.T + layer.bias_f)
    torch.testing.assert_close(layer.backward(y), y @ w + layer.bias_b)
    # the backward map is the adjoint of the forward one: <W x, y> = <x, W^T y>
    lhs = ((layer(x) - layer.bias_f) * y).sum()
    rhs = (x * (layer.backward(y) - layer.bias_b)).sum()
    torch.testing.assert_close(lhs, rhs)


@pytest.mark.parametrize("k,stride,pad,size", [(4, 2, 1, 8), (3, 1, 1, 8), (3, 2, 0, 9)])
def test_biconv_backward_is_conv_transpose_with_the_forward_kernel(k, stride, pad, size):
    torch.manual_seed(0)
    layer = _randomise_biases(BiConv2d(2, 5, k, stride, pad).double())
    x = torch.randn(3, 2, size, size, dtype=torch.float64)
    fx = layer(x)
    torch.testing.assert_close(fx, F.conv2d(x, layer.weight, layer.bias_f, stride, pad))
    y = torch.randn_like(fx)
    bx = layer.backward(y)
    torch.testing.assert_close(bx, F.conv_transpose2d(y, layer.weight, layer.bias_b, stride, pad))
    assert bx.shape == x.shape  # maps the feature map back onto the input grid
    # adjoint identity, independent of conv_transpose2d: <conv(x), y> = <x, conv^T(y)>
    lhs = ((fx - layer.bias_f.view(1, -1, 1, 1)) * y).sum()
    rhs = (x * (bx - layer.bias_b.view(1, -1, 1, 1))).sum()
    torch.testing.assert_close(lhs, rhs)


def _layer_cases():
    torch.manual_seed(1)
    return [
        ("linear", BiLinear(6, 4), torch.randn(3, 6), torch.randn(3, 4), "weight"),
        ("conv", BiConv2d(2, 3, 4, 2, 1), torch.randn(2, 2, 8, 8), torch.randn(2, 3, 4, 4), "weight"),
        ("resblock", BiResBlock(3, "tanh"), torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5), "conv1.weight"),
    ]


@pytest.mark.parametrize("case", range(3), ids=["linear", "conv", "resblock"])
def test_both_directions_accumulate_into_one_shared_weight(case):
    _, layer, x, y, wname = _layer_cases()[case]
    w = dict(layer.named_parameters())[wname]
    assert sum(p is w for p in layer.parameters()) == 1
    if isinstance(layer, (BiLinear, BiConv2d)):  # one weight, one bias per direction, nothing else
        assert [n for n, _ in layer.named_parameters()] == ["weight", "bias_f", "bias_b"]
    lf = lambda: layer(x).sin().sum()  # noqa: E731  forward-only loss
    lb = lambda: layer.backward(y).sin().sum()  # noqa: E731  backward-only loss
    (gf,) = torch.autograd.grad(lf(), [w])
    (gb,) = torch.autograd.grad(lb(), [w])
    (gsum,) = torch.autograd.grad(lf() + lb(), [w])
    assert gf.abs().sum() > 0 and gb.abs().sum() > 0
    assert not torch.allclose(gsum, gf) and not torch.allclose(gsum, gb)
    torch.testing.assert_close(gsum, gf + gb)
    layer.zero_grad()
    lf().backward()
    lb().backward()  # .grad accumulates both directions in the same tensor
    torch.testing.assert_close(w.grad, gf + gb)


# -- the models share their weights --------------------------------------------------------------
@pytest.mark.parametrize("arch", ["mlp", "conv", "resnet"])
def test_encoder_and_decoder_are_one_set_of_weights(arch):
    m = small("bvae", arch, shape=(1, 16, 16))
    names = [n for n, _ in m.named_parameters()]
    assert all(n.startswith(("net.", "logvar.")) for n in names), names
    params = dict(m.named_parameters())
    x = torch.rand(3, 1, 16, 16)
    z = torch.randn(3, 4)

    def grads(loss):
        g = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        return {n: (torch.zeros_like(p) if gi is None else gi) for (n, p), gi in zip(params.items(), g)}

    enc = lambda: sum(t.pow(2).sum() for t in m.posterior_params(x))  # noqa: E731  forward pass only
    dec = lambda: -m.decode(z).log_prob(x).sum()  # noqa: E731  backward pass only
    ge, gd, gs = grads(enc()), grads(dec()), grads(enc() + dec())
    for n in names:
        used_e, used_d = bool(ge[n].abs().sum() > 0), bool(gd[n].abs().sum() > 0)
        if n.endswith(".weight") and n.startswith("net."):
            assert used_e and used_d, f"{n} is not used by both directions"
            torch.testing.assert_close(gs[n], ge[n] + gd[n])
        elif n.endswith("bias_f") or n.startswith("logvar."):
            assert used_e and not used_d, n
        elif n.endswith("bias_b"):
            assert used_d and not used_e, n
        else:
            raise AssertionError(f"unexpected parameter {n}")


def test_decoder_is_the_transpose_of_the_encoder_mlp():
    """An explicit reference: encode with W, decode with W^T, layer by layer."""
    m = small("bvae", "mlp").double()
    net = m.net
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    z = torch.randn(5, 4, dtype=torch.float64)
    for layer in [*net.layers, net.head]:
        _randomise_biases(layer)
    h = x.flatten(1)
    for layer in net.layers:
        h = torch.relu(h @ layer.weight.T + layer.bias_f)
    torch.testing.assert_close(m.encode(x).mean, h @ net.head.weight.T + net.head.bias_f)
    y = z @ net.head.weight + net.head.bias_b
    for layer in reversed(net.layers):
        y = torch.relu(y) @ layer.weight + layer.bias_b
    torch.testing.assert_close(m.decode(z).base_dist.logits, y.view(-1, *SHAPE))


def test_decoder_is_the_transpose_of_the_encoder_conv():
    m = small("bvae", "conv", shape=(3, 16, 16)).double()
    net = m.net
    z = torch.randn(2, 4, dtype=torch.float64)
    y = torch.relu(z @ net.head.weight + net.head.bias_b)
    y = torch.relu(y @ net.fc.weight + net.fc.bias_b).view(2, *net.feature_shape)
    for i in reversed(range(len(net.convs))):
        c = net.convs[i]
        y = F.conv_transpose2d(y, c.weight, c.bias_b, 2, 1)
        y = torch.relu(y) if i else y
    assert net.convs[0].weight.shape[1] == 3  # the first kernel's in-channels give the output channels
    torch.testing.assert_close(m.decode(z).base_dist.logits, y)


# -- parameter budget --------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["conv", "mlp", "resnet"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)], ids=["28x28x1", "32x32x3"])
def test_about_half_the_parameters_of_the_unidirectional_twin(arch, shape):
    for bi, uni in TWIN.items():
        kw = {"arch": arch, "latent_dim": 16}
        nb = build(make_config(bi, kw), shape, n_train=1000).num_parameters()
        nu = build(make_config(uni, kw), shape, n_train=1000).num_parameters()
        print(f"{bi:12s} {arch:4s} {'x'.join(map(str, shape)):8s} bidirectional {nb:>9,d}  {uni:10s} {nu:>9,d}  ratio {nb / nu:.3f}")
        assert 0.45 <= nb / nu <= 0.60, (bi, nb, uni, nu)


def test_mlp_parameter_count_closed_form():
    """Per BiLinear(a -> b): a*b weights + b forward + a backward biases; plus the forward-only
    log-variance head; no decoder weights of its own."""
    m = build(make_config("bvae", {"arch": "mlp", "mlp_hidden": [512, 256], "latent_dim": 16}), (1, 28, 28))
    dims = [784, 512, 256, 16]
    expected = sum(a * b + a + b for a, b in zip(dims, dims[1:])) + 256 * 16 + 16
    assert m.num_parameters() == expected == 543_024


# -- shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["conv", "mlp", "resnet"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32), (1, 64, 64), (3, 64, 64)],
                         ids=lambda s: "x".join(map(str, s)))
def test_shapes(arch, shape):
    m = small("bvae", arch, shape=shape)
    x = torch.rand(2, *shape)
    q = m.encode(x)
    assert q.mean.shape == (2, 4) and q.stddev.shape == (2, 4)
    assert m.decode(q.rsample()).mean.shape == (2, *shape)
    out = m.loss(x)
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert all(v.shape == (2,) for v in out.terms.values())
    assert m.reconstruct(x).shape == (2, *shape)
    s = m.sample(3, torch.Generator().manual_seed(0))
    assert s.shape == (3, *shape) and 0 <= s.min() and s.max() <= 1


@pytest.mark.parametrize("arch", ["conv", "resnet"])
@pytest.mark.parametrize("size", [28, 32, 64])
def test_conv_channels_follow_the_unidirectional_rule(arch, size):
    m = build(make_config("bvae", {"arch": arch, "hidden_dim": 8}), (3, size, size))
    convs = m.net.convs if arch == "conv" else m.net.downs
    assert [c.out_channels for c in convs] == auto_conv_channels(size)
    assert convs[0].in_channels == 3


def test_every_family_member_runs_on_every_arch():
    for name, cls in [("bvae", BVAE), ("beta-bvae", BVAE), ("beta-tcbvae", BetaTCBVAE), ("biwae", BIWAE)]:
        for arch in ("mlp", "conv", "resnet"):
            m = small(name, arch, shape=(3, 16, 16))
            assert type(m) is cls is MODELS[name].cls
            out = m.loss(torch.rand(4, 3, 16, 16))
            assert torch.isfinite(out.loss) and {"rec", "kl", "nelbo"} <= set(out.terms)


# -- configs -----------------------------------------------------------------------------------
def test_config_validation():
    with pytest.raises(ConfigError, match="arch"):
        make_config("bvae", {"arch": "linear"})
    with pytest.raises(ConfigError, match="bidirectional"):
        BVAEConfig(arch="linear")
    for name in BIDIRECTIONAL:
        with pytest.raises(ConfigError, match="res_blocks"):
            make_config(name, {"res_blocks": 0})
    with pytest.raises(ConfigError, match="halve"):
        build(make_config("bvae", {"conv_channels": [8, 8, 8]}), (1, 28, 28))  # 28 -> 14 -> 7 -> ?
    with pytest.raises(ConfigError, match="k"):
        make_config("biwae", {"k": 0})
    with pytest.raises(ModelError, match="dataset_size"):
        build(make_config("beta-tcbvae", {"arch": "mlp"}), SHAPE)
    assert make_config("beta-bvae").beta == 4.0
    assert make_config("bvae").arch == "conv"
    assert make_config("beta-tcbvae", {"arch": "resnet", "res_blocks": 2}).res_blocks == 2


# -- the objectives ----------------------------------------------------------------------------
def test_bvae_loss_is_the_negative_belbo():
    m = small("bvae")
    x = torch.rand(8, *SHAPE)
    torch.manual_seed(3)
    out = m.loss(x)
    torch.manual_seed(3)
    mu, logvar = m.posterior_params(x)
    q = m.encode(x)
    z = q.rsample()
    rec = -m.decode(z).log_prob(x)
    torch.testing.assert_close(out.terms["rec"], rec)
    torch.testing.assert_close(out.terms["kl"], gaussian_kl_closed_form(mu, logvar))
    torch.testing.assert_close(out.loss, (rec + kl_to_prior(q, standard_normal(q.event_shape[0]))).mean())


def test_beta_bvae_with_beta_one_is_the_bvae():
    x = torch.rand(8, *SHAPE)
    a, b, b4 = small("bvae"), small("beta-bvae", beta=1.0), small("beta-bvae")
    b.load_state_dict(a.state_dict())
    b4.load_state_dict(a.state_dict())
    torch.manual_seed(3)
    la = a.loss(x)
    torch.manual_seed(3)
    lb = b.loss(x)
    torch.manual_seed(3)
    l4 = b4.loss(x)
    assert torch.equal(la.loss, lb.loss)
    torch.testing.assert_close(l4.loss, (la.terms["rec"] + 4.0 * la.terms["kl"]).mean())


def test_beta_tcbvae_terms_split_the_single_sample_kl():
    m = small("beta-tcbvae", alpha=1.0, beta=3.0, gamma=2.0, n_train=500)
    assert m.config.dataset_size == 500
    x = torch.rand(16, *SHAPE)
    torch.manual_seed(0)
    out = m.loss(x)
    torch.manual_seed(0)
    mu, logvar = m.posterior_params(x)
    q = diag_gaussian(mu, logvar)
    z = q.rsample()
    t = out.terms
    torch.testing.assert_close(t["rec"], -m.decode(z).log_prob(x))
    torch.testing.assert_close(t["mi"] + t["tc"] + t["dwkl"], q.log_prob(z) - Normal(0.0, 1.0).log_prob(z).sum(1))
    torch.testing.assert_close(out.loss, (t["rec"] + t["mi"] + 3.0 * t["tc"] + 2.0 * t["dwkl"]).mean())


def test_biwae_k1_is_the_single_sample_belbo():
    m = small("biwae", k=1)
    x = torch.rand(8, *SHAPE)
    torch.manual_seed(0)
    out = m.loss(x)
    torch.manual_seed(0)
    q = m.encode(x)
    z = q.rsample((1,))[0]
    belbo = m.decode(z).log_prob(x) + Normal(0.0, 1.0).log_prob(z).sum(1) - q.log_prob(z)
    torch.testing.assert_close(out.terms["iwae"], -belbo)
    torch.testing.assert_close(out.loss, -belbo.mean())


def test_biwae_vectorised_bound_matches_a_loop_over_samples():
    k = 6
    m = small("biwae", k=k)
    x = torch.rand(5, *SHAPE)
    torch.manual_seed(1)
    out = m.loss(x)
    torch.manual_seed(1)
    q = m.encode(x)
    zs = q.rsample((k,))
    prior = Independent(Normal(torch.zeros(4), torch.ones(4)), 1)
    lw = torch.stack([m.decode(z).log_prob(x) + prior.log_prob(z) - q.log_prob(z) for z in zs])
    torch.testing.assert_close(out.terms["iwae"], -(torch.logsumexp(lw, 0) - math.log(k)))


# -- training and reloading --------------------------------------------------------------------
@pytest.mark.parametrize("name,arch", [("bvae", "conv"), ("beta-bvae", "mlp"), ("beta-tcbvae", "resnet"), ("biwae", "mlp")])
def test_trains_one_epoch_and_reloads(name, arch, tmp_path):
    from vaelab.api import evaluate_run, train_run  # the training stack, imported only by the tests that train
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build(name, parse_set(["data.name=digits", f"model.arch={arch}", "model.mlp_hidden=[32]",
                                           "model.hidden_dim=32", "model.conv_channels=[8]", "model.latent_dim=3",
                                           "train.epochs=1", "train.batch_size=128", "train.progress_bar=false",
                                           "data.limit=384", "data.test_limit=32"]))
    run_dir, metrics = train_run(cfg, tmp_path / name)
    assert {"rec", "kl", "nelbo"} <= set(metrics)
    assert all(v == v for v in metrics.values() if isinstance(v, float))  # no NaN
    model = vaelab.load(run_dir)
    assert type(model) is MODELS[name].cls
    assert model.num_parameters() == metrics["parameters"]
    again = evaluate_run(run_dir, metrics=["elbo"], update_report=False)
    assert again["nelbo"] == pytest.approx(metrics["nelbo"], rel=1e-6)
    if name == "beta-tcbvae":
        assert model.config.dataset_size == metrics["n_train"]


@pytest.mark.parametrize("name", ["vae", "ae", "iwae"])
def test_unidirectional_resnet_mirrors_the_bidirectional_layout(name):
    """arch=resnet exists for the unidirectional models too (the twin the parameter budget is measured
    against): the same layers as BiResNet, each direction with its own weights."""
    m = build(make_config(name, {"arch": "resnet", "latent_dim": 8, "res_blocks": 2}), (1, 28, 28))
    bi = build(make_config("bvae", {"arch": "resnet", "latent_dim": 8, "res_blocks": 2}), (1, 28, 28))
    x = torch.rand(3, 1, 28, 28)
    assert m.features(x).shape == bi.features(x).shape == (3, 256)
    assert m.reconstruct(x).shape == x.shape
    convs = sorted(tuple(mod.weight.shape) for mod in m.encoder.modules() if isinstance(mod, torch.nn.Conv2d))
    biconvs = sorted(tuple(mod.weight.shape) for mod in bi.modules() if hasattr(mod, "weight") and mod.weight.dim() == 4)
    assert len(convs) == 2 + 2 * 2 * 2 and convs == biconvs  # the encoder's kernels match the shared ones one for one
    with pytest.raises(ConfigError, match="res_blocks"):
        make_config(name, {"arch": "resnet", "res_blocks": 0})
