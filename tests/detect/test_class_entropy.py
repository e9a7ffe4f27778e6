"""Partly labelled training sets and the class_entropy score: the unknown label -1 (ImageSet, npz,
the OOD study's labelled set in the training split), the labels a semi-supervised model is shown and
the weight of its label term, the entropy of an ssvae's class probabilities by hand, the default
combo on a model with a classifier, and its export."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelab.data import DataConfig, ImageSet, load_data
from vaelab.errors import DataError, ModelError
from vaelab.train.batches import labelled_indices, visible_labels

pytestmark = pytest.mark.usefixtures("one_thread")


def _study_file(path, n_train=120, n_labeled=30, seed=0):
    """A tiny file in the OOD-study layout from sklearn's digits (classes 0-2 normal, 3 the anomaly label)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * 255 / 16).round().astype(np.uint8)
    y = d.target
    normal = np.flatnonzero(y < 3)
    rng = np.random.default_rng(seed)
    rng.shuffle(normal)
    test = np.concatenate([normal[n_train + n_labeled : n_train + n_labeled + 40], np.flatnonzero(y >= 3)[:10]])
    y_test = np.where(y[test] < 3, y[test], 3)
    np.savez(path, x_train=x[normal[:n_train]], x_labeled=x[normal[n_train : n_train + n_labeled]],
             y_labeled=y[normal[n_train : n_train + n_labeled]], x_test=x[test], y_test=y_test, anomaly_label=np.array([3]))
    return path


def test_unknown_label_is_minus_one_and_labelled_drops_it():
    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    s = ImageSet(images, torch.tensor([0, -1, 2, -1]))
    assert s.has_unknown_labels
    known = s.labelled()
    assert len(known) == 2 and known.labels.tolist() == [0, 2]
    full = ImageSet(images, torch.tensor([0, 1, 2, 1]))
    assert full.labelled() is full and not full.has_unknown_labels
    with pytest.raises(DataError, match="-1 for an unknown label; found -2"):
        ImageSet(images, torch.tensor([0, -2, 1, 1]))


def test_the_study_layout_trains_on_its_labelled_set_with_the_others_unknown(tmp_path):
    path = _study_file(tmp_path / "study.npz")
    z = np.load(path)
    train = load_data(DataConfig(name="npz", path=str(path), val_fraction=0.0), 0)[0]
    assert len(train) == len(z["x_train"]) + len(z["x_labeled"])
    assert (train.labels == -1).sum() == len(z["x_train"])
    np.testing.assert_array_equal(train.labelled().labels.numpy(), z["y_labeled"])
    np.testing.assert_array_equal(train.labelled().images[:, 0].numpy(), z["x_labeled"])
    # a plain npz may mark unknown labels itself; other negative labels are refused
    np.savez(tmp_path / "partial.npz", x_train=z["x_train"], x_test=z["x_test"], y_train=np.where(np.arange(len(z["x_train"])) % 2, -1, 1))
    part = load_data(DataConfig(name="npz", path=str(tmp_path / "partial.npz"), val_fraction=0.0), 0)[0]
    assert int((part.labels == -1).sum()) == len(z["x_train"]) // 2
    np.savez(tmp_path / "bad.npz", x_train=z["x_train"], x_test=z["x_test"], y_train=np.full(len(z["x_train"]), -3))
    with pytest.raises(DataError, match="-1 for an unknown label"):
        load_data(DataConfig(name="npz", path=str(tmp_path / "bad.npz"), val_fraction=0.0), 0)


def test_visible_labels_are_drawn_among_the_known_ones():
    y = torch.arange(40) % 5
    for n in (None, 7, 40):  # every label known: the draw the trainer always made
        keep = labelled_indices(len(y), n, 3)
        expect = torch.full_like(y, -1)
        expect[keep] = y[keep]
        assert torch.equal(visible_labels(y, n, 3), expect)
    y[::2] = -1
    v = visible_labels(y, 7, 3)
    assert int((v >= 0).sum()) == 7 and bool((y[v >= 0] >= 0).all()) and torch.equal(v[v >= 0], y[v >= 0])
    assert torch.equal(visible_labels(y, None, 3), y)


@pytest.fixture(scope="module")
def ssvae_run(tmp_path_factory):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    tmp = tmp_path_factory.mktemp("classent")
    path = _study_file(tmp / "study.npz")
    cfg = RunConfig.build("ssvae", parse_set([
        "data.name=npz", f"data.path={path}", "data.val_fraction=0", "model.latent_dim=4", "model.conv_channels=[8]",
        "model.hidden_dim=32", "train.epochs=3", "train.batch_size=32", "train.progress_bar=false"]))
    run, _ = train_run(cfg, tmp / "run")
    return run, path, load_data(cfg.data, cfg.seed)[0]


def test_ssvae_weighs_its_label_term_by_the_labels_it_was_shown(ssvae_run):
    import vaelab

    run, path, train = ssvae_run
    model = vaelab.load(run)
    n_known = int((train.labels >= 0).sum())
    assert model.config.labelled_images == n_known == len(np.load(path)["x_labeled"])
    assert model.config.label_scale == pytest.approx(len(train) / n_known)
    assert model.config.n_classes == 3  # from the training labels 0-2; the test split's anomaly label 3 is no class


