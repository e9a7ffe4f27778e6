"""Pixel-level evaluation (vaelab.detect.pixel) and synthetic defects (vaelab.data.defects):
pixel ROC-AUC against scikit-learn, the PRO curve against a brute-force loop over thresholds and
regions, AU-PRO on hand-made cases with known values, and defect masks against the pixels that
actually changed."""
import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score, roc_curve

from vaelab.data.defects import paste_defects
from vaelab.detect.pixel import aupro, pixel_roc_auc, pro_curve
from vaelab.errors import ConfigError, DataError


def two_regions():
    """One 4 x 4 image: region A (4 pixels, top left) and region B (4 pixels, bottom right)."""
    masks = np.zeros((1, 4, 4), bool)
    masks[0, :2, :2] = True
    masks[0, 2:, 2:] = True
    return masks


def brute_force_pro(maps, masks, thresholds):
    """(fpr, pro) at each threshold (flag score >= t), labelling each image on its own."""
    regions = []
    for i in range(len(masks)):
        lab, n = ndimage.label(masks[i], structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, n + 1)]
    normal = ~masks
    fpr, pro = [], []
    for t in thresholds:
        flag = maps >= t
        fpr.append((flag & normal).sum() / normal.sum())
        pro.append(np.mean([flag[i][r].mean() for i, r in regions]))
    return np.array(fpr), np.array(pro)


# -- pixel ROC-AUC ------------------------------------------------------------------------------
def test_pixel_roc_auc_is_sklearn_on_flattened_pixels():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 9, 7)) < 0.2
    maps = rng.normal(size=masks.shape) + masks
    assert pixel_roc_auc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert pixel_roc_auc(maps.astype(np.float32), masks.astype(np.uint8)) == pytest.approx(
        roc_auc_score(masks.ravel(), maps.astype(np.float32).ravel()), abs=1e-12)


@pytest.mark.parametrize("masks, match", [(np.zeros((2, 4, 4), bool), "no defect pixel"),
                                          (np.ones((2, 4, 4), bool), "no normal pixel"),
                                          (np.full((2, 4, 4), 255, np.uint8), "bool or 0/1"),
                                          (np.zeros((2, 4, 5), bool), "shape")])
def test_bad_masks_are_data_errors(masks, match):
    with pytest.raises(DataError, match=match):
        pixel_roc_auc(np.zeros((2, 4, 4)), masks)
    with pytest.raises(DataError, match=match):
        aupro(np.zeros((2, 4, 4)), masks)


def test_non_finite_maps_are_data_errors():
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        aupro(maps, two_regions())


# -- the PRO curve and AU-PRO -------------------------------------------------------------------
def test_pro_is_a_mean_over_regions_at_zero_fpr():
    masks = two_regions()
    maps = np.zeros((1, 4, 4))
    maps[0, :2, :2] = 1.0  # region A fully
    maps[0, 2, 2:] = 1.0  # half of region B
    fpr, pro, thr = pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, [0, 0, 1])
    np.testing.assert_allclose(pro, [0, 0.75, 1])
    assert thr[0] == np.inf and list(thr[1:]) == [1.0, 0.0]
    # integrated up to 0.3: 0.75 on [0, 0.3] plus the triangle towards (1, 1), divided by 0.3
    assert aupro(maps, masks) == pytest.approx((0.3 * 0.75 + 0.5 * 0.3 * 0.3 * 0.25) / 0.3)


def test_regions_count_once_whatever_their_size():
    masks = np.zeros((1, 6, 6), bool)
    masks[0, 0, :2] = True  # 2 pixels
    masks[0, 3:5, 1:5] = True  # 8 pixels
    maps = masks * 0.0
    maps[0, 0, :2] = 1.0  # covers the small region only: 2 of 10 defect pixels, 1 of 2 regions
    fpr, pro, _ = pro_curve(maps, masks)
    assert pro[fpr == 0].max() == pytest.approx(0.5)


def test_regions_of_different_images_are_not_merged():
    masks = np.zeros((2, 5, 5), bool)
    masks[0, 1, 1:3] = True  # 2 pixels in image 0
    masks[1, 0:3, 0:3] = True  # 9 pixels in image 1, on top of image 0's region
    maps = np.zeros((2, 5, 5))
    maps[0, 1, 1:3] = 1.0
    fpr, pro, _ = pro_curve(maps, masks)
    assert pro[fpr == 0].max() == pytest.approx(0.5)  # one region of 11 pixels would give 2 / 11


