"""Detector export (ONNX, TorchScript): the exported scorer against the Python detector on 300 test
digits (raw scores, normalised scores, flags, error maps), sklearn's GaussianMixture.score_samples
against the torch density, nelbo's common noise, a sampling score refused, the loader with Lightning unimportable, the
manifest and `vaelab export`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from tests.conftest import require_module, vaelab_here

FORMATS = ("onnx", "torchscript")


def needs(fmt: str) -> None:
    """ONNX bundles need the export extra (onnx, onnxruntime); TorchScript ones need only torch."""
    if fmt == "onnx":
        require_module("onnx")
        require_module("onnxruntime")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import vaelab
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.data import load_data, load_split
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "model.latent_dim=4", "train.epochs=2", "train.batch_size=64",
                                            "train.progress_bar=false", "model.conv_channels=[8]", "model.hidden_dim=32"]))
    run, _ = train_run(cfg, tmp_path_factory.mktemp("export") / "run")
    model = vaelab.load(run)
    train = load_data(cfg.data, cfg.seed)[0]
    test = load_split(cfg.data, "test").images[:300]
    return run, model, train, test


def _detector(setup, score):
    from vaelab.detect import AutoencoderDetector

    _, model, train, _ = setup
    return AutoencoderDetector(model, score, seed=0).fit(train)


@pytest.mark.parametrize("score", ["mse", "nelbo", "latent_gmm", "combo"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_scores_equal_the_detector(setup, score, fmt, tmp_path):
    needs(fmt)
    from vaelab.detect.export import export_detector
    from vaelab.exported import load_exported

    _, model, _, test = setup
    det = _detector(setup, score)
    out = export_detector(det, tmp_path / "bundle", fmt)
    scorer = load_exported(out)
    x = test.float() / 255
    got = scorer(x.numpy())
    assert set(got) == {"raw_score", "score", "flag", "error_map", "pvalue"}
    raw = det.raw_scores(test)
    # combo is a mean of z-scores, which crosses 0: its tolerance is relative to one standard deviation
    scale = np.maximum(np.abs(raw), 1.0 if score == "combo" else 0.0)
    assert got["raw_score"].shape == (300,) and np.all(np.abs(got["raw_score"] - raw) <= 1e-4 * scale)
    norm = det.decision_function(test, clip=False)
    span = det.raw_max_ - det.raw_min_  # the normalised score divides the raw one's error by the anchors' span
    assert np.all(np.abs(got["score"] - norm) <= 1e-4 * (np.abs(norm) + scale / span) + 1e-6)
    assert got["flag"].dtype == np.int64
    clear = np.abs(norm - det.threshold_) > 1e-6
    np.testing.assert_array_equal(got["flag"][clear], det.predict(test)[clear])
    # the p-values: the calibration scores travel inside the scorer; equal wherever no calibration score ties
    gap = np.abs(norm[:, None] - det.calibration_scores_[None, :]).min(1)
    apart = gap > 1e-4 * (np.abs(norm) + scale / span) + 1e-6
    assert apart.mean() > 0.5 and got["pvalue"].dtype == np.float64
    np.testing.assert_array_equal(got["pvalue"][apart], det.predict_pvalues(test)[apart])
    err = ((model.reconstruct(x) - x) ** 2).mean(1).numpy()
    assert got["error_map"].shape == (300, 8, 8)
    np.testing.assert_allclose(got["error_map"], err, rtol=1e-4, atol=1e-6)
    # a batch size other than the traced one
    one = scorer(x[:1].numpy())
    np.testing.assert_allclose(one["raw_score"], got["raw_score"][:1], rtol=1e-5, atol=1e-6 * scale[:1].max())


def test_gmm_density_is_sklearns_score_samples(setup):
    """The torch -log density of the exported latent_gmm against sklearn's score_samples on the same vectors."""
    from vaelab.detect.export import _Context, _GMMHead

    _, model, _, test = setup
    det = _detector(setup, "latent_gmm")
    head = _GMMHead(det.score_)
    x = test.float() / 255
    with torch.no_grad():
        ours = head(_Context(model, x)).numpy()
        v = det.score_.whitener_.transform(model.encode(x).mean.double())
    np.testing.assert_allclose(ours, -det.score_.gmm_.score_samples(v.numpy()), rtol=1e-10)