def test_class_entropy_by_hand_and_in_the_default_combo(ssvae_run):
    import vaelab
    from vaelab.detect import AutoencoderDetector, load_detection_set
    from vaelab.detect.scores import ClassEntropyScore, score_images

    run, path, train = ssvae_run
    model = vaelab.load(run)
    x = train.images[:50]
    got = score_images(model, ClassEntropyScore().fit(model, train.images), x)
    p = model.predict_proba(x.float() / 255).double()
    h = -(p * p.log()).sum(1)
    torch.testing.assert_close(got, torch.log(h + 1e-6), rtol=1e-4, atol=1e-4)
    assert bool((got >= np.log(1e-6) - 1e-9).all()) and bool((got <= np.log(np.log(model.config.n_classes) + 1e-6)).all())
    det = AutoencoderDetector(run, seed=0).fit(train)
    assert det.score_.spec().endswith("class_energy() + class_energy() + class_entropy())")
    target, y, _ = load_detection_set(str(path), DataConfig(name="npz", path=str(path)), "rep1")
    assert det.raw_scores(target).shape == (len(y),)


def test_class_energy_by_hand_and_as_a_combo_member(ssvae_run):
    """class_energy is -logsumexp of the classifier's logits on the posterior mean (computed here from
    the logits' own max-shifted sum), a shift of every logit by c moves it by -c, and it combines
    with the other members by name."""
    import vaelab
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.scores import ClassEnergyScore, score_images

    run, _, train = ssvae_run
    model = vaelab.load(run)
    x = train.images[:50]
    got = score_images(model, ClassEnergyScore().fit(model, train.images), x)
    with torch.no_grad():
        f = model.logits(model.encode(x.float() / 255).mean).double()
    top = f.max(1).values
    torch.testing.assert_close(got.double(), -(top + torch.log(torch.exp(f - top[:, None]).sum(1))), rtol=1e-5, atol=1e-5)
    # the energy keeps the logits' scale where the entropy does not: raising every logit by 1 lowers it by 1
    bias = model.classifier.bias if hasattr(model.classifier, "bias") else model.classifier[-1].bias
    with torch.no_grad():
        bias += 1.0
    torch.testing.assert_close(score_images(model, ClassEnergyScore().fit(model, train.images), x), got - 1.0,
                               rtol=1e-5, atol=1e-5)
    det = AutoencoderDetector(run, "combo", combo=("ssim", "class_energy"), seed=0).fit(train)
    assert det.score_.spec() == "combo(zscore: ssim() + class_energy())"


def test_a_model_without_a_classifier_keeps_the_four_member_combo():
    from vaelab.detect import DEFAULT_COMBO, AutoencoderDetector
    from vaelab.detect.scores import ClassEnergyScore, ClassEntropyScore
    from vaelab.models import build, make_config

    vae = build(make_config("vae", {"arch": "mlp", "latent_dim": 2}), (1, 8, 8))
    with pytest.raises(ModelError, match="needs a model with a classifier"):
        ClassEntropyScore().check(vae)
    with pytest.raises(ModelError, match="'class_energy' score needs a model with a classifier") as err:
        ClassEnergyScore().check(vae)
    assert "class_entropy" not in str(err.value).split("Use one of:")[1]  # no classifier score offered instead
    assert tuple(m.name for m in AutoencoderDetector(vae)._make_score(vae).members) == DEFAULT_COMBO


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_the_ssvae_default_combo_exports(ssvae_run, fmt, tmp_path):
    from tests.conftest import require_module

    if fmt == "onnx":  # the TorchScript bundle needs only torch
        require_module("onnx")
        require_module("onnxruntime")
    import vaelab
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.export import export_detector
    from vaelab.exported import load_exported

    run, _, train = ssvae_run
    model = vaelab.load(run)
    for score in ("class_entropy", "class_energy", "combo"):
        det = AutoencoderDetector(model, score, seed=0).fit(train)
        scorer = load_exported(export_detector(det, tmp_path / f"bundle-{score}", fmt))
        x = train.images[:64]
        got = scorer((x.float() / 255).numpy())["raw_score"]
        raw = det.raw_scores(x)
        np.testing.assert_allclose(got, raw, rtol=1e-4, atol=1e-4 * (1.0 if score != "class_entropy" else 1e-2))


def test_the_detector_trains_an_ssvae_on_a_partly_labelled_set(tmp_path):
    from vaelab.detect import AutoencoderDetector

    path = _study_file(tmp_path / "study.npz")
    train = load_data(DataConfig(name="npz", path=str(path), val_fraction=0.0), 0)[0]
    small = {"model": {"latent_dim": 2, "conv_channels": [4], "hidden_dim": 16}}
    det = AutoencoderDetector(epochs=1, overrides=small).fit(train)
    assert det.model_name_ == "ssvae" and det.score_.spec().endswith("class_energy() + class_energy() + class_entropy())")
    one_class = train.labelled().select_classes([1])  # every label known, one class: nothing to classify
    det = AutoencoderDetector(epochs=1, overrides=small).fit(one_class)
    assert det.model_name_ == "vae" and len(det.score_.members) == 4