def test_regions_are_eight_connected():
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = True  # diagonal neighbours: one region of 3
    maps = np.zeros((1, 4, 4))
    maps[0, 0, 0] = 1.0
    fpr, pro, _ = pro_curve(maps, masks)
    assert pro[fpr == 0].max() == pytest.approx(1 / 3)  # 4-connectivity would give (1 + 0) / 2


def test_perfect_and_constant_maps():
    rng = np.random.default_rng(1)
    masks = rng.random((3, 8, 8)) < 0.15
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0)
    assert aupro(masks * 5.0 + rng.random(masks.shape), masks) == pytest.approx(1.0)  # every defect above all normals
    for limit in (0.3, 0.05, 1.0):
        assert aupro(np.full(masks.shape, 0.7), masks, fpr_limit=limit) == pytest.approx(limit / 2)
    assert aupro(-masks.astype(float), masks, fpr_limit=1.0) == pytest.approx(0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pro_curve_matches_a_brute_force_loop(seed):
    rng = np.random.default_rng(seed)
    masks = ndimage.binary_dilation(rng.random((4, 12, 12)) < 0.03, structure=np.ones((1, 3, 3)))
    maps = np.round(rng.normal(size=masks.shape) + 1.2 * masks, 1)  # rounded: many ties
    fpr, pro, thr = pro_curve(maps, masks)
    assert np.all(np.diff(thr) < 0) and np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-12)
    bf_fpr, bf_pro = brute_force_pro(maps, masks, thr[1:])
    np.testing.assert_allclose(fpr[1:], bf_fpr, atol=1e-12)
    np.testing.assert_allclose(pro[1:], bf_pro, atol=1e-12)
    assert fpr[-1] == 1.0 and pro[-1] == pytest.approx(1.0)


def test_a_threshold_grid_matches_a_brute_force_loop_on_that_grid():
    rng = np.random.default_rng(3)
    masks = ndimage.binary_dilation(rng.random((3, 10, 10)) < 0.04, structure=np.ones((1, 3, 3)))
    maps = rng.random(masks.shape) + masks
    fpr, pro, thr = pro_curve(maps, masks, num_thresholds=7)
    grid = np.linspace(maps.min(), maps.max(), 7)
    np.testing.assert_allclose(thr[1:], grid[::-1])
    bf_fpr, bf_pro = brute_force_pro(maps, masks, grid[::-1])
    np.testing.assert_allclose(fpr[1:], bf_fpr, atol=1e-12)
    np.testing.assert_allclose(pro[1:], bf_pro, atol=1e-12)
    # a grid finer than the distinct scores gives the exact area
    few = np.round(maps, 1)
    assert aupro(few, masks, num_thresholds=1001) == pytest.approx(aupro(few, masks), abs=1e-12)


