"""The conditional VAE: class-K samples classified as K by the LeNet feature net, the null label
as the unconditional model, labels checked, num_classes from the data, `vaelab sample --class`,
and exact resume (label dropout draws random numbers)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import vaelab
from vaelab.config import parse_set
from vaelab.errors import ModelError
from vaelab.train import RunConfig

BASE = ["data.name=digits", "train.batch_size=64", "train.progress_bar=false", "model.latent_dim=8"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from vaelab.api import train_run

    # an MLP for 10 epochs at lr 1.5e-3 and a 100-image test split (the report's figures): under 10 s of
    # training on one idle core (the conv model for 20 epochs took 294 s on a busy machine), where class-K
    # samples are classified as K 0.88 of the time (min 0.63) and the label-free ones are not one class (max 0.48)
    cfg = RunConfig.build("cvae", parse_set(BASE + ["train.epochs=10", "model.arch=mlp", "train.lr=1.5e-3",
                                                     "data.test_limit=100"]))
    run_dir, metrics = train_run(cfg, tmp_path_factory.mktemp("cvae") / "run")
    return run_dir, cfg, metrics


def test_class_k_samples_are_classified_as_k_by_lenet(run, capsys):
    from vaelab.data import load_data
    from vaelab.evaluate.features import train_lenet

    run_dir, cfg, _ = run
    model = vaelab.load(run_dir)
    train = load_data(cfg.data, cfg.seed)[0]
    net = train_lenet(train, seed=0, epochs=10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rates = [float((net(model.sample(100, g, label=k)).argmax(1) == k).float().mean()) for k in range(10)]
        free = torch.bincount(net(model.sample(1000, g)).argmax(1), minlength=10).float() / 1000
    with capsys.disabled():
        print("\ncvae (digits, MLP, 10 epochs): class-K samples classified as K by LeNet: "
              + " ".join(f"{k}:{r:.2f}" for k, r in enumerate(rates)) + f"  mean {sum(rates) / 10:.3f} (chance 0.10)")
    assert sum(rates) / 10 >= 0.7 and min(rates) >= 0.3
    # without a label the samples are not one class: no class takes most of them
    assert float(free.max()) < 0.6


def test_null_label_is_the_unconditional_model_and_labels_are_checked(run):
    run_dir, cfg, metrics = run
    model = vaelab.load(run_dir)
    assert model.config.num_classes == 10 and RunConfig.load(run_dir / "config.yaml").model.num_classes == 10
    assert model.conditional and model.takes_labels
    x = torch.rand(5, *model.image_shape)
    torch.testing.assert_close(model.encode(x).mean, model.encode(x, torch.full((5,), -1)).mean)
    assert not torch.allclose(model.encode(x).mean, model.encode(x, torch.arange(5)).mean)
    z = torch.randn(5, model.latent_dim)
    assert not torch.allclose(model.decode(z, 3).mean, model.decode(z).mean)
    with pytest.raises(ModelError, match="outside 0..9"):
        model.decode(z, 10)
    with pytest.raises(ModelError, match="outside 0..9"):
        model.encode(x, torch.tensor([0, 1, 2, 3, 12]))
    with pytest.raises(ModelError, match="one entry per example"):
        model.encode(x, torch.arange(3))
    assert metrics["conditioned"] == 0.0  # the test-set metrics measure the unconditional (null-label) model
    model.train()
    out = model.loss(torch.rand(2000, *model.image_shape), labels=torch.randint(0, 10, (2000,)))
    assert 0.85 < float(out.terms["conditioned"].mean()) < 0.95  # label_dropout = 0.1


def test_cli_samples_a_class_and_refuses_class_for_an_unconditional_model(run, tmp_path, capsys):
    from PIL import Image

    from vaelab.api import train_run
    from vaelab.cli import main

    run_dir, _, _ = run
    assert main(["sample", str(run_dir), "-n", "16", "--class", "3", "--out", str(tmp_path / "three.png")]) == 0
    assert Image.open(tmp_path / "three.png").size[0] > 8
    vae, _ = train_run(RunConfig.build("vae", parse_set(BASE + ["train.epochs=1", "model.arch=mlp"])), tmp_path / "vae")
    capsys.readouterr()
    assert main(["sample", str(vae), "--class", "3", "--out", str(tmp_path / "v.png")]) != 0
    err = capsys.readouterr().err
    assert "conditional" in err and "cvae" in err and "Traceback" not in err


def test_resume_equals_uninterrupted(tmp_path):
    from vaelab.train import fit

    def cfg(epochs):
        return RunConfig.build("cvae", parse_set(BASE + [f"train.epochs={epochs}", "model.arch=mlp", "model.mlp_hidden=[32]",
                                                         "data.limit=600"]))

    fit(cfg(1), tmp_path / "r")
    fit(cfg(2), tmp_path / "r", resume=True)
    fit(cfg(2), tmp_path / "s")
    wr, ws = load_file(str(tmp_path / "r" / "model.safetensors")), load_file(str(tmp_path / "s" / "model.safetensors"))
    assert all(torch.equal(wr[k], ws[k]) for k in ws)