def test_nelbo_uses_one_noise_draw_for_every_image(setup):
    """nelbo's common random numbers: an image's score does not depend on its batch or position, and
    each equals -log p(x | loc + scale * eps) averaged over the k draws plus the closed-form KL."""
    from vaelab.detect.scores import NELBOScore, score_images
    from vaelab.objectives import gaussian_kl_closed_form

    _, model, train, test = setup
    s = NELBOScore(n_samples=3).fit(model, train, seed=7)
    a = score_images(model, s, test, batch_size=64, seed=0)
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(1))
    b = score_images(model, s, test[perm], batch_size=17, seed=123)
    torch.testing.assert_close(b, a[perm], rtol=1e-5, atol=1e-4)
    x = test[:5].float() / 255
    with torch.no_grad():
        q = model.encode(x)
        eps = s.noise(q.mean.shape[-1])
        rec = torch.stack([-model.decode(q.mean + q.stddev * e).log_prob(x) for e in eps]).mean(0)
        ref = rec + gaussian_kl_closed_form(q.mean, q.stddev.pow(2).log())
    torch.testing.assert_close(a[:5].float(), ref, rtol=1e-5, atol=1e-4)
    assert not torch.equal(eps, NELBOScore(n_samples=3).fit(model, train, seed=8).noise(eps.shape[-1]))


def test_nll_is_refused_with_the_exportable_list(setup, tmp_path):
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.export import EXPORTABLE_SCORES, check_exportable, export_detector
    from vaelab.errors import ConfigError

    with pytest.raises(ConfigError, match="latent_gmm") as e:
        check_exportable("nll")
    assert all(s in str(e.value) for s in EXPORTABLE_SCORES) and "fresh importance samples" in str(e.value)
    _, model, train, _ = setup
    det = AutoencoderDetector(model, "nll", nll_k=2, seed=0).fit(train)
    with pytest.raises(ConfigError, match="fresh importance samples"):
        export_detector(det, tmp_path / "b")


def test_rank_combo_is_refused(setup, tmp_path):
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.export import export_detector
    from vaelab.errors import ConfigError

    _, model, train, _ = setup
    det = AutoencoderDetector(model, "combo", combo=("mse", "latent_gmm"), combo_method="rank").fit(train)
    with pytest.raises(ConfigError, match="rank"):
        export_detector(det, tmp_path / "b")


def test_manifest(setup, tmp_path):
    needs("onnx")
    import vaelab
    from vaelab.detect.export import export_detector

    det = _detector(setup, "latent_gmm")
    m = json.loads((export_detector(det, tmp_path / "b", "onnx") / "manifest.json").read_text())
    assert m["format"] == "onnx" and (tmp_path / "b" / m["file"]).exists()
    assert m["input_shape"] == ["batch", 1, 8, 8] and m["value_range"] == [0.0, 1.0] and m["input_dtype"] == "float32"
    assert m["score_spec"] == det.score_.spec() and m["threshold"] == det.threshold_
    assert m["normalization"]["raw_min"] == det.raw_min_ and m["normalization"]["raw_max"] == det.raw_max_
    assert m["outputs"] == ["raw_score", "score", "flag", "error_map", "pvalue"] and m["vaelab_version"] == vaelab.__version__