def test_single_pixel_regions_make_pro_the_roc_curve():
    """With isolated one-pixel defects PRO = TPR, so the PRO curve is scikit-learn's ROC curve and
    AU-PRO up to FPR 1 is the ROC-AUC."""
    rng = np.random.default_rng(4)
    masks = np.zeros((3, 12, 12), bool)
    masks[:, ::3, ::3] = rng.random((3, 4, 4)) < 0.6
    maps = np.round(rng.normal(size=masks.shape) + masks, 1)
    fpr, pro, _ = pro_curve(maps, masks)
    sk_fpr, sk_tpr, _ = roc_curve(masks.ravel(), maps.ravel(), drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(pro, sk_tpr, atol=1e-12)
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    # below 1: the area of the ROC curve interpolated at the limit
    limit = 0.2
    keep = sk_fpr < limit
    x = np.r_[sk_fpr[keep], limit]
    y = np.r_[sk_tpr[keep], np.interp(limit, sk_fpr, sk_tpr)]
    assert aupro(maps, masks, fpr_limit=limit) == pytest.approx(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / limit)


@pytest.mark.parametrize("kw, match", [({"fpr_limit": 0}, "fpr_limit"), ({"fpr_limit": 1.5}, "fpr_limit"),
                                       ({"num_thresholds": 1}, "num_thresholds"),
                                       ({"num_thresholds": 2.5}, "num_thresholds")])
def test_bad_options_are_config_errors(kw, match):
    masks = two_regions()
    with pytest.raises(ConfigError, match=match):
        aupro(masks * 1.0, masks, **kw)


# -- synthetic defects --------------------------------------------------------------------------
def clean_images(n=6, c=1, h=16, w=20, seed=0):
    """Random uint8 images with no zero pixel, so a blank patch changes every pixel it covers."""
    return np.random.default_rng(seed).integers(1, 256, size=(n, c, h, w), dtype=np.uint8)


def bounding_box(mask):
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max() + 1, xs.min(), xs.max() + 1


@pytest.mark.parametrize("c", [1, 3])
def test_noise_changes_exactly_the_patch(c):
    x = clean_images(c=c)
    d, m = paste_defects(x, "noise", size=(0.2, 0.5), seed=3, shape="rect")
    assert d.dtype == np.uint8 and d.shape == x.shape and m.dtype == bool and m.shape == (6, 16, 20)
    np.testing.assert_array_equal(m, (d != x).any(axis=1))
    np.testing.assert_array_equal((d != x), np.broadcast_to(m[:, None], x.shape))  # every channel changes
    for i in range(len(x)):  # one rectangle per image, sized within the range
        y0, y1, x0, x1 = bounding_box(m[i])
        assert m[i, y0:y1, x0:x1].all() and m[i].sum() == (y1 - y0) * (x1 - x0)
        assert round(0.2 * 16) <= y1 - y0 <= round(0.5 * 16) and round(0.2 * 20) <= x1 - x0 <= round(0.5 * 20)


def test_blank_sets_the_patch_to_zero_and_masks_only_what_changed():
    x = clean_images()
    x[:, :, :8] = 0  # a dark top half: blanking there changes nothing
    d, m = paste_defects(x, "blank", size=(0.3, 0.6), seed=5)
    np.testing.assert_array_equal(m, (d != x).any(axis=1))
    assert (d[np.broadcast_to(m[:, None], d.shape)] == 0).all()
    np.testing.assert_array_equal(d[~np.broadcast_to(m[:, None], d.shape)], x[~np.broadcast_to(m[:, None], x.shape)])
    # the same seed draws the same patches whatever the kind: the noise patch is the full region
    _, region = paste_defects(x, "noise", size=(0.3, 0.6), seed=5)
    np.testing.assert_array_equal(m, region & (x != 0).any(axis=1))
    assert not m[:, :8].any()


def test_texture_is_a_shifted_block_of_a_source_image():
    h, w = 12, 12
    src = (np.arange(1, 15 * 15 + 1).reshape(1, 1, 15, 15)).astype(np.uint8)  # every pixel unique, none 0
    x = np.zeros((40, 1, h, w), np.uint8)
    d, m = paste_defects(x, "texture", size=(0.3, 0.6), seed=2, source_images=src)
    np.testing.assert_array_equal(m, (d != x).any(axis=1))
    for i in range(len(x)):
        ys, xs = np.nonzero(m[i])
        vals = d[i, 0, ys, xs].astype(int)
        assert len(np.unique(vals)) == len(vals)  # no source pixel twice: the cut lies inside the source
        sy, sx = np.divmod(vals - 1, 15)  # where each pasted value came from
        assert len(set(sy - ys)) == 1 and len(set(sx - xs)) == 1  # one offset: a contiguous cut
    # without sources: cut from another image of the batch (each image has its own constant value)
    x = (np.arange(1, 6) * 40).astype(np.uint8)[:, None, None, None] * np.ones((1, 1, h, w), np.uint8)
    d, m = paste_defects(x, "texture", seed=4)
    for i in range(len(x)):
        vals = np.unique(d[i, 0][m[i]])
        assert len(vals) == 1 and vals[0] != x[i, 0, 0, 0] and vals[0] in x[:, 0, 0, 0]


def test_ellipses_lie_inside_their_box():
    x = clean_images(n=8, h=32, w=32)
    _, m = paste_defects(x, "noise", size=(0.4, 0.6), seed=1, shape="ellipse")
    for i in range(len(x)):
        y0, y1, x0, x1 = bounding_box(m[i])
        assert m[i].sum() < (y1 - y0) * (x1 - x0)  # corners cut
        assert m[i, (y0 + y1 - 1) // 2, (x0 + x1 - 1) // 2]  # the centre is in
        np.testing.assert_array_equal(m[i, y0:y1, x0:x1], m[i, y0:y1, x0:x1][::-1, ::-1])  # symmetric


def test_defects_are_deterministic_under_a_seed():
    x = clean_images(c=3)
    for kind in ("noise", "texture", "blank"):
        a, ma = paste_defects(x, kind, seed=7)
        b, mb = paste_defects(torch.from_numpy(x), kind, seed=7)  # a tensor gives the same
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ma, mb)
        _, mc = paste_defects(x, kind, seed=8)
        assert not np.array_equal(ma, mc)
    np.testing.assert_array_equal(x, clean_images(c=3))  # the input is left alone


def test_pasted_defects_are_found_by_a_difference_map():
    """The two halves together: the absolute difference to the clean image is a perfect anomaly map."""
    x = clean_images(n=4, c=3)
    d, m = paste_defects(x, "noise", seed=0)
    diff = np.abs(d.astype(float) - x).mean(axis=1)
    assert pixel_roc_auc(diff, m) == pytest.approx(1.0)
    assert aupro(diff, m) == pytest.approx(1.0)


@pytest.mark.parametrize("args, kw, err, match", [
    ((np.zeros((2, 1, 8, 8), np.float32),), {}, DataError, "uint8"),
    ((np.zeros((2, 8, 8), np.uint8),), {}, DataError, "x\\[:, None\\]"),
    ((np.zeros((2, 1, 8, 8), np.uint8), "scratch"), {}, ConfigError, "noise, texture, blank"),
    ((np.zeros((2, 1, 8, 8), np.uint8),), {"size": (0.5, 0.2)}, ConfigError, "low <= high"),
    ((np.zeros((2, 1, 8, 8), np.uint8),), {"shape": "star"}, ConfigError, "rect, ellipse, random"),
    ((np.zeros((1, 1, 8, 8), np.uint8), "texture"), {}, DataError, "source_images"),
    ((np.zeros((2, 1, 8, 8), np.uint8), "texture"), {"source_images": np.zeros((2, 3, 8, 8), np.uint8)},
     DataError, "1 channel"),
    ((np.zeros((2, 1, 8, 8), np.uint8), "noise"), {"source_images": np.zeros((2, 1, 8, 8), np.uint8)},
     ConfigError, "only used by kind='texture'"),
])
def test_defect_errors_name_the_fix(args, kw, err, match):
    with pytest.raises(err, match=match):
        paste_defects(*args, **kw)


def mvtec_reference_aupro(maps, masks, fpr_limit=0.3):
    """The AU-PRO of the MVTec (3D-)AD evaluation code, written here from its description (every normal
    pixel's score a threshold): at the threshold of rank r of the n sorted normal-pixel scores (0-based,
    ascending) the FPR is taken as 1 - (r + 1) / n and a defect pixel counts as found when its score is
    strictly above the threshold; the curve, from (1, 1) at the lowest threshold, is integrated by the
    trapezoid rule up to fpr_limit (interpolated there) and divided by it."""
    ok = np.sort(maps[~masks])
    n = len(ok)
    regions = []
    for i in range(len(masks)):
        lab, k = ndimage.label(masks[i], structure=np.ones((3, 3)))
        regions += [maps[i][lab == r] for r in range(1, k + 1)]
    fpr = np.r_[1.0, [1 - (r + 1) / n for r in range(n)]][::-1]
    pro = np.r_[1.0, [np.mean([(reg > ok[r]).mean() for reg in regions]) for r in range(n)]][::-1]
    below = fpr < fpr_limit  # the FPRs are distinct and increasing, so np.interp interpolates at the limit
    x, y = np.r_[fpr[below], fpr_limit], np.r_[pro[below], np.interp(fpr_limit, fpr, pro)]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2) / fpr_limit


