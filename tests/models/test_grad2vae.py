"""grad2vae: the second-order attention against independent references (Hessians from
torch.autograd.functional, the loop over units), its aggregation, fusion and loss, the online
attention grids of training, and the model's save / load round trip."""
import json

import numpy as np
import pytest
import torch
from torch.autograd.functional import hessian

import vaelab
from vaelab.cli import main as cli_main
from vaelab.errors import ConfigError, ModelError
from vaelab.models import MODELS, build, make_config
from vaelab.models.grad2vae import Grad2VAE
from vaelab.models.persist import load_weights, save_weights
from vaelab.objectives import kl_to_prior, standard_normal

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)


def mk(shape=SHAPE, seed=0, **kw):
    torch.manual_seed(seed)
    opts = {"latent_dim": 3, "conv_channels": [3, 4], "hidden_dim": 12, **kw}
    return build(make_config("grad2vae", opts), shape)


def test_registered_and_sized_like_the_vae():
    assert MODELS["grad2vae"].cls is Grad2VAE
    m = build(make_config("grad2vae"), (1, 28, 28))
    v = build(make_config("vae"), (1, 28, 28))
    assert m.config.activation == "silu" and m.config.aggregation == "conv"
    assert abs(m.num_parameters() - v.num_parameters()) / v.num_parameters() < 0.05
    assert m.le1_shape == (8, 28, 28)
    x = torch.rand(2, 1, 28, 28)
    assert m.first_layer(x).shape == (2, 8, 28, 28) and m.decoder.features(m.encode(x).mean).shape == (2, 8, 28, 28)


@pytest.mark.parametrize("source", ["z", "mu"])
def test_second_order_tensor_is_the_hessian_times_ones(source):
    """att_i[b] = (d^2 z_i[b] / dL_e1[b]^2) @ 1, with the Hessian of each image's own unit from
    torch.autograd.functional.hessian: the batched HVP gives every image its own block."""
    m = mk(shape=(1, 4, 4), attention_source=source).double()
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    le1 = m.first_layer(x).detach()
    eps = torch.randn(2, 3, dtype=torch.float64)
    att = m.second_order_attention(le1, eps)
    assert att.shape == (3, 2, 3, 4, 4)
    n = le1[0].numel()
    for b in range(2):
        for i in range(3):
            f = lambda a: m._code(a.unsqueeze(0), eps[b : b + 1])[0, i]  # noqa: E731, B023
            h = hessian(f, le1[b]).reshape(n, n)
            torch.testing.assert_close(att[i, b].reshape(n), h @ torch.ones(n, dtype=torch.float64), rtol=1e-9, atol=1e-12)
    assert att.abs().max() > 1e-6


@pytest.mark.parametrize("activation", ["silu", "elu", "relu"])
def test_vmap_equals_the_loop_over_units(activation):
    m = mk(activation=activation)
    x = torch.rand(5, *SHAPE)
    le1, eps = m.first_layer(x), torch.randn(5, 3)
    v, loop = m.second_order_attention(le1, eps), m.second_order_attention_loop(le1, eps)
    assert v.shape == loop.shape == (3, 5, 3, 8, 8)
    assert torch.allclose(v, loop, rtol=1e-4, atol=1e-7)
    assert v.abs().max() > 0


def _loss_grads(m, x, seed=3):
    m.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    out = m.loss(x)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("impl", ["chain", "fast"])
