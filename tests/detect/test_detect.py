"""Anomaly / OOD detection: the metrics against scikit-learn, the detector on a synthetic one-class
problem (bright squares are normal, noise is not), every score kind, thresholds, the one-class
protocol, the OOD-study layout from MNIST and the `vaelab detect` / `vaelab bench one-class` CLI."""
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from vaelab.detect import SCORE_NAMES, AutoencoderDetector, evaluate_detection, load_ood_study, one_class_protocol
from vaelab.errors import ConfigError, DataError, ModelError

from tests.conftest import vaelab_here

TINY = {"model": {"arch": "mlp", "mlp_hidden": [32], "latent_dim": 4}, "train": {"batch_size": 16}}


def cli(*args, check=True):
    p = vaelab_here(*args)  # the same main() the command runs, in this process (tests/cli/test_cli.py runs the console script)
    if check and p.returncode != 0:
        raise AssertionError(f"vaelab {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def squares(n: int, g: torch.Generator, size: int = 16) -> torch.Tensor:
    """Bright filled squares of side 3..7 at random places on black, floats in [0, 1]."""
    side = torch.randint(3, 8, (n, 1, 1), generator=g)
    top, left = (torch.randint(0, size - 7, (n, 1, 1), generator=g) for _ in range(2))
    yy, xx = torch.arange(size).view(1, size, 1), torch.arange(size).view(1, 1, size)
    inside = (yy >= top) & (yy < top + side) & (xx >= left) & (xx < left + side)
    return (inside.float() * (0.8 + 0.2 * torch.rand(n, 1, 1, generator=g))).unsqueeze(1)


@pytest.fixture(scope="module")
def synthetic():
    g = torch.Generator().manual_seed(0)
    return squares(512, g), squares(128, g), torch.rand(128, 1, 16, 16, generator=g)


@pytest.fixture(scope="module")
def fitted(synthetic, tmp_path_factory):
    """A detector that trained its own tiny MLP VAE (vaelab.train.fit) on the squares only."""
    run = tmp_path_factory.mktemp("det") / "run"
    return AutoencoderDetector(score="mse", epochs=2, overrides=TINY, train_dir=run).fit(synthetic[0]), run


# -- evaluation ----------------------------------------------------------------------------------
def test_evaluate_detection_agrees_with_sklearn():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.2).astype(int)
    s = rng.normal(size=500) + 1.5 * y
    m = evaluate_detection(y, s, 0.8)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    pred = s > 0.8
    tp, fp = int((pred & (y == 1)).sum()), int((pred & (y == 0)).sum())
    fn, tn = int((~pred & (y == 1)).sum()), int((~pred & (y == 0)).sum())
    assert m["confusion_matrix"] == [[tn, fp], [fn, tp]] and tn + fp + fn + tp == 500
    assert m["tpr"] == pytest.approx(tp / (tp + fn)) and m["fpr"] == pytest.approx(fp / (fp + tn))
    assert m["precision"] == pytest.approx(tp / (tp + fp))
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["n_flagged"] == tp + fp and m["n_anomalies"] == y.sum()
    # a perfectly separating score, and one class only (AUC undefined)
    assert evaluate_detection(y, y + 0.1 * s.clip(0, 1), 0.5)["roc_auc"] == 1.0
    assert evaluate_detection(np.zeros(5, int), np.arange(5.0), 2)["roc_auc"] is None
    with pytest.raises(DataError, match="1 \\(anomaly\\) or 0"):
        evaluate_detection([0, 2, 1], [0.1, 0.2, 0.3], 0.5)


# -- the detector ----------------------------------------------------------------------------------
# ssim and patch_mse are left out: the 2-epoch model reconstructs the squares as blurs whose SSIM
# is as poor as that of noise (measured: AUROC 0.56), and whose error is all in one place, the
# square, where noise spreads its error thinly (patch_mse, measured: AUROC 0.59). Their values are
# checked against scikit-image / a brute-force window search below, and their detection power is
# measured on real data in benchmarks/detect_scores.py and benchmarks/one_class.py. class_entropy and
# class_energy need a model with a classifier (tests/detect/test_class_entropy.py); restoration and transform_nll an
# arnet (tests/detect/test_corrected.py), head_knn one with its head network (tests/detect/test_head_knn.py). complexity subtracts the input's own complexity, so noise, the most complex
# input there is, is by design not an anomaly to it: its value is checked against the codec's in test_corrected.py and
# its detection power measured in benchmarks/detection/far_ood.py. llr needs an hvae (tests/detect/test_llr.py).
@pytest.mark.parametrize("score", [s for s in SCORE_NAMES if s not in ("ssim", "patch_mse", "class_entropy", "class_energy",
                                                                       "restoration", "transform_nll", "head_knn", "complexity",
                                                                       "llr")])
def test_every_score_ranks_the_other_class_higher(score, fitted, synthetic):
    det, _ = fitted
    normal, held_out, noise = synthetic
    d = AutoencoderDetector(det.model_, score, nll_k=16).fit(normal)
    s_normal, s_noise = d.decision_function(held_out, clip=False), d.decision_function(noise, clip=False)
    assert s_normal.shape == (128,) and np.isfinite(s_noise).all()
    y = np.r_[np.zeros(128), np.ones(128)]
    assert roc_auc_score(y, np.r_[s_normal, s_noise]) > 0.95, score
    assert d.decision_scores_.min() == 0.0 and d.decision_scores_.max() == 1.0  # min-max of the training scores