@pytest.mark.parametrize("limit", [0.3, 1.0])
def test_aupro_against_the_mvtec_reference_algorithm(limit):
    """Without ties the two agree to within 1 / (2 n fpr_limit) (n normal pixels): both curves pass through
    the same points, which the reference joins by a chord and vaelab by the staircase of the pixels in
    between, never above it. With ties they differ by convention: vaelab flags tied pixels together
    (score >= t, one diagonal step, as scikit-learn's ROC curve), so a constant map scores fpr_limit / 2; the
    reference ranks tied normal pixels as if apart but flags no tied defect pixel, so it scores 0."""
    rng = np.random.default_rng(4)
    masks = ndimage.binary_dilation(rng.random((3, 12, 12)) < 0.03, structure=np.ones((1, 3, 3)))
    maps = rng.normal(size=masks.shape) + 1.5 * masks  # continuous: no ties
    n = int((~masks).sum())
    ours, ref = aupro(maps, masks, fpr_limit=limit), mvtec_reference_aupro(maps, masks, fpr_limit=limit)
    assert ref - 1 / (2 * n * limit) - 1e-12 <= ours <= ref + 1e-12, (ours, ref)
    constant = np.full(masks.shape, 0.7)
    assert aupro(constant, masks, fpr_limit=limit) == pytest.approx(limit / 2)
    assert mvtec_reference_aupro(constant, masks, fpr_limit=limit) == pytest.approx(0.0 if limit < 1 else 0.5 / n)
