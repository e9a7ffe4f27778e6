"""`vaelab app`: the page's scorer against the detector, its input handling, and the Gradio page
served on a free local port and queried through gradio_client for one image."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from tests.conftest import require_module


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    from vaelab.api import train_run
    from vaelab.app import AppScorer
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "model.latent_dim=4", "train.epochs=1", "train.batch_size=64",
                                            "train.progress_bar=false", "model.conv_channels=[8]", "model.hidden_dim=32"]))
    run, _ = train_run(cfg, tmp_path_factory.mktemp("app") / "run")
    return AppScorer(run, contamination=0.1)


def _test_image(scorer, i=0):
    from vaelab.data import load_split

    return load_split(scorer.cfg.data, "test").images[i]  # [1, 8, 8] uint8


def test_scorer_gives_the_detectors_score_flag_and_error_map(scorer):
    img = _test_image(scorer)
    r = scorer(img[0].numpy())
    det = scorer.detector
    assert r["score"] == pytest.approx(float(det.decision_function(img[None], clip=False)[0]), rel=1e-9)
    assert r["raw_score"] == pytest.approx(float(det.raw_scores(img[None])[0]), rel=1e-9)
    assert r["flag"] == int(det.predict(img[None])[0]) and r["note"] == ""
    assert r["pvalue"] == float(det.predict_pvalues(img[None])[0]) and f"p-value {r['pvalue']:.3g}" in r["verdict"]
    x = img[None].float() / 255
    with torch.no_grad():
        err = (scorer.model.reconstruct(x).clamp(0, 1) - x).pow(2).mean(1)[0].numpy()
    np.testing.assert_allclose(r["map"], err, rtol=1e-5, atol=1e-7)
    k = 224 // 8
    assert r["reconstruction"].shape == (8 * k, 8 * k) and r["anomaly_map"].shape == (8 * k, 8 * k, 3)
    assert r["anomaly_map"].dtype == np.uint8


def test_scorer_converts_and_resizes_and_refuses_bad_input(scorer):
    from vaelab.errors import DataError

    rgb = np.random.default_rng(0).integers(0, 256, (32, 24, 3), dtype=np.uint8)
    x, note = scorer.prepare(rgb)
    assert x.shape == (1, 1, 8, 8) and "RGB to L" in note and "24x32 to 8x8" in note
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    with pytest.raises(DataError, match="H x W"):
        scorer.prepare(np.zeros((2, 8, 8, 3)))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        scorer.prepare(np.full((8, 8), 3.0))
    with pytest.raises(DataError, match="no image"):
        scorer.prepare(None)


def test_missing_gradio_names_the_extra(monkeypatch):
    import builtins

    from vaelab.app import _gradio
    from vaelab.errors import ConfigError

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "gradio":
            raise ImportError("no gradio")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ConfigError, match=r"vaelab\[app\]"):
        _gradio()


def test_page_served_on_a_free_port_answers_its_client(scorer, tmp_path):
    require_module("gradio")
    from gradio_client import Client, handle_file
    from PIL import Image

    from vaelab.app import build_app, launch_app

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    img = _test_image(scorer, 3)
    path = tmp_path / "digit.png"
    Image.fromarray(img[0].numpy()).save(path)
    page = launch_app(build_app(scorer, examples=4), port=port, block=False)
    try:
        verdict, score, raw, recon, amap, note = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            handle_file(str(path)), api_name="/analyse")
    finally:
        page.close()
    want = scorer(img[0].numpy())
    assert score == pytest.approx(want["score"], rel=1e-9) and raw == pytest.approx(want["raw_score"], rel=1e-9)
    assert verdict == want["verdict"] and note == ""
    np.testing.assert_array_equal(np.asarray(Image.open(amap).convert("RGB")), want["anomaly_map"])
    np.testing.assert_array_equal(np.asarray(Image.open(recon).convert("L")), want["reconstruction"])


def test_cli_app_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    require_module("gradio")
    from vaelab.cli import main

    assert main(["app", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "not a run directory" in err and "Traceback" not in err


def test_a_16_bit_png_gets_the_score_vaelab_detect_gives_it(scorer, tmp_path):
    """The app reads an upload with vaelab's own image reader: a 16-bit PNG is scaled to 8 bits as
    `vaelab detect` scales it (not clipped), so both give the same score; a file that is not an
    image is a one-line DataError, not a decoder's traceback."""
    from PIL import Image

    from vaelab.detect.study import load_detection_set
    from vaelab.errors import DataError

    folder = tmp_path / "imgs"
    folder.mkdir()
    img = _test_image(scorer, 5)[0].numpy().astype(np.uint16) * 257  # the digit at 16 bits
    path = folder / "digit16.png"
    Image.fromarray(img, mode="I;16").save(path)
    assert Image.open(path).mode == "I;16"
    app = scorer(str(path))
    target, _, _ = load_detection_set(str(folder), scorer.cfg.data)
    det = scorer.detector
    assert app["score"] == pytest.approx(float(det.decision_function(target.images, clip=False)[0]), rel=1e-9)
    assert app["flag"] == int(det.predict(target.images)[0])
    assert app["score"] == pytest.approx(scorer(_test_image(scorer, 5)[0].numpy())["score"], rel=1e-9)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match="not a readable image") as e:
        scorer(str(tmp_path / "notes.png"))
    assert "\n" not in str(e.value)


def test_an_upload_larger_than_the_readers_limit_is_refused_before_decoding(scorer, tmp_path):
    """A 72-megapixel PNG (a few kB on disk) is refused from its header, as the folder reader refuses it."""
    from PIL import Image

    from vaelab.errors import DataError

    path = tmp_path / "huge.png"
    Image.new("1", (9000, 8000)).save(path)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(DataError, match="declares 9000 x 8000 pixels"):
        scorer(str(path))