@pytest.mark.parametrize("source,dims", [("latent", None), ("feature", 8)])
def test_knn_scores_agree_with_scikit_learn_and_leave_each_training_image_out(source, dims, fitted, synthetic):
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    normal, held_out, _ = synthetic
    model = fitted[0].model_
    name = f"{source}_knn"  # latent_knn, feature_knn
    # calibration=0: fitted and scored on the same images, the case that leaving each image out is for
    d = AutoencoderDetector(model, name, normalize=False, knn_k=3, feature_dims=dims or 64, calibration=0).fit(normal)
    with torch.no_grad():
        rep = (lambda x: model.encode(x).mean) if source == "latent" else model.features
        tr, te = rep(normal).double().numpy(), rep(held_out).double().numpy()
    if dims is None:  # standardised per unit
        mu, sd = tr.mean(0), tr.std(0, ddof=1)
        a, b = (tr - mu) / sd, (te - mu) / sd
    else:  # top principal components, whitened
        pca = PCA(dims, whiten=True, svd_solver="full").fit(tr)
        a, b = pca.transform(tr), pca.transform(te)
    nn = NearestNeighbors(n_neighbors=4).fit(a)
    np.testing.assert_allclose(d.raw_scores(held_out), nn.kneighbors(b, 3)[0].mean(1), rtol=1e-4)
    # the training images' own scores (raw, normalize=False): each image's nearest neighbour, itself, is left out
    np.testing.assert_allclose(d.decision_scores_, nn.kneighbors(a)[0][:, 1:].mean(1), rtol=1e-4)


