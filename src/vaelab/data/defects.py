"""Synthetic defects: paste one patch into each image and return the exact defect masks.

For pixel-level anomaly evaluation (``vaelab.detect.pixel``) without a hand-labelled defect set:
take clean test images, ``paste_defects`` them, score the result and compare the anomaly maps with
the returned masks. Kinds:

- ``noise``: uniform noise; every pixel of the patch gets a new value drawn uniformly from the 255
  values that differ from its old one (per channel), so every patch pixel changes.
- ``texture``: a patch of the same shape cut at a random place from another image: one of
  ``source_images`` (e.g. another class or dataset) or, without them, another image of the batch.
- ``blank``: the patch is set to the background, 0.

The patch is a rectangle or an ellipse inscribed in one, with height and width drawn as fractions
of the image's side from ``size``, at a uniform position inside the image.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, DataError

SHAPES = ("rect", "ellipse", "random")


def _images(x: Any, name: str) -> np.ndarray:
    """Returns ``x`` (a numpy array or a CPU tensor) as a uint8 (N, C, H, W) numpy array, or raise DataError."""
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
    if a.dtype != np.uint8:
        raise DataError(f"{name} must be uint8 in 0..255, got {a.dtype}; "
                        "convert floats in [0, 1] with (x * 255).round().astype(np.uint8)")
    if a.ndim != 4 or a.shape[0] == 0 or a.shape[1] not in (1, 3):
        raise DataError(f"{name} must have shape (N, C, H, W) with N >= 1 and C in 1, 3, got {a.shape}; "
                        "add a channel axis to grayscale (N, H, W) images with x[:, None]")
    return a


def _paste_noise(images: np.ndarray, region: np.ndarray, rng: np.random.Generator,
                 source: np.ndarray | None, offsets: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    # adding 1..255 modulo 256 draws uniformly among the 255 values other than the old one
    # (uint8 arithmetic wraps modulo 256 and keeps the copy at one byte per value)
    return images + rng.integers(1, 256, size=images.shape, dtype=np.uint8)


def _paste_blank(images: np.ndarray, region: np.ndarray, rng: np.random.Generator,
                 source: np.ndarray | None, offsets: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.zeros_like(images)


def _paste_texture(images: np.ndarray, region: np.ndarray, rng: np.random.Generator,
                   source: np.ndarray | None, offsets: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    n, _, h, w = images.shape
    if source is None:  # another image of the batch: a random non-zero shift of the index
        pick = (np.arange(n) + rng.integers(1, n, size=n)) % n
        source = images
    else:
        pick = rng.integers(0, len(source), size=n)
    dy, dx = offsets  # (source row - target row), (source column - target column) per image
    ys = np.clip(np.arange(h)[None, :, None] + dy[:, None, None], 0, source.shape[2] - 1)  # (N, H, 1)
    xs = np.clip(np.arange(w)[None, None, :] + dx[:, None, None], 0, source.shape[3] - 1)  # (N, 1, W)
    # advanced indices around a slice put their broadcast shape first: (N, H, W, C)
    patch = source[pick[:, None, None], :, ys, xs]
    return np.ascontiguousarray(patch.transpose(0, 3, 1, 2))


DEFECT_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "noise": _paste_noise,
    "texture": _paste_texture,
    "blank": _paste_blank,
}


def paste_defects(images: Any, kind: str = "noise", size: Sequence[float] = (0.1, 0.3), seed: int = 0,
                  source_images: Any = None, shape: str = "random") -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(defective, masks)``: a copy of the uint8 images (N, C, H, W) with one patch of
    kind ``kind`` ('noise', 'texture' or 'blank') pasted into each, and bool masks (N, H, W) that
    are True exactly where a pixel changed (in any channel).

    ``size`` = (low, high): the patch's height and width are each drawn uniformly from
    low * H .. high * H and low * W .. high * W pixels (at least 1). ``shape``: 'rect', 'ellipse'
    (inscribed in the drawn rectangle) or 'random' (each image draws one of the two).
    ``source_images`` (uint8 (M, C, H', W'), H' >= H, W' >= W) are where 'texture' cuts its
    patches, at a random place of a random source image; without them it cuts from another image
    of ``images`` (which then needs at least two images).

    The mask marks the changed pixels, not the whole patch: the 'noise' patch changes every one of
    its pixels, but a 'blank' patch leaves pixels that were already 0 (a dark background) as they
    were, and a 'texture' patch those that happen to match, so those are not defects. The same
    ``seed`` gives the same defects; images, patch sizes and places are drawn for all images at
    once (no Python loop over images). Accepts numpy arrays or CPU tensors (e.g.
    ``ImageSet.images``) and returns numpy arrays.
    """
    x = _images(images, "images")
    try:
        paste = DEFECT_KINDS[kind]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown defect kind {kind!r}; choose one of: {', '.join(DEFECT_KINDS)}") from None
    if shape not in SHAPES:
        raise ConfigError(f"unknown patch shape {shape!r}; choose one of: {', '.join(SHAPES)}")
    try:
        lo, hi = (float(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be two fractions (low, high) of the image side, e.g. (0.1, 0.3); got {size!r}") \
            from None
    if not 0 < lo <= hi <= 1:
        raise ConfigError(f"size must satisfy 0 < low <= high <= 1 (fractions of the image side), got {size!r}")
    n, c, h, w = x.shape
    source = None
    if source_images is not None:
        if kind != "texture":
            raise ConfigError(f"source_images are only used by kind='texture', not {kind!r}; drop them or "
                              "choose kind='texture'")
        source = _images(source_images, "source_images")
        if source.shape[1] != c or source.shape[2] < h or source.shape[3] < w:
            raise DataError(f"source_images must have {c} channel(s) and be at least {h} x {w} to cut patches for "
                            f"images of shape {x.shape[1:]}; got {source.shape[1:]}: convert or resize them")
    elif kind == "texture" and n < 2:
        raise DataError("kind='texture' without source_images cuts the patch from another image of the batch, "
                        "and there is only one; pass source_images or more images")

    rng = np.random.default_rng(seed)
    ph = rng.integers(max(1, round(lo * h)), max(1, round(hi * h)) + 1, size=n)
    pw = rng.integers(max(1, round(lo * w)), max(1, round(hi * w)) + 1, size=n)
    top = rng.integers(0, h - ph + 1)
    left = rng.integers(0, w - pw + 1)
    ellipse = {"rect": np.zeros(n, bool), "ellipse": np.ones(n, bool), "random": rng.random(n) < 0.5}[shape]
    src_h, src_w = (source.shape[2], source.shape[3]) if source is not None else (h, w)
    src_top = rng.integers(0, src_h - ph + 1)  # where the texture patch is cut (used by 'texture' only)
    src_left = rng.integers(0, src_w - pw + 1)

    yy = np.arange(h)[None, :, None]
    xx = np.arange(w)[None, None, :]
    t, l_, hh, ww = (v[:, None, None] for v in (top, left, ph, pw))
    box = (yy >= t) & (yy < t + hh) & (xx >= l_) & (xx < l_ + ww)
    # the inscribed ellipse of the box, centred on the box's centre; it always holds the centre pixel
    dy2 = (((yy - (t + (hh - 1) / 2.0)) / (hh / 2.0)) ** 2).astype(np.float32)  # (N, H, 1)
    dx2 = (((xx - (l_ + (ww - 1) / 2.0)) / (ww / 2.0)) ** 2).astype(np.float32)  # (N, 1, W)
    inside = dy2 + dx2 <= 1.0
    region = box & np.where(ellipse[:, None, None], inside, True)

    pasted = paste(x, region, rng, source, (src_top - top, src_left - left))
    defective = np.where(region[:, None], pasted, x)
    masks = (defective != x).any(axis=1)
    return defective, masks


__all__ = ["DEFECT_KINDS", "SHAPES", "paste_defects"]


def build_defect_set(out: Any, data: str = "fashion-mnist", kind: str = "noise", fraction: float = 0.5, seed: int = 0,
                     size: Sequence[float] = (0.1, 0.3), test_limit: int | None = None,
                     path: str | None = None) -> dict[str, int]:
    """Write an .npz for pixel-level evaluation (``vaelab data build-defects``): ``x_train`` / ``y_train``,
    the source's clean training images; ``x_test``, its test images with ``fraction`` of them given one
    defect of ``kind`` (texture patches are cut from the other test images); ``y_test`` (1 = defect)
    and ``masks_test`` (N, H, W), exactly the changed pixels. ``vaelab detect RUN --data OUT --maps
    mse,ssim`` scores it against the masks. ``path``: the file or folder of a source that needs one
    (npz, folder, e.g. the exact-pixel CIFAR-10 subset). Returns the sizes written."""
    from pathlib import Path

    from ..errors import ConfigError
    from ..fileio import atomic_path
    from . import DataConfig, load_split

    if not 0 < fraction <= 1:
        raise ConfigError(f"the defective fraction must be in (0, 1], got {fraction}")
    out = Path(out)
    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}: the defect set is an .npz file")
    if out.exists():
        raise ConfigError(f"--out {out} already exists; choose a new file name (nothing is overwritten)")
    train = load_split(DataConfig(name=data, path=path), "train")
    test = load_split(DataConfig(name=data, path=path, test_limit=test_limit), "test",
                      apply_class_filter=False).limit(test_limit, seed)
    rng = np.random.default_rng(seed)
    n = len(test)
    pick = np.sort(rng.choice(n, size=max(1, int(round(fraction * n))), replace=False))
    x = test.images.numpy().copy()
    sources = np.delete(x, pick, axis=0) if kind == "texture" and len(pick) < n else None  # clean images to cut from
    defective, m = paste_defects(x[pick], kind, size, seed, source_images=sources)
    x[pick] = defective
    masks = np.zeros((n, *x.shape[2:]), bool)
    masks[pick] = m
    y = np.zeros(n, np.int64)
    y[pick] = 1
    arrays = {"x_train": train.images.numpy(), "y_train": np.zeros(len(train), np.int64), "x_test": x, "y_test": y,
              "masks_test": masks}
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return {"n_train": len(train), "n_test": n, "n_defective": int(y.sum()), "defect_pixels": int(masks.sum())}
