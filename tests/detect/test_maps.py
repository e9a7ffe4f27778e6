"""Pixel anomaly maps: each kind against a direct computation, the synthetic-defect set and an
MVTec-layout folder carrying their masks, and `vaelab detect --maps` scoring maps against them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import vaelab_here


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "model.latent_dim=4", "train.epochs=2", "train.batch_size=64",
                                            "train.progress_bar=false", "model.conv_channels=[8]", "model.hidden_dim=32"]))
    run, _ = train_run(cfg, tmp_path_factory.mktemp("maps") / "run")
    return run


def test_map_kinds_against_direct_computations(conv_run):

    import vaelab
    from vaelab.data import DataConfig, load_split
    from vaelab.detect.maps import anomaly_maps

    model = vaelab.load(conv_run)
    x = load_split(DataConfig(name="digits"), "test").images[:6]
    xf = x.float() / 255
    r = model.reconstruct(xf)
    np.testing.assert_allclose(anomaly_maps(model, x, "mse"), ((r - xf) ** 2).mean(1).double().numpy(), rtol=1e-6, atol=1e-9)
    assert anomaly_maps(model, x, "ssim").shape == (6, 8, 8)
    g = anomaly_maps(model, x, "gradient", train=load_split(DataConfig(name="digits"), "train").images[:200])
    assert g.shape == (6, 8, 8) and np.isfinite(g).all() and (g >= 0).all()
    with pytest.raises(Exception, match="unknown anomaly map"):
        anomaly_maps(model, x, "nope")


def test_detect_scores_maps_against_synthetic_defect_masks(conv_run, tmp_path):
    from vaelab.data.defects import build_defect_set

    npz = tmp_path / "defects.npz"
    sizes = build_defect_set(npz, "digits", "noise", fraction=0.5, seed=0, size=(0.3, 0.5))
    z = np.load(npz)
    assert sizes["n_defective"] == int(z["y_test"].sum()) and z["masks_test"][z["y_test"] == 0].sum() == 0
    p = vaelab_here("detect", str(conv_run), "--data", str(npz), "--split", "test", "--maps", "mse,ssim", "--out", str(tmp_path / "d"))
    assert p.returncode == 0, p.stderr
    m = json.loads((tmp_path / "d" / "metrics.json").read_text())
    assert "roc_auc" in m  # image-level labels are the defect labels (how well is benchmarks/pixel_maps.py's question)
    maps = np.load(tmp_path / "d" / "maps.npz")
    assert maps["mse"].shape == z["masks_test"].shape
    from vaelab.detect.pixel import aupro, pixel_roc_auc

    for k in ("mse", "ssim"):  # the reported pixel scores are those of the saved maps against the set's masks
        assert m["pixel"][k]["pixel_roc_auc"] == pytest.approx(pixel_roc_auc(maps[k], z["masks_test"]), abs=1e-6)
        assert m["pixel"][k]["aupro"] == pytest.approx(aupro(maps[k], z["masks_test"]), abs=1e-6)
    assert (tmp_path / "d" / "figures" / "maps.png").is_file()
    with pytest.raises(Exception, match="already exists"):
        build_defect_set(npz, "digits")


def test_mvtec_layout_reads_images_labels_and_masks(tmp_path):
    from PIL import Image

    from vaelab.data import DataConfig, load_split

    root = tmp_path / "bottle"
    rng = np.random.default_rng(0)
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "train" / "good" / f"{i:03d}.png")
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "test" / "good" / f"{i:03d}.png")
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "test" / "crack" / f"{i:03d}.png")
        mask = np.zeros((16, 16), np.uint8)
        mask[2 + i : 6 + i, 3:9] = 255
        Image.fromarray(mask).save(root / "ground_truth" / "crack" / f"{i:03d}_mask.png")
    train = load_split(DataConfig(name="mvtec", path=str(root)), "train")
    test = load_split(DataConfig(name="mvtec", path=str(root)), "test")
    assert len(train) == 3 and train.masks.sum() == 0
    assert test.labels.tolist() == [1, 1, 1, 0, 0, 0] and test.files[0] == "test/crack/000.png"
    assert int(test.masks[0].sum()) == 24 and bool(test.masks[1, 3, 3]) and not bool(test.masks[0, 7, 3])
    small = load_split(DataConfig(name="mvtec", path=str(root), size=8, resize_mode="resize"), "test")
    assert small.masks.shape == (6, 8, 8) and small.masks[0].sum() == 6  # nearest resampling keeps the region
    (root / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(Exception, match="its mask .* is missing"):
        load_split(DataConfig(name="mvtec", path=str(root)), "test")


def test_ssim_map_matches_scikit_image_inside_the_border():
    """1 - the local SSIM map, against scikit-image's (Gaussian window, sigma 1.5) where the 11-pixel
    window lies inside the image (the border is padded differently by the two)."""
    from skimage.metrics import structural_similarity

    from vaelab.detect.maps import ssim_map

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=g)
    r = (x + 0.2 * torch.randn(2, 1, 32, 32, generator=g)).clamp(0, 1)

    class Fixed:  # a "model" whose reconstruction is r
        def reconstruct(self, _):
            return r

    ours = ssim_map(Fixed(), x).numpy()
    for i in range(2):
        _, full = structural_similarity(x[i, 0].numpy().astype(np.float64), r[i, 0].numpy().astype(np.float64), data_range=1.0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True)
        np.testing.assert_allclose(ours[i, 5:-5, 5:-5], 1 - full[5:-5, 5:-5], atol=1e-4)