@pytest.mark.parametrize("aggregation,kernel", [("conv", 1), ("conv", 3), ("sum", 1), ("mean", 1)])
def test_fast_attention_equals_the_reference_in_float64(impl, aggregation, kernel):
    """The layer-by-layer chain rule (the default) and torch.func's reverse over forward (and, for
    sum / mean, one reverse pass for all units) against the forward-over-reverse reference: the same
    attention tensor and the same loss gradients of every parameter, to 1e-5 in float64 on a small
    network."""
    m = mk(aggregation=aggregation, aggregation_kernel=kernel, attention_chunk=3, attention_impl=impl).double()
    x = torch.rand(5, *SHAPE, dtype=torch.float64)
    le1, eps = m.first_layer(x), torch.randn(5, 3, dtype=torch.float64)
    fast_units = m.second_order_attention(le1, eps)
    fast_agg = m.aggregated_attention(le1, eps)
    fast_out, fast_grads = _loss_grads(m, x)
    m.config.attention_impl = "reference"
    ref_units = m.second_order_attention(le1, eps)
    torch.testing.assert_close(fast_units, ref_units, rtol=1e-5, atol=1e-10)
    torch.testing.assert_close(fast_agg, m.aggregate(ref_units), rtol=1e-5, atol=1e-10)
    ref_out, ref_grads = _loss_grads(m, x)
    torch.testing.assert_close(fast_out.loss, ref_out.loss, rtol=1e-5, atol=0)
    assert fast_grads.keys() == ref_grads.keys() and len(fast_grads) > 10
    for n in ref_grads:
        torch.testing.assert_close(fast_grads[n], ref_grads[n], rtol=1e-5, atol=1e-9, msg=n)
    assert fast_units.abs().max() > 1e-6


@pytest.mark.parametrize("opts", [{"downsample": "stride"}, {"padding": "circular", "downsample": "stride"}, {"padding": "circular"}])
def test_encoder_variants_chain_equals_the_reference(opts):
    """The stride-2 halving and circular padding (the default pools): the chain path's attention and loss gradients equal the
    reference's in float64; the layers are what the options say."""
    m = mk(**opts).double()
    convs = [mod for mod in m.encoder.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert {c.padding_mode for c in convs} == {opts.get("padding", "zeros")}
    pooled = any(isinstance(mod, torch.nn.AvgPool2d) for mod in m.encoder.modules())
    assert pooled == (m.config.downsample == "pool") and all(c.stride == (1, 1) for c in convs) == pooled
    x = torch.rand(4, *SHAPE, dtype=torch.float64)
    le1, eps = m.first_layer(x), torch.randn(4, 3, dtype=torch.float64)
    ours = m.second_order_attention(le1, eps)
    out, grads = _loss_grads(m, x)
    m.config.attention_impl = "reference"
    torch.testing.assert_close(ours, m.second_order_attention(le1, eps), rtol=1e-9, atol=1e-12)
    ref_out, ref_grads = _loss_grads(m, x)
    torch.testing.assert_close(out.loss, ref_out.loss)
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-7, atol=1e-10, msg=n)
    assert m.encode(x).mean.shape == (4, 3) and ours.abs().max() > 1e-6


@pytest.mark.parametrize("impl,aggregation", [("chain", "conv"), ("chain", "sum"), ("fast", "conv")])
def test_fast_attention_equals_the_reference_on_the_default_network(impl, aggregation):
    """The default 28 x 28 model (latent 16, [8, 16] channels) in float32: the same loss gradients to 1e-4."""
    torch.manual_seed(0)
    m = build(make_config("grad2vae", {"aggregation": aggregation, "attention_impl": impl}), (1, 28, 28))
    x = torch.rand(8, 1, 28, 28)
    fast_out, fast_grads = _loss_grads(m, x)
    m.config.attention_impl = "reference"
    ref_out, ref_grads = _loss_grads(m, x)
    torch.testing.assert_close(fast_out.terms["att"], ref_out.terms["att"], rtol=1e-4, atol=1e-6)
    for n in ref_grads:
        scale = ref_grads[n].abs().max().clamp_min(1e-12)
        assert (fast_grads[n] - ref_grads[n]).abs().max() / scale <= 1e-4, n


@pytest.mark.parametrize("aggregation", ["conv", "sum"])
def test_chain_attention_in_the_channels_last_layout_equals_the_reference(aggregation):
    """The trainer's fast path on the CPU puts conv models and their images in the channels_last
    layout; the chain path (which keeps its reverse pass in NCHW) gives the same loss terms and
    gradients there as the reference in the default layout, in float64."""
    torch.manual_seed(0)
    m = build(make_config("grad2vae", {"latent_dim": 4, "aggregation": aggregation}), (1, 12, 12)).double()
    x = torch.rand(5, 1, 12, 12, dtype=torch.float64)
    m.config.attention_impl = "reference"
    ref_out, ref_grads = _loss_grads(m, x)
    m.config.attention_impl = "chain"
    m.to(memory_format=torch.channels_last)
    out, grads = _loss_grads(m, x.contiguous(memory_format=torch.channels_last))
    assert m.encoder[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.terms["att"], ref_out.terms["att"], rtol=1e-9, atol=1e-12)
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], rtol=1e-7, atol=1e-10, msg=n)


