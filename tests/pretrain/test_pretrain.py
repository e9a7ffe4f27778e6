"""Greedy layer-wise pretraining: each layer learns to reconstruct the codes of the frozen layers
below; fine-tuning step 1 moves only the head, step 2 everything; the CLI writes a run directory."""
import json

import pytest
import torch

from vaelab.api import load_pretrained
from vaelab.data import DataConfig, load_data
from vaelab.errors import ConfigError
from vaelab.pretrain import (PretrainConfig, PretrainRunConfig, accuracy, build_network, layer_inputs,
                                   pretrain_and_finetune)

from tests.conftest import vaelab_here


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    train, _, test = load_data(DataConfig(name="digits"))
    return train, test


def small(**kw):
    return PretrainConfig(**{"layers": [24, 12, 6], "epochs_per_layer": 3, "finetune_epochs": 4, "n_labels": 200,
                             "batch_size": 64, "device": "cpu", **kw})


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b, prefix):
    return all(torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))


@pytest.fixture(scope="module")
def run(digits):
    train, test = digits
    cfg = small()
    snaps = {}
    result = pretrain_and_finetune(train, test, cfg, seed=0, callback=lambda phase, i, m: snaps.__setitem__((phase, i), snapshot(m)))
    snaps["init"] = snapshot(build_network(cfg, 0))
    return cfg, result, snaps


def test_each_layer_trains_alone_on_the_codes_below(run, digits):
    cfg, result, snaps = run
    before = snaps["init"]
    for layer in range(3):
        after = snaps[("pretrain", layer)]
        assert not same(before, after, f"layers.{layer}.") and not same(before, after, f"decoders.{layer}.")
        for other in range(3):  # earlier layers frozen, later ones not started
            if other != layer:
                assert same(before, after, f"layers.{other}.") and same(before, after, f"decoders.{other}.")
        assert same(before, after, "head.")
        before = after
    # the reported loss of layer l is its reconstruction of the codes of the (final) layers below
    model = build_network(cfg, 0)
    model.load_state_dict(result.pretrained_state)
    for layer in range(3):
        h = layer_inputs(model, digits[0].images, layer)
        assert h.shape[1] == ([64] + cfg.layers)[layer]
        with torch.no_grad():
            rec = model.layer_reconstruction(layer, h).double().mean().item()
        assert rec == pytest.approx(result.metrics[f"rec_layer{layer + 1}"], rel=1e-5)
        losses = [r["loss"] for r in result.log if r["phase"] == "pretrain" and r["layer"] == layer + 1]
        assert len(losses) == cfg.epochs_per_layer and losses[-1] < losses[0]


