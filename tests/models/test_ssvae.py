"""The semi-supervised VAE: the VAE's loss plus xi times the label NLL of the labelled images, and
the trainer plumbing that brings it the labels."""
import csv
import math

import pytest
import torch
import torch.nn.functional as F

import vaelab
from vaelab.api import train_run
from vaelab.config import parse_set
from vaelab.data import DataConfig, load_data
from vaelab.errors import ConfigError, ModelError
from vaelab.models import build, make_config
from vaelab.train import RunConfig, TrainConfig
from vaelab.train.batches import labelled_indices, make_loader, visible_labels
from vaelab.train.lit import LitAutoencoder

SHAPE = (1, 8, 8)


pytestmark = pytest.mark.usefixtures("one_thread")


def mk(name, **kw):
    torch.manual_seed(0)
    return build(make_config(name, {"arch": "mlp", "mlp_hidden": [32], "latent_dim": 4, **kw}), SHAPE)


def labels_with_gaps(n=16):
    y = torch.arange(n) % 10
    y[::3] = -1
    return y


@pytest.mark.parametrize("classify_on", ["mean", "sample"])
def test_xi_zero_is_the_vae(classify_on):
    vae, ss = mk("vae"), mk("ssvae", xi=0.0, classify_on=classify_on)
    missing = ss.load_state_dict(vae.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("classifier.") for k in missing)
    x = torch.rand(16, *SHAPE)
    for labels in (None, labels_with_gaps()):
        torch.manual_seed(3)
        a = vae.loss(x, kl_weight=0.7)
        torch.manual_seed(3)
        b = ss.loss(x, kl_weight=0.7, labels=labels)
        assert torch.equal(a.loss, b.loss)
        for k in ("rec", "kl", "nelbo"):
            assert torch.equal(a.terms[k], b.terms[k])


def test_label_term_by_hand():
    m = mk("ssvae", xi=2.0, n_labels=10, dataset_size=100, beta=1.5)
    assert m.config.label_scale == 10.0
    x, y = torch.rand(16, *SHAPE), labels_with_gaps()
    torch.manual_seed(4)
    out = m.loss(x, labels=y)
    torch.manual_seed(4)
    mu, logvar = m.posterior_params(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    rec = -m.decode(z).log_prob(x)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    known = y >= 0
    ce = torch.zeros(16)
    ce[known] = F.cross_entropy(m.classifier(mu[known]), y[known], reduction="none")  # on the posterior mean
    torch.testing.assert_close(out.terms["label_nll"], ce)
    torch.testing.assert_close(out.loss, (rec + 1.5 * kl + 2.0 * 10.0 * ce).mean())
    assert out.terms["labelled"].sum() == known.sum()
    # unknown labels add nothing: changing them changes nothing
    torch.manual_seed(4)
    y2 = y.clone()
    y2[~known] = -7
    assert torch.equal(m.loss(x, labels=y2).loss, out.loss)


def test_classifier_learns_from_few_labels():
    """With xi > 0 the classifier on z learns from 200 labels of the digits; with xi = 0 it gets
    no gradient and stays at its initial (chance-level) guesses."""
    train, _, test = load_data(DataConfig(name="digits", val_fraction=0.0))
    y_vis = visible_labels(train.labels, 200, seed=0)
    accs = {}
    for xi in (0.0, 1.0):
        m = mk("ssvae", xi=xi, n_labels=200, dataset_size=len(train), mlp_hidden=[64], latent_dim=8)
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(0)
        for _ in range(15):
            for idx in torch.randperm(len(train), generator=g).split(128):
                loss = m.loss(train.images[idx].float() / 255, labels=y_vis[idx]).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
        accs[xi] = float((m.predict(test.float()) == test.labels).float().mean())
    assert accs[1.0] > 0.7 and accs[0.0] < 0.3, accs  # measured: 0.87 and 0.06


def test_bad_options_and_labels():
    for kw, msg in (({"xi": -1.0}, "xi"), ({"n_labels": 0}, "n_labels"), ({"n_classes": 1}, "n_classes"),
                    ({"classifier_hidden": -1}, "classifier_hidden")):
        with pytest.raises(ConfigError, match=msg):
            make_config("ssvae", kw)
    m = mk("ssvae", n_classes=3)
    with pytest.raises(ModelError, match="n_classes"):
        m.loss(torch.rand(2, *SHAPE), labels=torch.tensor([0, 5]))
    with pytest.raises(ModelError, match="one entry per image"):
        m.loss(torch.rand(2, *SHAPE), labels=torch.tensor([0, 1, 2]))


def test_visible_labels_are_a_seeded_subset():
    y = torch.arange(1000) % 10
    v = visible_labels(y, 100, seed=5)
    keep = v >= 0
    assert int(keep.sum()) == 100 and torch.equal(v[keep], y[keep])
    assert torch.equal(keep.nonzero().squeeze(1), labelled_indices(1000, 100, 5))
    assert torch.equal(v, visible_labels(y, 100, seed=5))
    assert not torch.equal(v, visible_labels(y, 100, seed=6))
    assert torch.equal(visible_labels(y, None, 0), y)
    # independent of the batch order of the first epoch (a randperm of the same seed)
    first = torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:100]
    assert (visible_labels(y, 100, seed=0)[first] >= 0).sum() < 50


def test_trainer_gives_labels_only_to_models_that_take_them():
    x, y = torch.rand(8, *SHAPE), labels_with_gaps(8)
    for name, takes in (("vae", False), ("ssvae", True)):
        model = mk(name)
        assert model.takes_labels is takes
        lit = LitAutoencoder(model, TrainConfig(), steps_per_epoch=1)
        out = lit._loss((x, y), kl_weight=1.0)
        assert ("label_nll" in out.terms) is takes
        assert "label_nll" not in lit._loss(x).terms
    images = (torch.rand(10, *SHAPE) * 255).to(torch.uint8)
    xb, yb = next(iter(make_loader(images, 4, 0, shuffle=True, labels=torch.arange(10))))
    torch.testing.assert_close(xb, images[yb].float() / 255)  # labels travel with their images


def test_ssvae_trains_on_digits_and_reports_accuracy(tmp_path):
    cfg = RunConfig.build("ssvae", parse_set([
        "data.name=digits", "model.arch=mlp", "model.mlp_hidden=[32]", "model.latent_dim=4", "model.n_labels=300",
        "model.xi=1.0", "train.epochs=1", "train.batch_size=64", "train.progress_bar=false", "data.test_limit=200"]))
    run_dir, metrics = train_run(cfg, tmp_path / "ss")
    assert 0.0 <= metrics["accuracy"] <= 1.0
    model = vaelab.load(run_dir)
    assert model.config.dataset_size == metrics["n_train"] and model.config.label_scale == pytest.approx(metrics["n_train"] / 300)
    _, _, test = load_data(cfg.data, cfg.seed)
    assert float((model.predict(test.float()) == test.labels).double().mean()) == pytest.approx(metrics["accuracy"])
    rows = list(csv.DictReader(open(run_dir / "logs" / "metrics.csv")))
    labelled = [float(r["train/labelled"]) for r in rows if r.get("train/labelled")]
    assert labelled and sum(labelled) / len(labelled) == pytest.approx(300 / metrics["n_train"], abs=0.08)
    assert all(not r.get("val/label_nll") for r in rows)  # validation batches carry no labels
    assert not math.isnan(metrics["nelbo"])