@pytest.mark.parametrize("fmt", FORMATS)
def test_loader_runs_without_the_training_stack(setup, fmt, tmp_path):
    needs(fmt)
    from vaelab.detect.export import export_detector

    _, _, _, test = setup
    det = _detector(setup, "latent_gmm")
    out = export_detector(det, tmp_path / "b", fmt)
    x = (test[:20].float() / 255).numpy()
    np.save(tmp_path / "x.npy", x)
    code = textwrap.dedent(f"""
        import sys
        for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "sklearn", "torchmetrics"):
            sys.modules[name] = None  # importing any of them now raises ImportError
        import numpy as np
        from vaelab.exported import load_exported
        s = load_exported({str(out)!r})(np.load({str(tmp_path / 'x.npy')!r}))
        np.save({str(tmp_path / 'raw.npy')!r}, s["raw_score"])
        loaded = [m for m in sys.modules if m.startswith("vaelab")]
        print(",".join(sorted(loaded)))
        print("torch" in sys.modules)
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.returncode == 0, p.stderr
    mods, torch_loaded = p.stdout.strip().splitlines()
    assert set(mods.split(",")) <= {"vaelab", "vaelab._version", "vaelab.errors", "vaelab.exported"}  # the version: a string
    assert torch_loaded == ("True" if fmt == "torchscript" else "False")  # an ONNX bundle runs on numpy + onnxruntime alone
    np.testing.assert_allclose(np.load(tmp_path / "raw.npy"), det.raw_scores(test[:20]), rtol=1e-4)


def test_cli_export(setup, tmp_path):
    run = setup[0]
    out = tmp_path / "bundle"
    p = vaelab_here("export", str(run), "--format", "torchscript", "--score", "mse", "--out", str(out))
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "torchscript" and m["score"] == "mse" and (out / "scorer.pt").exists()
    p = vaelab_here("export", str(run), "--score", "nll", "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and "cannot be exported" in p.stderr and "latent_gmm" in p.stderr and "Traceback" not in p.stderr


def test_exported_bernoulli_log_prob_is_stable_where_logits_saturate(tmp_path):
    """torch's Bernoulli log_prob exports to ONNX as log(sigmoid(l)): -inf, then NaN, for a saturated
    logit. The exporter's form equals torch's log_prob and stays finite in onnxruntime."""
    needs("onnx")
    import onnxruntime as ort
    from torch.distributions import Bernoulli, Independent

    from vaelab.detect.export import _bernoulli_log_prob

    logits = torch.linspace(-120, 120, 2 * 3 * 4).view(2, 1, 3, 4)
    x = (torch.arange(24).view(2, 1, 3, 4) % 3 == 0).float()
    px = Independent(Bernoulli(logits=logits), 3)
    torch.testing.assert_close(_bernoulli_log_prob(px, x), px.log_prob(x))

    class M(torch.nn.Module):
        def forward(self, lg, xx):
            return _bernoulli_log_prob(Independent(Bernoulli(logits=lg, validate_args=False), 3), xx)

    path = tmp_path / "b.onnx"
    torch.onnx.export(M(), (logits, x), str(path), input_names=["l", "x"], dynamo=False)
    got = ort.InferenceSession(str(path)).run(None, {"l": logits.numpy(), "x": x.numpy()})[0]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, px.log_prob(x).numpy(), rtol=1e-5)


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_scorer_refuses_bad_input_and_a_tampered_manifest(setup, fmt, tmp_path):
    """The scorer takes images as the Python detector does: uint8 scaled (the same scores as
    float / 255), NaN, inf, out-of-range floats and other dtypes refused; a manifest whose
    threshold, normalisation, keys or format were edited is refused before anything is loaded."""
    from vaelab.detect.export import export_detector
    from vaelab.errors import VaelabError
    from vaelab.exported import load_exported

    _, _, _, test = setup
    det = _detector(setup, "mse")
    out = export_detector(det, tmp_path / "bundle", fmt)
    scorer = load_exported(out)
    x8 = test[:16].numpy()
    got8, gotf = scorer(x8), scorer((test[:16].float() / 255).numpy())
    np.testing.assert_allclose(got8["raw_score"], gotf["raw_score"], rtol=1e-6)
    np.testing.assert_array_equal(got8["flag"], det.predict(test[:16]))
    np.testing.assert_allclose(scorer(x8.astype(np.uint16) * 257)["raw_score"], got8["raw_score"], rtol=1e-6)
    for bad, why in ((np.where(np.arange(x8.size).reshape(x8.shape) == 5, np.nan, x8 / 255.0), "NaN"),
                     (np.full(x8.shape, np.inf), "NaN or infinite"), (x8.astype(np.float32), r"\[0, 1\]"),
                     (x8.astype(np.int64), "dtype int64"), (x8[:, :, :4], "shape")):
        with pytest.raises(VaelabError, match=why):
            scorer(bad)
    manifest = json.loads((out / "manifest.json").read_text())
    edits = {"threshold": lambda m: m.update(threshold="garbage"),
             "threshold value": lambda m: m.update(threshold=m["threshold"] + 1.0),
             "normalization": lambda m: m["normalization"].update(raw_min=1e30),
             "a removed key": lambda m: m.pop("normalization"),
             "format": lambda m: m.update(format="pickle"),
             "NaN literal": lambda m: m.update(threshold=float("nan"))}
    for what, edit in edits.items():
        m = json.loads(json.dumps(manifest))
        edit(m)
        (out / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(VaelabError, match="export (it|the bundle) again") as e:
            load_exported(out)
        assert "\n" not in str(e.value), what
    (out / "manifest.json").write_text(json.dumps(manifest))
    with open(out / MODEL_FILE[fmt], "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(VaelabError, match="file_sha256"):
        load_exported(out)


MODEL_FILE = {"onnx": "scorer.onnx", "torchscript": "scorer.pt"}


def test_a_detector_calibrated_on_its_fitted_data_exports_no_pvalues_and_groups_are_refused(setup, tmp_path):
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.export import export_detector
    from vaelab.errors import ConfigError
    from vaelab.exported import load_exported

    _, model, train, test = setup
    det = AutoencoderDetector(model, "mse", calibration=0).fit(train)
    got = load_exported(export_detector(det, tmp_path / "b", "torchscript"))((test[:4].float() / 255).numpy())
    assert np.isnan(got["pvalue"]).all()
    grouped = AutoencoderDetector(model, "mse").fit(train, groups=train.labels)
    with pytest.raises(ConfigError, match="each group's detector"):
        export_detector(grouped, tmp_path / "g", "torchscript")