def test_layer_two_by_hand(run, digits):
    """An independent re-implementation of layer 2's pretraining: Adam on (W2, b2, D2) only, on
    relu(W1 x + b1) from the weights layer 1 ended with, the same batches; same weights."""
    cfg, _, snaps = run
    s1, s2 = snaps[("pretrain", 0)], snaps[("pretrain", 1)]
    x = digits[0].images.flatten(1).float() / 255
    h1 = torch.relu(x @ s1["layers.0.weight"].T + s1["layers.0.bias"])
    params = [s1[k].clone().requires_grad_() for k in ("layers.1.weight", "layers.1.bias", "decoders.1.weight", "decoders.1.bias")]
    w, b, dw, db = params
    opt = torch.optim.Adam(params, lr=cfg.lr)
    g = torch.Generator().manual_seed(0 + 1)
    for _ in range(cfg.epochs_per_layer):  # the batches layer 1 took
        torch.randperm(len(x), generator=g)
    for _ in range(cfg.epochs_per_layer):
        for idx in torch.randperm(len(x), generator=g).split(cfg.batch_size):
            h = h1[idx]
            loss = ((torch.relu(h @ w.T + b) @ dw.T + db - h) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    for k, p in zip(("layers.1.weight", "layers.1.bias", "decoders.1.weight", "decoders.1.bias"), params):
        torch.testing.assert_close(p.detach(), s2[k], rtol=1e-4, atol=1e-5)


def test_finetuning_steps_move_the_right_weights(run):
    _, result, snaps = run
    pre, step1, step2 = snaps[("pretrain", 2)], snaps[("finetune_head", 0)], snaps[("finetune_all", 0)]
    assert same(pre, step1, "layers.") and not same(pre, step1, "head.")
    for layer in range(3):
        assert not same(step1, step2, f"layers.{layer}.")
    assert not same(step1, step2, "head.")
    assert same(pre, step2, "decoders.")  # only the pretraining uses the decoders
    assert all(torch.equal(pre[k], result.pretrained_state[k]) for k in pre)
    for k in ("acc_finetune_head", "acc_finetune_all", "acc_scratch"):
        assert 0 <= result.metrics[k] <= 1
    assert result.metrics["n_labels"] == 200


def test_baseline_is_the_same_network_from_the_same_start(run, digits):
    cfg, result, snaps = run
    base = result.baseline
    assert type(base) is type(result.model) and base.widths == result.model.widths
    assert not same(snaps["init"], snapshot(base), "layers.")  # it was trained
    assert same(snaps["init"], snapshot(base), "decoders.")  # from the initial weights (decoders untouched)
    assert accuracy(base, digits[1].images, digits[1].labels) == result.metrics["acc_scratch"]
    scratch_rows = [r for r in result.log if r["phase"] == "scratch"]
    assert len(scratch_rows) == 2 * cfg.finetune_epochs


def test_same_seed_same_result(digits):
    train, test = digits
    cfg = dict(layers=[16, 8], epochs_per_layer=1, finetune_epochs=2, n_labels=100, baseline=False)
    a = pretrain_and_finetune(train, test, small(**cfg), seed=1)
    b = pretrain_and_finetune(train, test, small(**cfg), seed=1)
    c = pretrain_and_finetune(train, test, small(**cfg), seed=2)
    drop = lambda m: {k: v for k, v in m.items() if k != "seconds"}  # noqa: E731
    assert drop(a.metrics) == drop(b.metrics)
    sa, sb, sc = snapshot(a.model), snapshot(b.model), snapshot(c.model)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("kw,msg", [({"layers": []}, "layers"), ({"layers": [8, 0]}, "layers"), ({"n_labels": 0}, "n_labels"),
                                    ({"activation": "nope"}, "activation"), ({"finetune_lr": 0.0}, "finetune_lr"),
                                    ({"head_lr": -1.0}, "head_lr")])
def test_bad_config(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        PretrainConfig(**kw)


def _cli(*args, cwd):
    return vaelab_here("pretrain", *args, cwd=cwd)  # the same main() the command runs, in this process


def test_cli_pretrain_writes_a_run(tmp_path, digits):
    out = tmp_path / "pt"
    p = _cli("--data", "digits", "--layers", "16,8", "--epochs-per-layer", "1", "--finetune-epochs", "3", "--labels", "150",
             "--seed", "1", "--out", str(out), "--set", "data.test_limit=200", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for f in ("config.yaml", "model.safetensors", "pretrained.safetensors", "scratch.safetensors", "metrics.json",
              "pretrain_log.csv", "report.html", "figures/pretrain.png"):
        assert (out / f).is_file(), f
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"rec_layer1", "rec_layer2", "acc_finetune_head", "acc_finetune_all", "acc_scratch"} <= set(metrics)
    assert metrics["n_labels"] == 150 and metrics["n_test"] == 200
    cfg = PretrainRunConfig.load(out / "config.yaml")
    assert cfg.pretrain.layers == [16, 8] and cfg.seed == 1 and cfg.pretrain.image_shape == [1, 8, 8]
    test = load_data(cfg.data, cfg.seed)[2]
    for weights, key in (("model", "acc_finetune_all"), ("scratch", "acc_scratch")):
        model = load_pretrained(out, weights)
        assert accuracy(model, test.images, test.labels) == pytest.approx(metrics[key])
    lines = (out / "pretrain_log.csv").read_text().splitlines()
    assert lines[0] == "phase,layer,epoch,loss,train_acc" and len(lines) == 1 + 2 * 1 + 3 + 3 + 6


@pytest.mark.parametrize("args,msg", [(["--layers", "16,x"], "--layers"), (["--labels", "many"], "--labels"),
                                      (["--set", "pretrain.lr=-1"], "pretrain.lr"), (["--set", "model.beta=2"], "unknown")])
def test_cli_pretrain_errors(tmp_path, capsys, args, msg):
    from vaelab.cli import main

    assert main(["pretrain", "--data", "digits", "--out", str(tmp_path / "r"), *args]) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_pretrain_refuses_an_existing_run(tmp_path, capsys):
    from vaelab.cli import main

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("seed: 0\n")
    assert main(["pretrain", "--data", "digits", "--out", str(tmp_path / "r")]) == 2
    assert "already holds a run" in capsys.readouterr().err