def test_compiled_loss_equals_the_reference_on_the_default_network():
    """train.compile=true (torch.compile of the loss: the fastest step, benchmarks/grad2vae.py part a)
    captures the chain path whole and computes the same attention and loss gradients as the eager
    reference, in float32 to 1e-4. The graph is run by the aot_eager backend here (inductor's C++
    build of it takes minutes); benchmarks/grad2vae.py part a checks inductor's own numbers
    (``conv_compiled_equals_eager``)."""
    torch.manual_seed(0)
    m = build(make_config("grad2vae", {}), (1, 28, 28))
    x = torch.rand(8, 1, 28, 28)
    compiled = torch.compile(m.loss, backend="aot_eager")
    m.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    out = compiled(x)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.config.attention_impl = "reference"
    ref_out, ref_grads = _loss_grads(m, x)
    torch.testing.assert_close(out.terms["att"], ref_out.terms["att"], rtol=1e-4, atol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for n in ref_grads:
        scale = ref_grads[n].abs().max().clamp_min(1e-12)
        assert (grads[n] - ref_grads[n]).abs().max() / scale <= 1e-4, n


def test_auto_attention_takes_the_chain_path():
    assert mk()._impl() == mk(aggregation="sum")._impl() == "chain"
    assert mk(attention_impl="fast")._impl() == "fast" and mk(aggregation="sum", attention_impl="reference")._impl() == "reference"
    with pytest.raises(ConfigError, match="attention_impl"):
        mk(attention_impl="quick")


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_chunked_attention_equals_one_pass(impl):
    """attention_chunk (images per pass of the torch.func paths; the chain's chunks are tested in
    tests/nn/test_second_order.py)."""
    m = mk(attention_chunk=2, attention_impl=impl)
    x = torch.rand(5, *SHAPE)
    le1, eps = m.first_layer(x), torch.randn(5, 3)
    chunked = m.second_order_attention(le1, eps)
    m.config.attention_chunk = 256
    torch.testing.assert_close(chunked, m.second_order_attention(le1, eps))


@pytest.mark.parametrize("aggregation,kernel", [("sum", 1), ("mean", 1), ("conv", 1), ("conv", 3)])
def test_aggregation_shapes_and_values(aggregation, kernel):
    m = mk(aggregation=aggregation, aggregation_kernel=kernel)
    att = torch.randn(3, 2, 3, 8, 8)  # [d, B, c1, H, W]
    out = m.aggregate(att)
    assert out.shape == (2, 3, 8, 8)
    if aggregation == "sum":
        torch.testing.assert_close(out, att[0] + att[1] + att[2])
    elif aggregation == "mean":
        torch.testing.assert_close(out, (att[0] + att[1] + att[2]) / 3)
    else:
        assert m.aggregator.weight.shape == (3, 3 * 3, kernel, kernel)
        # unit u's channel c is input channel u * c1 + c of the learned convolution
        w = m.aggregator.weight
        manual = torch.nn.functional.conv2d(torch.cat([att[0], att[1], att[2]], 1), w, m.aggregator.bias, padding=kernel // 2)
        torch.testing.assert_close(out, manual)
    if aggregation != "conv":
        assert m.aggregator is None


def test_relu_curvature_comes_only_from_the_sampling_path():
    """Piecewise-linear paths have zero second derivatives: with ReLU the attention of the mean is
    exactly zero and that of the sample is not; a smooth activation gives both."""
    x = torch.rand(4, *SHAPE)
    eps = torch.randn(4, 3)
    relu_mu = mk(activation="relu", attention_source="mu")
    assert torch.count_nonzero(relu_mu.second_order_attention(relu_mu.first_layer(x), eps)) == 0
    relu_z = mk(activation="relu", attention_source="z")
    assert relu_z.second_order_attention(relu_z.first_layer(x), eps).abs().max() > 1e-6
    assert torch.count_nonzero(relu_z.second_order_attention(relu_z.first_layer(x), torch.zeros(4, 3))) == 0  # eps = 0
    silu_mu = mk(activation="silu", attention_source="mu")
    assert silu_mu.second_order_attention(silu_mu.first_layer(x), eps).abs().max() > 1e-6
    maps = mk().attention_maps(x)
    assert maps.shape == (4, 1, 8, 8) and maps.min() >= 0 and maps.max() <= 1
    assert torch.allclose(maps.amax((1, 2, 3)), torch.ones(4))  # not a constant (zero) map


def test_attention_graph_trains_the_parameters():
    m = mk()
    x = torch.rand(4, *SHAPE)
    le1 = m.first_layer(x)
    att = m.second_order_attention(le1, torch.randn(4, 3))
    assert att.requires_grad
    att.pow(2).sum().backward()
    weights = [n for n, _ in m.named_parameters() if n.startswith("encoder.") and n.endswith("weight")]
    assert len(weights) == 4  # the stem, the trunk's two convolutions, its linear layer
    for name in (*weights, "mu.weight", "logvar.weight"):
        g = dict(m.named_parameters())[name].grad
        assert g is not None and g.abs().max() > 0, name
    m.zero_grad()
    out = m.loss(x)
    out.terms["att"].mean().backward()  # the attention loss alone reaches the encoder through the attention
    params = dict(m.named_parameters())
    for name in ("encoder.0.0.weight", weights[2], "aggregator.weight", "decoder.last.weight",
                 "decoder.penultimate.0.weight"):
        assert params[name].grad is not None and params[name].grad.abs().max() > 0, name


def test_loss_terms_and_the_weight_zero_identity():
    x = torch.rand(6, *SHAPE)
    m = mk(attention_weight=0.7, beta=2.0)
    torch.manual_seed(3)
    out = m.loss(x, kl_weight=0.5)
    assert set(out.terms) == {"rec", "kl", "nelbo", "att"} and all(v.shape == (6,) for v in out.terms.values())
    t = out.terms
    torch.testing.assert_close(out.loss, (t["rec"] + 2.0 * 0.5 * t["kl"] + 0.7 * t["att"]).mean())
    torch.testing.assert_close(t["nelbo"], t["rec"] + t["kl"])
    assert (t["att"] > 0).all()
    # weight 0: no attention; the same weights and noise give the same rec and kl, the loss is the ELBO
    plain = mk(attention_weight=0.0, beta=2.0)
    plain.load_state_dict(m.state_dict())
    torch.manual_seed(3)
    out0 = plain.loss(x, kl_weight=0.5)
    assert set(out0.terms) == {"rec", "kl", "nelbo"}
    torch.testing.assert_close(out0.terms["rec"], t["rec"])
    torch.testing.assert_close(out0.terms["kl"], t["kl"])
    torch.testing.assert_close(out0.loss, (t["rec"] + 2.0 * 0.5 * t["kl"]).mean())
    # ... and that ELBO is the textbook one of encode / decode with the same noise
    torch.manual_seed(3)
    q = plain.encode(x)
    z = q.mean + q.stddev * torch.randn_like(q.mean)
    torch.testing.assert_close(out0.terms["rec"], -plain.decode(z).log_prob(x))
    torch.testing.assert_close(out0.terms["kl"], kl_to_prior(q, standard_normal(q.event_shape[0])))


def test_attention_reconstruction_is_the_fused_decoder():
    m = mk().eval()
    x = torch.rand(3, *SHAPE)
    out = m.attention_outputs(x, torch.Generator().manual_seed(5))
    le1 = m.first_layer(x)
    mu, logvar = m.posterior_from_first_layer(le1)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(5))
    z = mu + torch.exp(0.5 * logvar) * eps
    agg = m.aggregate(m.second_order_attention_loop(le1, eps))
    torch.testing.assert_close(out["attention"], agg.detach(), rtol=1e-4, atol=1e-7)
    fused = torch.sigmoid(m.decoder.last(m.decoder.features(z) + agg)).detach()
    torch.testing.assert_close(out["attention_reconstruction"], fused, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(out["reconstruction"], m.reconstruct(x))
    again = m.attention_outputs(x, torch.Generator().manual_seed(5))
    assert torch.equal(again["maps"], out["maps"])  # the same noise: the same maps


def test_works_in_inference_mode_and_with_a_big_evaluation_batch():
    m = mk(attention_chunk=4).eval()
    x = torch.rand(10, *SHAPE)
    with torch.inference_mode():
        out = m.loss(x)
    assert torch.isfinite(out.loss) and out.terms["att"].shape == (10,)


def test_config_validation():
    with pytest.raises(ConfigError, match="convolutional"):
        make_config("grad2vae", {"arch": "mlp"})
    with pytest.raises(ConfigError, match="c1, c2"):
        make_config("grad2vae", {"conv_channels": [4, 8, 16]})
    with pytest.raises(ConfigError, match="aggregation"):
        make_config("grad2vae", {"aggregation": "max"})
    with pytest.raises(ConfigError, match="aggregation_kernel"):
        make_config("grad2vae", {"aggregation_kernel": 2})
    with pytest.raises(ConfigError, match="attention_weight"):
        make_config("grad2vae", {"attention_weight": -1.0})
    with pytest.raises(ConfigError, match="activation"):
        make_config("grad2vae", {"activation": "swish"})
    with pytest.raises(ConfigError, match="halves"):
        build(make_config("grad2vae"), (1, 7, 7))
    with pytest.raises(ConfigError, match="model.padding"):
        make_config("grad2vae", {"padding": "reflect"})
    with pytest.raises(ConfigError, match="model.downsample"):
        make_config("grad2vae", {"downsample": "max"})
    with pytest.raises(ModelError, match="expects images"):
        mk().attention_maps(torch.rand(2, 1, 4, 4))


def test_save_load_round_trip(tmp_path):
    m = mk(aggregation_kernel=3).eval()
    save_weights(m, tmp_path / "w.safetensors")
    from vaelab.config import to_dict

    cfg = make_config("grad2vae", {k: v for k, v in to_dict(m.config).items() if k != "name"})
    m2 = load_weights(build(cfg), tmp_path / "w.safetensors").eval()
    x = torch.rand(4, *SHAPE)
    assert torch.equal(m.attention_maps(x), m2.attention_maps(x))
    torch.manual_seed(1)
    a = m.loss(x)
    torch.manual_seed(1)
    b = m2.loss(x)
    assert torch.equal(a.loss, b.loss)


def _cli(*args):
    code = cli_main(list(args))
    assert code == 0, args
    return code


@pytest.fixture(scope="module")
def one_class_run(tmp_path_factory, figures_module):
    """`vaelab train grad2vae` on the digits 0 of scikit-learn's 8x8 digits, 2 epochs."""
    out = tmp_path_factory.mktemp("g2") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _cli("train", "grad2vae", "--data", "digits", "--epochs", "2", "--latent-dim", "3", "--batch-size", "32",
             "--seed", "0", "--out", str(out), "--set", "data.classes=[0]", "--set", "data.test_limit=60",
             "--set", "model.conv_channels=[4,8]", "--set", "model.hidden_dim=16", "--set", "train.progress_bar=false")
    finally:
        torch.set_num_threads(n)
    return out


def test_training_writes_the_attention_of_every_epoch(one_class_run):
    from PIL import Image

    grids = sorted((one_class_run / "attention").glob("*.png"))
    assert [p.name for p in grids] == ["epoch_001.png", "epoch_002.png"]
    a, b = (np.asarray(Image.open(p).convert("RGB")) for p in grids)
    assert a.shape == b.shape and a.shape[0] > 100 and not np.array_equal(a, b)  # the attention moved
    html = (one_class_run / "report.html").read_text()
    assert html.count("<figcaption>Online attention after epoch") == 2
    assert "normal (left) and anomalous (right) test images" in html
    assert (one_class_run / "figures" / "attention_test.png").is_file()
    metrics = json.loads((one_class_run / "metrics.json").read_text())
    assert {"rec", "kl", "nelbo", "att"} <= set(metrics)
    model = vaelab.load(one_class_run)
    assert type(model) is Grad2VAE and model.latent_dim == 3


def test_explain_cli_writes_figures(one_class_run, tmp_path, capsys):
    from PIL import Image

    for method, extra in [("grad2", []), ("gradcam", []), ("gradcam", ["--anomaly"])]:
        out = tmp_path / f"{method}{len(extra)}.png"
        _cli("explain", str(one_class_run), "--method", method, "-n", "4", "--out", str(out), *extra)
        assert str(out) in capsys.readouterr().out
        w, h = Image.open(out).size
        assert w > 200 and h > 200
    assert cli_main(["explain", str(one_class_run), "--method", "grad2", "--anomaly", "--out", str(tmp_path / "x.png")]) == 2
    assert "gradcam" in capsys.readouterr().err


def test_explain_grad2_refuses_another_model(tmp_path, capsys):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=2",
                                            "train.epochs=1", "data.limit=100", "data.test_limit=20",
                                            "train.progress_bar=false"]))
    run_dir, _ = train_run(cfg, tmp_path / "vae")
    assert not (run_dir / "attention").exists()  # no attention grids for a model without attention
    assert cli_main(["explain", str(run_dir), "--method", "grad2", "--out", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert "grad2vae" in err and "gradcam" in err and "Traceback" not in err
    assert cli_main(["explain", str(run_dir), "--method", "gradcam", "--out", str(tmp_path / "b.png")]) == 2
    assert "convolutional layers" in capsys.readouterr().err
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


def test_the_attention_callback_leaves_training_unchanged(tmp_path, monkeypatch):
    """The grids draw their own noise: a run with them trains exactly as one without."""
    from vaelab.config import parse_set
    from vaelab.train import RunConfig, fit
    from vaelab.train import run as run_mod

    opts = parse_set(["data.name=digits", "model.conv_channels=[2,4]", "model.hidden_dim=8", "model.latent_dim=2",
                      "train.epochs=1", "data.limit=96", "train.batch_size=32", "train.progress_bar=false"])
    with_grid, _ = fit(RunConfig.build("grad2vae", opts), tmp_path / "a")
    assert (tmp_path / "a" / "attention" / "epoch_001.png").is_file()
    monkeypatch.setattr(run_mod, "model_callbacks", lambda *a: [])
    without, _ = fit(RunConfig.build("grad2vae", opts), tmp_path / "b")
    assert not (tmp_path / "b" / "attention").exists()
    for (k, v), w in zip(with_grid.state_dict().items(), without.state_dict().values()):
        assert torch.equal(v, w), k


def test_a_run_saved_before_the_downsample_option_loads_with_its_stride_layer(tmp_path):
    """The default halving is now pooling; a saved config without model.downsample (written by an
    older vaelab) means the stride-2 layer its weights were trained in."""
    from vaelab.train import RunConfig

    fresh = RunConfig.from_dict({"model": {"name": "grad2vae"}})
    old = RunConfig.from_dict({"model": {"name": "grad2vae"}}, saved=True)
    assert fresh.model.downsample == "pool" and old.model.downsample == "stride"
    assert RunConfig.from_dict({"model": {"name": "grad2vae", "downsample": "pool"}}, saved=True).model.downsample == "pool"
    m = mk(downsample="stride")
    save_weights(m, tmp_path / "w.safetensors")
    cfg = old.model
    cfg.latent_dim, cfg.conv_channels, cfg.hidden_dim = 3, [3, 4], 12
    loaded = load_weights(build(cfg, SHAPE), tmp_path / "w.safetensors")
    x = torch.rand(2, *SHAPE)
    torch.testing.assert_close(loaded.encode(x).mean, m.encode(x).mean)
