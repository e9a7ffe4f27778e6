"""Vector (tabular) data: N x D arrays from .npz and CSV files, standardised with the training
split's statistics, MLP networks by default, image-only metrics and scores skipped or refused, and
the detector end to end on scikit-learn's breast-cancer table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab.data import DataConfig, load_data, load_split
from vaelab.errors import DataError, ModelError

from tests.conftest import vaelab_here


def table(tmp_path: Path, n: int = 200, d: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * np.arange(1, d + 1) * 10 + 100
    y = (rng.random(n) < 0.3).astype(np.int64)
    return x, y


def vector_run(tmp_path: Path, n: int, epochs: int):
    """A small VAE trained on ``table`` saved as an npz: (run directory, metrics)."""
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    x, y = table(tmp_path, n=n)
    np.savez(tmp_path / "v.npz", x=x, y=y)
    cfg = RunConfig.build("vae", parse_set([f"data.path={tmp_path / 'v.npz'}", "data.name=npz", "model.latent_dim=2",
                                            "model.mlp_hidden=[16]", f"train.epochs={epochs}", "train.progress_bar=false"]))
    return train_run(cfg, tmp_path / "run")


def test_csv_with_header_and_label_column_reads_as_vectors(tmp_path):
    x, y = table(tmp_path)
    p = tmp_path / "t.csv"
    lines = ["a,b,label,c,d,e"] + [",".join([f"{v:.6f}" for v in r[:2]] + [str(c)] + [f"{v:.6f}" for v in r[2:]]) for r, c in zip(x, y)]
    p.write_text("\n".join(lines) + "\n")
    s = load_split(DataConfig(name="csv", path=str(p), label_column="label", standardize=False), "all")
    assert s.is_vector and s.shape == (5,) and s.images.dtype == torch.float32
    np.testing.assert_allclose(s.images.numpy(), x, rtol=1e-6)
    assert torch.equal(s.labels, torch.from_numpy(y))
    by_index = load_split(DataConfig(name="csv", path=str(p), label_column="2", standardize=False), "all")
    assert torch.equal(by_index.images, s.images)
    p.write_text("a,b\n1,2\n3,x\n")
    with pytest.raises(DataError, match=r"row 3, column 1 is not a number \('x'\)"):
        load_split(DataConfig(name="csv", path=str(p)), "all")
    p.write_text("1,2\n3\n")
    with pytest.raises(DataError, match="another number of columns"):
        load_split(DataConfig(name="csv", path=str(p)), "all")


def test_vectors_are_standardised_with_the_training_splits_statistics(tmp_path):
    x, y = table(tmp_path)
    np.savez(tmp_path / "v.npz", x=x, y=y)
    cfg = DataConfig(name="npz", path=str(tmp_path / "v.npz"), val_fraction=0.0)
    train, _, test = load_data(cfg)
    raw = load_split(DataConfig(name="npz", path=str(tmp_path / "v.npz"), standardize=False), "train")
    np.testing.assert_allclose(cfg.center, raw.images.double().mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(cfg.scale, raw.images.double().std(0, unbiased=False).numpy(), rtol=1e-6)
    np.testing.assert_allclose(train.images.mean(0).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(train.images.std(0, unbiased=False).numpy(), 1, atol=1e-4)
    raw_test = load_split(DataConfig(name="npz", path=str(tmp_path / "v.npz"), standardize=False), "test")
    expect = (raw_test.images.double() - torch.tensor(cfg.center)) / torch.tensor(cfg.scale)
    np.testing.assert_allclose(test.images.numpy(), expect.numpy(), rtol=1e-5, atol=1e-5)


def test_a_vae_on_vectors_gets_an_mlp_a_gaussian_likelihood_and_no_image_metrics(tmp_path):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.detect.scores import make_score
    from vaelab.train import RunConfig

    run, m = vector_run(tmp_path, n=300, epochs=2)
    saved = RunConfig.load(run / "config.yaml")
    assert saved.model.arch == "mlp" and saved.model.likelihood == "gaussian" and saved.model.image_shape == [5]
    assert len(saved.data.center) == 5
    assert "mse" in m and "ssim" not in m and "psnr" not in m
    from html import unescape

    html = unescape((run / "report.html").read_text())  # in the words of vectors: examples and entries, not images and pixels
    assert "nats per example (summed over the vector's entries" in html and "per pixel" not in html and "pixels" not in html
    import vaelab

    model = vaelab.load(run)
    with pytest.raises(ModelError, match="defined for images"):
        make_score("ssim").fit(model, torch.zeros(4, 5))
    with pytest.raises(ModelError, match="vectors of shape \\(N, 5\\)"):
        model.check_input(torch.zeros(2, 4))
    bad = RunConfig.build("vae", parse_set([f"data.path={tmp_path / 'v.npz'}", "data.name=npz", "model.arch=conv"]))
    with pytest.raises(Exception, match="model.arch=conv is for images"):
        train_run(bad, tmp_path / "bad")


def test_tabular_detection_through_the_api_and_the_cli(tmp_path):
    """The breast-cancer table, benign rows as normal: the API's detector and `vaelab detect` agree,
    and both rank malignant rows above benign ones far better than chance."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.metrics import roc_auc_score

    import vaelab
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.detect import AutoencoderDetector
    from vaelab.train import RunConfig

    b = load_breast_cancer()
    rng = np.random.default_rng(0)
    benign, malignant = rng.permutation(np.flatnonzero(b.target == 1)), np.flatnonzero(b.target == 0)
    tr, te = benign[:280], np.concatenate([benign[280:], malignant])
    np.savez(tmp_path / "bc.npz", x_train=b.data[tr], y_train=np.zeros(len(tr), np.int64), x_test=b.data[te],
             y_test=(b.target[te] == 0).astype(np.int64))
    cfg = RunConfig.build("vae", parse_set([f"data.path={tmp_path / 'bc.npz'}", "data.name=npz", "train.epochs=10",
                                            "train.batch_size=64", "train.progress_bar=false"]))
    run, _ = train_run(cfg, tmp_path / "run")
    saved = RunConfig.load(run / "config.yaml")
    test = load_split(saved.data, "test")
    train, val, _ = load_data(saved.data, saved.seed)
    det = AutoencoderDetector(vaelab.load(run)).fit(train, calibration_set=val)  # as `vaelab detect` calibrates
    assert "ssim" not in det.score_.spec() and "latent_gmm" in det.score_.spec()
    auc = roc_auc_score(test.labels.numpy(), det.decision_function(test, clip=False))
    assert auc > 0.85, auc
    p = vaelab_here("detect", str(run), "--data", str(tmp_path / "bc.npz"), "--split", "test", "--anomaly-classes", "1",
                    "--out", str(tmp_path / "det"))
    assert p.returncode == 0, p.stderr
    cli_auc = json.loads((tmp_path / "det" / "metrics.json").read_text())["roc_auc"]
    assert abs(cli_auc - auc) < 1e-9
    import csv

    rows = list(csv.DictReader(open(tmp_path / "det" / "scores.csv")))  # each row's top three columns, largest first
    top = det.explain(test).argmax(1)
    assert [int(r["top_features"].split(" ")[0]) for r in rows] == top.tolist()
    assert all(r["top_features"].count(";") == 2 for r in rows) and (tmp_path / "det" / "figures" / "features.png").is_file()