def test_ssim_score_agrees_with_scikit_image(fitted, synthetic):
    from skimage.metrics import structural_similarity

    normal, held_out, _ = synthetic
    model = fitted[0].model_
    d = AutoencoderDetector(model, "ssim", normalize=False).fit(normal)
    x = held_out[:6]
    rec = model.reconstruct(x)
    ref = [1 - structural_similarity(r[0].numpy().astype(np.float64), o[0].numpy().astype(np.float64), data_range=1.0,
                                     gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
           for r, o in zip(rec, x)]
    np.testing.assert_allclose(d.raw_scores(x), ref, atol=2e-3)


def test_patch_mse_is_the_largest_window_mean_of_the_squared_error(fitted, synthetic):
    normal, held_out, _ = synthetic
    model = fitted[0].model_
    x = held_out[:5]
    err = (model.reconstruct(x) - x).pow(2)[:, 0].double().numpy()  # [5, 16, 16]

    def brute(w):  # every w x w window, by loops
        n = 16 - w + 1
        return np.array([max(e[i:i + w, j:j + w].mean() for i in range(n) for j in range(n)) for e in err])

    for w in (1, 3, 7):
        d = AutoencoderDetector(model, "patch_mse", normalize=False, patch_size=w).fit(normal)
        np.testing.assert_allclose(d.raw_scores(x), brute(w), rtol=1e-5)
    np.testing.assert_allclose(AutoencoderDetector(model, "patch_mse", normalize=False, patch_size=1).fit(normal)
                               .raw_scores(x), err.reshape(5, -1).max(1), rtol=1e-5)  # 1 pixel: the largest error
    whole = AutoencoderDetector(model, "mse", normalize=False).fit(normal).raw_scores(x)
    for w in (16, 40):  # the whole image (a larger window is clipped to it): the mean squared error
        d = AutoencoderDetector(model, "patch_mse", normalize=False, patch_size=w).fit(normal)
        np.testing.assert_allclose(d.raw_scores(x), whole, rtol=1e-5)
    with pytest.raises(ConfigError, match="patch_size"):
        AutoencoderDetector(model, "patch_mse", patch_size=0).fit(normal)


def test_patch_mse_ranks_a_local_defect_above_spread_error_of_the_same_total():
    """The reason for the score: two images whose squared error sums to the same total, one spread
    thinly everywhere, one concentrated in a 3x3 blob; mse ties them, patch_mse flags the blob."""
    from vaelab.detect.scores import MSEScore, PatchMSEScore

    class Identity(torch.nn.Module):  # reconstructs a fixed target: the error is what we put in
        def __init__(self, target):
            super().__init__()
            self.target = target

        def encode(self, x):
            return type("Q", (), {"mean": x})()

        def decode(self, z):
            return self.target

        def mean_image(self, p):
            return p

        def reconstruct(self, x):
            return self.mean_image(self.decode(self.encode(x).mean))

    target = torch.zeros(2, 1, 16, 16)
    x = torch.zeros(2, 1, 16, 16)
    x[0] += 0.6 / 16  # spread: every pixel off by 0.0375, total squared error 256 * 0.0375^2 = 0.36
    x[1, 0, 5:8, 5:8] = 0.2  # blob: 9 pixels off by 0.2, total 9 * 0.04 = 0.36
    m = Identity(target)
    mse, patch = MSEScore().batch(m, x), PatchMSEScore(3).batch(m, x)
    assert mse[0].item() == pytest.approx(mse[1].item(), rel=1e-5)
    assert patch[1] > 20 * patch[0]


def test_feature_gmm_whitens_the_top_components(fitted, synthetic):
    from vaelab.detect.scores import Whitener

    normal = synthetic[0]
    with torch.no_grad():
        f = fitted[0].model_.features(normal).double()
    w = Whitener(6).fit(f)
    v = w.transform(f)
    assert v.shape == (len(normal), 6)
    np.testing.assert_allclose(torch.cov(v.T).numpy(), np.eye(6), atol=1e-6)  # unit variance, uncorrelated
    d = AutoencoderDetector(fitted[0].model_, "feature_gmm", normalize=False, feature_dims=6, gmm_components=2).fit(normal)
    assert d.score_.gmm_.means_.shape == (2, 6)
    with pytest.raises(ConfigError, match="whitened dimension"):
        AutoencoderDetector(fitted[0].model_, "feature_knn", feature_dims=0).fit(normal)


def test_trained_run_directory_backs_the_same_detector(fitted, synthetic):
    det, run = fitted
    assert (run / "config.yaml").is_file() and (run / "model.safetensors").is_file()
    again = AutoencoderDetector(run, "mse").fit(synthetic[0])
    np.testing.assert_allclose(again.decision_scores_, det.decision_scores_, rtol=1e-5, atol=1e-6)
    assert again.threshold_ == pytest.approx(det.threshold_, rel=1e-5)


@pytest.mark.parametrize("contamination", [0.05, 0.1, 0.3])
def test_contamination_sets_the_fraction_flagged(contamination, fitted, synthetic):
    normal = synthetic[0]
    d = AutoencoderDetector(fitted[0].model_, "mse", contamination=contamination).fit(normal)
    # the threshold is a quantile of the held-out part's scores (a tenth of the images, never fitted)
    assert d.n_calibration_ == round(0.1 * len(normal)) and len(d.calibration_scores_) == d.n_calibration_
    # the split-conformal quantile: the k-th smallest held-out score, k = ceil((n + 1)(1 - contamination)), so that
    # a new normal image lies above it with probability (n + 1 - k) / (n + 1), at most the contamination
    n = d.n_calibration_
    k = int(np.ceil((n + 1) * (1 - contamination) - 1e-9))
    assert d.threshold_ == np.sort(d.calibration_scores_)[k - 1]
    assert int((d.calibration_scores_ > d.threshold_).sum()) == n - k
    assert contamination - 1 / (n + 1) <= (n + 1 - k) / (n + 1) <= contamination
    old = AutoencoderDetector(fitted[0].model_, "mse", contamination=contamination, calibration=0).fit(normal)
    assert old.threshold_ == pytest.approx(np.quantile(old.decision_scores_, 1 - contamination))
    assert abs(old.labels_.mean() - contamination) <= 1.5 / len(normal)
    np.testing.assert_array_equal(d.predict(normal), d.labels_)
    np.testing.assert_array_equal(d.fit_predict(normal), d.labels_)


def test_calibration_holds_out_normal_images_that_nothing_was_fitted_on(fitted, synthetic):
    """The normalisation and the threshold come from normal images that the score's state never saw: the
    held-out tenth of X by default, or the calibration_set given; and that is what makes the contamination
    the share of unseen normal images flagged, where the fitted images' own scores undercount it."""
    from vaelab.detect.detector import calibration_split

    normal, held_out, _ = synthetic
    model = fitted[0].model_
    d = AutoencoderDetector(model, "latent_knn", knn_k=3, seed=4).fit(normal)
    fit_idx, cal_idx = calibration_split(len(normal), 0.1, 4)
    assert len(cal_idx) == d.n_calibration_ == 51 and not set(fit_idx) & set(cal_idx) and len(fit_idx) + len(cal_idx) == 512
    assert len(d.score_.train_) == len(fit_idx)  # the kNN's reference set: the fitted part only
    cal_raw = d.raw_scores(normal[cal_idx])
    assert (d.raw_min_, d.raw_max_) == pytest.approx(tuple(np.quantile(cal_raw, [0.5, 0.999])), rel=1e-6)
    np.testing.assert_allclose(d.decision_scores_[cal_idx], np.clip(d.calibration_scores_, 0, 1), rtol=1e-6)
    assert d.decision_scores_.shape == (512,) and d.calibrated_on_ == "held-out part of X"
    # leave-one-out scores of fitted images still sit below those of unseen ones: calibrating on them flags more
    on_fitted = AutoencoderDetector(model, "latent_knn", knn_k=3, seed=4, calibration=0).fit(normal)
    assert on_fitted.threshold_ <= 1 and on_fitted.raw_threshold_ < d.raw_threshold_
    given = AutoencoderDetector(model, "latent_knn", knn_k=3).fit(normal, calibration_set=held_out)
    assert given.n_calibration_ == 128 and len(given.score_.train_) == 512 and given.calibrated_on_ == "calibration_set"
    assert given.threshold_ == pytest.approx(np.sort(given.decision_function(held_out, clip=False))[116])  # ceil(129 * 0.9) = 117th
    for bad in (1.0, -0.1, "a", True):
        with pytest.raises(ConfigError, match="calibration is the fraction"):
            AutoencoderDetector(model, "mse", calibration=bad).fit(normal)
    with pytest.raises(DataError, match="too few"):
        AutoencoderDetector(model, "mse", calibration=0.5).fit(normal[:3])
    with pytest.raises(DataError, match="calibration_set"):
        AutoencoderDetector(model, "mse").fit(normal, calibration_set=torch.rand(4, 1, 8, 8))


def test_normalised_scores_threshold_and_sign_conventions(fitted, synthetic):
    normal, held_out, noise = synthetic
    d = AutoencoderDetector(fitted[0].model_, "nelbo", threshold=0.3, calibration=0).fit(normal)  # the study's rule
    assert d.threshold_ == 0.3
    for x in (held_out, noise, (noise * 255).round().to(torch.uint8)):
        s = d.decision_function(x)
        assert s.min() >= 0.0 and s.max() <= 1.0
        np.testing.assert_array_equal(d.score_samples(x), -s)
        np.testing.assert_array_equal(d.predict(x), (d.decision_function(x, clip=False) > 0.3).astype(int))
    assert d.decision_function(noise, clip=False).max() > 1.0 and d.predict(noise).mean() > 0.9
    raw = AutoencoderDetector(fitted[0].model_, "mse", normalize=False, threshold=0.01, calibration=0).fit(normal)
    assert raw.raw_threshold_ == 0.01 and raw.decision_function(noise).max() > 0.01
    # the default normalisation's anchors: the training scores' median and 99.9th percentile
    assert raw.norm_quantiles_ == (0.5, 0.999)
    assert (raw.raw_min_, raw.raw_max_) == pytest.approx(tuple(np.quantile(raw.raw_scores(normal), [0.5, 0.999])), rel=1e-5)
    mm = AutoencoderDetector(fitted[0].model_, "mse", normalize=False, threshold=0.01, norm_range="minmax", calibration=0).fit(normal)
    assert mm.raw_scores(normal).min() == pytest.approx(mm.raw_min_) and mm.decision_scores_.max() == mm.raw_max_


def test_combo_standardises_its_members(fitted, synthetic):
    normal, held_out, _ = synthetic
    model = fitted[0].model_
    mse = AutoencoderDetector(model, "mse", normalize=False, calibration=0).fit(normal)
    one = AutoencoderDetector(model, "combo", normalize=False, combo=("mse",), calibration=0).fit(normal)
    train, test = mse.raw_scores(normal), mse.raw_scores(held_out)
    np.testing.assert_allclose(one.raw_scores(held_out), (test - train.mean()) / train.std(), rtol=1e-6, atol=1e-9)
    rank = AutoencoderDetector(model, "combo", normalize=False, combo=("mse", "mahalanobis"), combo_method="rank",
                               calibration=0).fit(normal)
    r = rank.raw_scores(held_out)
    assert r.min() >= 0.0 and r.max() <= 1.0
    assert rank.decision_scores_.mean() == pytest.approx(0.5, abs=0.01)  # mid-ranks of the training set itself


def test_detector_errors_name_the_problem(fitted, synthetic):
    from vaelab.models import build, make_config

    normal = synthetic[0]
    ae = build(make_config("ae", {"arch": "mlp", "mlp_hidden": [16], "latent_dim": 2}), (1, 16, 16))
    for score in ("nll", "nelbo"):
        with pytest.raises(ModelError, match="has_density"):
            AutoencoderDetector(ae, score).fit(normal)
    AutoencoderDetector(ae, "latent_gmm").fit(normal)  # latent scores need no prior
    with pytest.raises(ConfigError, match="unknown anomaly score"):
        AutoencoderDetector(ae, "psnr").fit(normal)
    with pytest.raises(ConfigError, match="contamination"):
        AutoencoderDetector(ae, contamination=0.9).fit(normal)
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        AutoencoderDetector(ae, threshold=2.0).fit(normal)
    with pytest.raises(ConfigError, match="contamination .* or an explicit threshold"):
        AutoencoderDetector(ae, contamination=None).fit(normal)
    with pytest.raises(ModelError, match="not fitted"):
        AutoencoderDetector(ae).predict(normal)
    with pytest.raises(ModelError, match="expects images of shape"):
        AutoencoderDetector(ae).fit(torch.rand(8, 1, 12, 12))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        AutoencoderDetector(ae).fit(normal * 3)


# -- the one-class protocol ------------------------------------------------------------------------
def test_one_class_protocol_end_to_end(tmp_path):
    logs: list[str] = []
    over = {"model": {"arch": "mlp", "mlp_hidden": [32], "latent_dim": 3}, "train": {"batch_size": 32}}
    one_class_protocol("digits", "vae", epochs=1, seeds=1, classes=[0, 1], score="mse,mahalanobis",
                       overrides=over, out_dir=tmp_path, log=logs.append)
    saved = json.loads((tmp_path / "one_class.json").read_text())
    assert saved["scores"] == ["mse", "mahalanobis"] and saved["classes"] == [0, 1] and saved["seeds"] == [0]
    for s in saved["scores"]:
        per = saved["auroc"][s]["per_class"]
        assert set(per) == {"0", "1"} and all(0 <= v["mean"] <= 1 and len(v["runs"]) == 1 for v in per.values())
        assert saved["auroc"][s]["mean"] == pytest.approx((per["0"]["mean"] + per["1"]["mean"]) / 2)
    assert [(x["class"], x["seed"]) for x in saved["runs"]] == [(0, 0), (1, 0)]
    lines = saved["table"].splitlines()
    assert lines[1].split()[:2] == ["normal", "class"] and [ln.split()[0] for ln in lines[3:5]] == ["0", "1"]
    assert lines[-1].startswith("mean")
    # independent check of one AUROC: the reconstruction MSE of the saved model, by hand
    import vaelab
    from vaelab.data import DataConfig, load_split

    model = vaelab.load(tmp_path / "runs" / "class1-seed0")
    test = load_split(DataConfig(name="digits"), "test", apply_class_filter=False)
    x = test.float()
    mse = (model.reconstruct(x) - x).pow(2).flatten(1).mean(1).numpy()
    assert saved["auroc"]["mse"]["per_class"]["1"]["mean"] == pytest.approx(roc_auc_score(test.labels != 1, mse), abs=1e-6)
    assert not (tmp_path / "runs" / "class1-seed0" / "checkpoints" / "last.ckpt").exists()
    # a second call into the same directory reuses the finished runs
    logs.clear()
    again = one_class_protocol("digits", "vae", epochs=1, seeds=1, classes=[0, 1], score="mse", overrides=over,
                               out_dir=tmp_path, log=logs.append)
    assert sum("done before" in ln for ln in logs) == 2
    assert again["auroc"]["mse"]["mean"] == saved["auroc"]["mse"]["mean"]
    # a result computed under another definition of a score (as after a change of a default) is
    # scored again from the saved model, the others are kept
    done = tmp_path / "runs" / "class1-seed0" / "result.json"
    row = json.loads(done.read_text())
    assert row["score_specs"] == {"mse": "mse()", "mahalanobis": "mahalanobis()"}
    row["score_specs"]["mahalanobis"] = "mahalanobis(old=1)"
    row["auroc"]["mahalanobis"] = -1.0
    done.write_text(json.dumps(row))
    logs.clear()
    again = one_class_protocol("digits", "vae", epochs=1, seeds=1, classes=[1], score="mse,mahalanobis",
                               overrides=over, out_dir=tmp_path, log=logs.append)
    assert not any("done before" in ln for ln in logs)
    assert again["auroc"]["mahalanobis"]["per_class"]["1"]["mean"] == saved["auroc"]["mahalanobis"]["per_class"]["1"]["mean"]
    row2 = json.loads(done.read_text())
    assert row2["score_specs"]["mahalanobis"] == "mahalanobis()" and row2["score_seconds"]["mse"] == row["score_seconds"]["mse"]
    # a run finished by an older vaelab, whose saved config lacks a key added since, is still reused
    del row2["requested_config"]["model"]["res_blocks"]
    done.write_text(json.dumps(row2))
    logs.clear()
    one_class_protocol("digits", "vae", epochs=1, seeds=1, classes=[1], score="mse", overrides=over, out_dir=tmp_path,
                       log=logs.append)
    assert sum("done before" in ln for ln in logs) == 1
    with pytest.raises(ConfigError, match="sets data.classes"):
        one_class_protocol("digits", overrides={"data": {"classes": [1]}}, out_dir=tmp_path / "x", log=None)
    with pytest.raises(ModelError, match="has_density"):  # refused before any training
        one_class_protocol("digits", "ae", score="mse,nll", out_dir=tmp_path / "y", log=None)
    assert not (tmp_path / "y").exists()


def test_one_class_runs_concurrently_with_the_same_results(tmp_path):
    over = {"model": {"arch": "mlp", "mlp_hidden": [32], "latent_dim": 3}, "train": {"batch_size": 32}}
    kw = dict(epochs=1, seeds=1, classes=[2, 5], score="mse", overrides=over, log=None)
    one = one_class_protocol("digits", "vae", out_dir=tmp_path / "seq", **kw)
    two = one_class_protocol("digits", "vae", out_dir=tmp_path / "par", jobs=2, **kw)
    assert two["jobs"] == 2 and [(r["class"], r["seed"]) for r in two["runs"]] == [(2, 0), (5, 0)]
    for c in ("2", "5"):
        a, b = one["auroc"]["mse"]["per_class"][c]["mean"], two["auroc"]["mse"]["per_class"][c]["mean"]
        assert b == pytest.approx(a, abs=2e-3) and a != 0.5
    with pytest.raises(ConfigError, match="jobs"):
        one_class_protocol("digits", "vae", out_dir=tmp_path / "bad", jobs=0, **kw)


def test_cli_bench_one_class_then_detect_on_its_run(tmp_path, capsys):
    out = tmp_path / "bench"
    p = cli("bench", "one-class", "--data", "digits", "--model", "vae", "--epochs", "1", "--classes", "3",
            "--score", "mse", "--set", "model.arch=mlp", "--set", "model.mlp_hidden=[32]", "--set", "model.latent_dim=3",
            "--out", str(out))
    assert "mean" in p.stdout and "results:" in p.stdout
    bench = json.loads((out / "one_class.json").read_text())
    # the run is a one-class run (data.classes=[3]) on digits: detect marks every other digit anomalous
    rep = tmp_path / "report"
    p = cli("detect", str(out / "runs" / "class3-seed0"), "--data", "digits", "--score", "mse", "--contamination", "0.05",
            "--out", str(rep))
    m = json.loads((rep / "metrics.json").read_text())
    assert m["roc_auc"] == pytest.approx(bench["auroc"]["mse"]["per_class"]["3"]["mean"], abs=1e-6)
    assert m["n"] == 359 and sum(map(sum, m["confusion_matrix"])) == 359 and m["calibration_flagged_fraction"] <= 0.05 + 1 / m["n_calibration"]
    assert m["calibrated_on"] == "calibration_set" and m["n_calibration"] < 0.2 * 359  # the run's validation split
    for f in ("report.html", "scores.csv", "figures/score_histogram.png", "figures/roc.png", "figures/pr.png",
              "figures/confusion.png", "figures/flagged.png"):
        assert (rep / f).is_file(), f
    html = (rep / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and "roc_auc" in html
    from vaelab.cli import main

    assert main(["detect", str(out / "runs" / "class3-seed0"), "--data", "digits", "--threshold", "1.5"]) == 2
    assert "[0, 1)" in capsys.readouterr().err


# -- the OOD study's layout ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from tests.conftest import require_source
    from vaelab.cli import main

    require_source("mnist")
    path = tmp_path_factory.mktemp("study") / "study.npz"
    assert main(["data", "build-ood-study", "--out", str(path), "--seed", "1"]) == 0
    return path


def test_ood_study_layout(study):
    from vaelab.data import get_source

    z = np.load(study)
    mnist_train, mnist_test = get_source("mnist").load("train"), get_source("mnist").load("test")
    in_dist = int(torch.isin(mnist_train.labels, torch.arange(5)).sum())
    assert z["x_train"].shape[1:] == (32, 32) and len(z["x_train"]) + 1000 == in_dist  # every other 0..4 image
    assert np.bincount(z["y_labeled"]).tolist() == [200] * 5
    for key in ("index_train", "index_labeled"):  # in-distribution digits only
        assert set(mnist_train.labels[z[key]].tolist()) == set(range(5))
    assert not set(z["index_train"]) & set(z["index_labeled"]) and not set(z["index_test"]) & set(z["index_rep2"])
    for x, y, idx in (("x_test", "y_test", "index_test"), ("x_rep2", "y_rep2", "index_rep2")):
        assert len(z[x]) == 1052 and (z[y] == 5).sum() == 52  # 4.9% anomalies
        digits = mnist_test.labels[z[idx]].numpy()
        np.testing.assert_array_equal(z[y] == 5, digits >= 5)
        np.testing.assert_array_equal(z[y][digits < 5], digits[digits < 5])
        np.testing.assert_array_equal(z[x][:, 2:30, 2:30], mnist_test.images[z[idx], 0].numpy())  # padded 28 -> 32
        assert z[x][:, :2].max() == 0 and z[x][:, :, 30:].max() == 0
    s = load_ood_study(study)
    assert s.anomaly_label == 5 and s.train.labels is None and len(s.rep2) == 1052
    assert s.anomalies("rep1").sum() == 52 and s.anomalies("labeled").sum() == 0 and s.anomalies("train") is None


def test_study_layout_from_fashion_mnist_images(tmp_path):
    """The same layout from another 10-class grayscale source (given here as in-memory sets): the
    labels follow the chosen classes, the provenance indices point at the source's images and the
    file says where they came from. From CIFAR-10 the images keep their colour (N x 32 x 32 x 3) and
    the npz source reads them back as 3 channels; a source without 10 classes is refused with the
    ones that work."""
    from vaelab.data import ImageSet
    from vaelab.detect import build_ood_study

    g = torch.Generator().manual_seed(0)

    def images(n_per_class: int, shape=(1, 28, 28), name="fashion-mnist") -> ImageSet:
        y = torch.arange(10).repeat_interleave(n_per_class)
        return ImageSet(torch.randint(0, 256, (len(y), *shape), generator=g, dtype=torch.uint8), y, name)

    train, test = images(30), images(45)
    sizes = build_ood_study(tmp_path / "fm.npz", classes=(5, 6, 7, 8, 9), n_labeled=50, n_normal=100,
                            mnist=(train, test), dataset="fashion-mnist")
    assert sizes == {"train": 100, "labeled": 50, "rep1": 105, "rep2": 105, "anomalies_per_rep": 5}
    z = np.load(tmp_path / "fm.npz")
    assert str(z["source"]) == "fashion-mnist" and z["classes"].tolist() == [5, 6, 7, 8, 9]
    np.testing.assert_array_equal(z["y_labeled"], train.labels[z["index_labeled"]].numpy() - 5)
    for y, idx in (("y_test", "index_test"), ("y_rep2", "index_rep2")):
        cls = test.labels[z[idx]].numpy()
        np.testing.assert_array_equal(z[y], np.where(cls >= 5, cls - 5, 5))
    np.testing.assert_array_equal(z["x_rep2"][:, 2:30, 2:30], test.images[z["index_rep2"], 0].numpy())
    with pytest.raises(ConfigError, match="fashion-mnist, cifar10"):
        build_ood_study(tmp_path / "c.npz", mnist=(train, test), dataset="celeba64")
    assert not (tmp_path / "c.npz").exists()

    ctrain, ctest = images(30, (3, 32, 32), "cifar10"), images(45, (3, 32, 32), "cifar10")
    build_ood_study(tmp_path / "c.npz", classes=(0, 2, 4, 6, 8), n_labeled=50, n_normal=100, mnist=(ctrain, ctest),
                    dataset="cifar10")
    z = np.load(tmp_path / "c.npz")
    assert z["x_train"].shape == (100, 32, 32, 3) and str(z["source"]) == "cifar10"
    np.testing.assert_array_equal(z["x_test"], ctest.images[z["index_test"]].permute(0, 2, 3, 1).numpy())
    from vaelab.data import DataConfig, load_split

    back = load_split(DataConfig(name="npz", path=str(tmp_path / "c.npz")), "test")
    assert back.images.shape == (105, 3, 32, 32) and torch.equal(back.images, ctest.images[z["index_test"]])


def test_own_file_in_study_layout(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "mine.npz", x_train=x, x_test=x[:10], y_test=np.r_[np.zeros(8), [5, 5]].astype(np.int64),
             anomaly_label=np.array([5]))
    s = load_ood_study(tmp_path / "mine.npz")
    assert s.rep1.shape == (1, 8, 8) and s.anomalies("rep1").tolist() == [0] * 8 + [1, 1]
    np.savez(tmp_path / "nolabel.npz", x_train=x, x_test=x[:10], y_test=np.zeros(10, np.int64))
    with pytest.raises(DataError, match="anomaly_label"):
        load_ood_study(tmp_path / "nolabel.npz")


def test_cli_detect_on_the_study_layout(study, tmp_path, capsys):
    from vaelab.config import parse_set
    from vaelab.train import RunConfig, fit

    cfg = RunConfig.build("vae", parse_set([f"data.path={study}", "data.name=npz", "data.limit=400", "data.test_limit=50",
                                            "model.arch=mlp", "model.mlp_hidden=[32]", "model.latent_dim=3",
                                            "train.epochs=1", "train.batch_size=50", "train.progress_bar=false"]))
    fit(cfg, tmp_path / "run")
    rep = tmp_path / "report"
    from vaelab.cli import main

    assert main(["detect", str(tmp_path / "run"), "--data", str(study), "--split", "rep2", "--score", "nelbo",
                 "--threshold", "0.3", "--out", str(rep)]) == 0
    m = json.loads((rep / "metrics.json").read_text())
    assert m["data"].endswith("(rep2)") and m["threshold"] == 0.3 and m["n"] == 1052 and m["n_anomalies"] == 52
    assert 0 <= m["roc_auc"] <= 1 and m["tp"] + m["fn"] == 52 and m["n_flagged"] == m["tp"] + m["fp"]
    assert f"report: {(rep / 'report.html').resolve()}" in capsys.readouterr().out
    # --norm-range: the median training score maps to 0, so about half the normal images sit at 0
    assert main(["detect", str(tmp_path / "run"), "--data", str(study), "--split", "rep2", "--score", "nelbo",
                 "--threshold", "0.3", "--norm-range", "0.5,0.99", "--out", str(tmp_path / "q")]) == 0
    q = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert q["norm_range"] == [0.5, 0.99] and m["norm_range"] == [0.5, 0.999]
    assert q["roc_auc"] == pytest.approx(m["roc_auc"], abs=1e-9)  # an affine map: the same order
    # 0.3 lies between the anchors (the median and the 99th percentile): it flags 1-50% of the training split
    assert 0.01 - 1.5 / q["n_calibration"] <= q["calibration_flagged_fraction"] <= 0.5 + 1.5 / q["n_calibration"]
    assert main(["detect", str(tmp_path / "run"), "--data", str(study), "--split", "rep2", "--score", "nelbo",
                 "--threshold", "0.3", "--norm-range", "minmax", "--out", str(tmp_path / "mm")]) == 0
    assert json.loads((tmp_path / "mm" / "metrics.json").read_text())["norm_range"] == [0.0, 1.0]
    for bad in ("0.5", "a,b", "0.9,0.5"):
        assert main(["detect", str(tmp_path / "run"), "--data", str(study), "--norm-range", bad]) == 2


def test_norm_range_anchors_the_normalisation_at_training_quantiles(fitted, synthetic):
    normal, held_out, noise = synthetic
    model = fitted[0].model_
    minmax = AutoencoderDetector(model, "mse", threshold=0.3, calibration=0, norm_range="minmax").fit(normal)
    same = AutoencoderDetector(model, "mse", threshold=0.3, calibration=0, norm_range=(0, 1)).fit(normal)
    raw = minmax.raw_scores(normal)
    assert (minmax.raw_min_, minmax.raw_max_) == (raw.min(), raw.max()) == (same.raw_min_, same.raw_max_)
    default = AutoencoderDetector(model, "mse", threshold=0.3, calibration=0).fit(normal)  # 'quantile': median and 99.9th percentile
    named = AutoencoderDetector(model, "mse", threshold=0.3, calibration=0, norm_range="quantile").fit(normal)
    assert (default.raw_min_, default.raw_max_) == (named.raw_min_, named.raw_max_) == pytest.approx(
        tuple(np.quantile(raw, [0.5, 0.999])), rel=1e-6)
    q = AutoencoderDetector(model, "mse", threshold=0.3, calibration=0, norm_range=(0.5, 0.9)).fit(normal)
    assert (q.raw_min_, q.raw_max_) == pytest.approx(tuple(np.quantile(raw, [0.5, 0.9])), rel=1e-6)
    arr = AutoencoderDetector(model, "mse", threshold=0.3, calibration=0, norm_range=np.array([0.5, 0.9])).fit(normal)  # numpy works too
    assert (arr.raw_min_, arr.raw_max_) == (q.raw_min_, q.raw_max_)
    # the median maps to 0 and the 90th percentile to 1: half the training scores clip to 0, a tenth to 1
    assert abs((q.decision_scores_ == 0).mean() - 0.5) <= 1.5 / len(normal)
    assert abs((q.decision_scores_ >= 1).mean() - 0.1) <= 1.5 / len(normal)
    # an affine map of the raw score, so the unclipped scores keep the images' order
    for x in (held_out, noise):
        np.testing.assert_allclose(q.decision_function(x, clip=False),
                                   (q.raw_scores(x) - q.raw_min_) / (q.raw_max_ - q.raw_min_), rtol=1e-6)
    assert q.raw_threshold_ == pytest.approx(q.raw_min_ + 0.3 * (q.raw_max_ - q.raw_min_))
    with pytest.raises(ConfigError, match="unknown norm_range 'median'.*quantile, minmax"):
        AutoencoderDetector(model, "mse", norm_range="median").fit(normal)
    for bad in [(0.9, 0.5), (0.5, 0.5), (-0.1, 1), (0, 1.5), (0.5,), (0, float("nan")), None]:
        with pytest.raises(ConfigError, match="norm_range is two quantiles"):
            AutoencoderDetector(model, "mse", norm_range=bad).fit(normal)


def test_one_class_protocol_resumes_an_interrupted_class_from_its_checkpoint(tmp_path, monkeypatch):
    """A protocol stopped during a class (here: the training step after the mid-epoch checkpoint of
    step 6 raises) keeps the classes it finished; run again into the same directory, it reuses them
    and the interrupted class continues from its checkpoint, to the numbers of an uninterrupted run."""
    from vaelab.models.vae import VAE

    over = {"model": {"arch": "mlp", "mlp_hidden": [32], "latent_dim": 3},
            "train": {"batch_size": 32, "checkpoint_every_n_steps": 3}}
    args = dict(dataset="digits", model_name="vae", epochs=2, seeds=1, score="mse", overrides=over, log=None)
    whole = one_class_protocol(classes=[0, 1], out_dir=tmp_path / "whole", **args)
    real_loss, calls = VAE.loss, {"n": 0}

    def dies_in_class_1(self, x, *a, **k):  # class 0 trains first; class 1 dies at its 7th step
        calls["n"] += 1
        if calls.get("class") == 1 and calls["n"] == 7:
            raise RuntimeError("killed")
        return real_loss(self, x, *a, **k)

    import vaelab.train as train_pkg

    real_fit = train_pkg.fit

    def fit(cfg, run_dir, resume=False, **kw):
        calls.update(n=0, **{"class": cfg.data.classes[0]}, resumed=calls.get("resumed", []) + [resume])
        return real_fit(cfg, run_dir, resume=resume, **kw)

    monkeypatch.setattr(VAE, "loss", dies_in_class_1)
    monkeypatch.setattr(train_pkg, "fit", fit)
    with pytest.raises(RuntimeError, match="killed"):
        one_class_protocol(classes=[0, 1], out_dir=tmp_path / "cut", **args)
    run1 = tmp_path / "cut" / "runs" / "class1-seed0"
    assert (tmp_path / "cut" / "runs" / "class0-seed0" / "result.json").is_file() and not (run1 / "result.json").exists()
    assert (run1 / "checkpoints" / "last.ckpt").is_file()
    monkeypatch.setattr(VAE, "loss", real_loss)
    calls["resumed"] = []
    logs: list[str] = []
    again = one_class_protocol(classes=[0, 1], out_dir=tmp_path / "cut", **{**args, "log": logs.append})
    assert calls["resumed"] == [True]  # only class 1 trains, from its checkpoint
    assert sum("done before" in ln for ln in logs) == 1
    for c in ("0", "1"):
        assert again["auroc"]["mse"]["per_class"][c]["mean"] == pytest.approx(whole["auroc"]["mse"]["per_class"][c]["mean"], abs=1e-12)