def _cli(*args, cwd):
    return vaelab_here(*args, cwd=cwd)  # the same main() the command runs, in this process


def test_a_csv_run_from_the_command_line_samples_scores_and_refuses_image_grids(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4)) * [1, 10, 100, 1000] + [0, 5, -50, 500]
    kind = np.where(rng.random(240) < 0.5, "cat", "dog")
    p = tmp_path / "t.csv"
    p.write_text("a,b,kind,c,d\n" + "".join(f"{r[0]},{r[1]},{k},{r[2]},{r[3]}\n" for r, k in zip(x, kind)))
    run = tmp_path / "run"
    q = _cli("train", "vae", "--data", "csv", "--set", f"data.path={p}", "--set", "data.label_column=2", "--latent-dim", "2",
             "--epochs", "2", "--set", "model.mlp_hidden=[16]", "--set", "train.progress_bar=false", "--out", str(run), cwd=tmp_path)
    assert q.returncode == 0, q.stderr  # the label column by index; its strings become classes cat = 0, dog = 1
    s = load_split(DataConfig(name="csv", path=str(p), label_column="kind"), "all")
    assert s.class_names == ["cat", "dog"] and s.labels.tolist() == [int(k == "dog") for k in kind]
    q = _cli("sample", str(run), "-n", "500", "--out", str(tmp_path / "s.csv"), cwd=tmp_path)
    assert q.returncode == 0, q.stderr
    samples = np.loadtxt(tmp_path / "s.csv", delimiter=",")
    assert samples.shape == (500, 4)
    assert 200 < samples[:, 3].mean() < 800  # in the data's own units (column mean 500, sd 1000), not standardised
    from vaelab.cli import main as cli_main

    for cmd in (["reconstruct", str(run), "--out", str(tmp_path / "r.png")], ["traverse", str(run), "--out", str(tmp_path / "t.png")],
                ["sample", str(run), "--out", str(tmp_path / "s.png")]):  # in this process: the same main() the command runs
        assert cli_main(cmd) == 2
        err = capsys.readouterr().err
        assert "vectors" in err and "Traceback" not in err, err
    new = tmp_path / "new.csv"
    new.write_text("a,b,kind,c,d\n" + "".join(f"{r[0]},{r[1]},cat,{r[2]},{r[3]}\n" for r in x[:50]))
    q = _cli("detect", str(run), "--data", str(new), "--out", str(tmp_path / "d"), cwd=tmp_path)
    assert q.returncode == 0, q.stderr
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["n"] == 50  # every row, not a test split
    # class names work where class numbers do: the CSV's named classes mark the anomalies
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("a,b,kind,c,d\n" + "".join(f"{r[0]},{r[1]},{k},{r[2]},{r[3]}\n" for r, k in zip(x[:60], kind[:60])))
    assert cli_main(["detect", str(run), "--data", str(mixed), "--anomaly-classes", "dog", "--out", str(tmp_path / "named")]) == 0
    capsys.readouterr()
    m = json.loads((tmp_path / "named" / "metrics.json").read_text())
    assert m["n"] == 60 and m["n_anomalies"] == int((kind[:60] == "dog").sum()) and m["roc_auc"] is not None
    by_number = cli_main(["detect", str(run), "--data", str(mixed), "--anomaly-classes", "1", "--out", str(tmp_path / "numbered")])
    assert by_number == 0 and json.loads((tmp_path / "numbered" / "metrics.json").read_text())["roc_auc"] == m["roc_auc"]
    capsys.readouterr()
    assert cli_main(["detect", str(run), "--data", str(mixed), "--anomaly-classes", "horse", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "no class named 'horse'" in err and "'cat', 'dog'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    def train_labels(**classes):
        return load_data(DataConfig(name="csv", path=str(p), label_column="kind", **classes))[0].labels.tolist()

    assert train_labels(classes=["cat"]) == train_labels(classes=[0]) and set(train_labels(classes=["cat"])) == {0}
    assert train_labels(drop_classes=["cat"]) == train_labels(classes=[1]) and set(train_labels(drop_classes=["cat"])) == {1}


def test_detectors_standardise_raw_vectors_as_their_model_was_trained():
    """A detector that trains its own model on raw vectors, and one read from a run directory, both
    standardise the vectors; far-away rows score above normal ones."""
    from vaelab.detect import AutoencoderDetector

    rng = np.random.default_rng(0)
    normal = rng.normal(size=(400, 6)) * 50 + 1000
    odd = rng.normal(size=(40, 6)) * 50 + 1400
    det = AutoencoderDetector(epochs=3, overrides={"model": {"mlp_hidden": [16], "latent_dim": 2}}).fit(normal)
    assert det.input_center_ is not None
    np.testing.assert_allclose(det.input_center_.numpy(), normal[: len(normal)].mean(0), rtol=0.02)
    s = det.decision_function(np.vstack([normal[:40], odd]), clip=False)
    assert s[40:].mean() > s[:40].mean()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(np.r_[np.zeros(40), np.ones(40)], s) > 0.9


def test_reconstruction_error_of_vectors_is_not_clamped(tmp_path):
    import vaelab
    from vaelab.evaluate import evaluate
    from vaelab.train import RunConfig

    run, _ = vector_run(tmp_path, n=200, epochs=1)
    model = vaelab.load(run)
    test = load_split(RunConfig.load(run / "config.yaml").data, "test")
    r = model.reconstruct(test.images)
    assert r.min() < 0  # standardised values below the mean stay below zero
    mse = evaluate(model, test, ["recon"])["mse"]
    assert mse == pytest.approx(float((r - test.images).pow(2).mean()), rel=1e-5)
