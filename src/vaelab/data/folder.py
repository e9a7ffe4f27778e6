"""A user's directory of images: class sub-folders optional, train/ and test/ optional.

Reading a folder is where a user's own files meet vaelab, so it says what it did (files skipped,
images converted or resized, counts per class) and refuses, with every offending file named at
once, what it cannot use. Images of several sizes or modes are brought to one when asked
(``data.size`` with ``data.resize_mode``, ``data.channels``)."""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .imageset import ImageSet
from .parsers import decode_image, images_to_tensor

log = logging.getLogger("vaelab")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# folders that hold no classes: macOS zip leftovers, version control, hidden folders
_SKIP_DIRS = {"__MACOSX"}
_MAX_LISTED = 10


def _listing(paths: list[str], n: int = _MAX_LISTED) -> str:
    more = f" and {len(paths) - n} more" if len(paths) > n else ""
    return ", ".join(paths[:n]) + more


def _hidden(p: Path) -> bool:
    """Hidden and system files: .DS_Store, macOS AppleDouble '._name.jpg' files, '.name'."""
    return p.name.startswith(".")


@dataclass
class FolderOptions:
    """How to bring a folder's images to one shape: the run's data.size, data.resize_mode, data.channels."""

    size: int | None = None
    resize_mode: str = "pad"
    channels: int | None = None


def _fit_size(arr: np.ndarray, size: int, mode: str, source: str) -> np.ndarray:
    """One H x W x C uint8 image made size x size: 'resize' resamples (bilinear, antialiased),
    'pad' centres it on black."""
    h, w, c = arr.shape
    if (h, w) == (size, size):
        return arr
    if mode == "resize":
        from PIL import Image

        im = Image.fromarray(arr[:, :, 0] if c == 1 else arr)
        out = np.asarray(im.resize((size, size), Image.BILINEAR, reducing_gap=None))
        return out[:, :, None] if out.ndim == 2 else out
    if mode == "pad":
        if h > size or w > size:
            raise DataError(f"{source}: {h}x{w} is larger than data.size={size}, so it cannot be padded to it; "
                            "use --set data.resize_mode=resize")
        out = np.zeros((size, size, c), dtype=np.uint8)
        top, left = (size - h) // 2, (size - w) // 2
        out[top : top + h, left : left + w] = arr
        return out
    raise DataError(f"unknown resize mode {mode!r}; use 'pad' or 'resize'")


def read_folder(d: Path, options: FolderOptions | None = None) -> ImageSet:
    """Every image under ``d``: one class per sub-folder (labels in sorted folder order), or all at
    the top level (no labels). Hidden files and files that are not images are skipped and counted;
    unreadable images are listed together in one error; mixed sizes and gray / colour modes are
    made one when ``options`` say how, and refused with the fix otherwise."""
    opt = options or FolderOptions()
    if not d.is_dir():
        raise DataError(f"folder {d} does not exist or is not a directory")
    entries = sorted(d.iterdir())
    subdirs = [p for p in entries if p.is_dir() and not _hidden(p) and p.name not in _SKIP_DIRS]
    hidden, other = [], []

    def images_in(paths: list[Path]) -> list[Path]:
        found = []
        for p in paths:
            if not p.is_file():
                continue
            if _hidden(p) or any(part.startswith(".") or part in _SKIP_DIRS for part in p.relative_to(d).parts[:-1]):
                hidden.append(str(p.relative_to(d)))
            elif p.suffix.lower() in IMAGE_SUFFIXES:
                found.append(p)
            else:
                other.append(str(p.relative_to(d)))
        return found

    top = images_in(entries)
    classes: list[tuple[str, list[Path]]] = []
    empty_dirs = []
    for sd in subdirs:
        files = images_in(sorted(sd.rglob("*")))
        (classes.append((sd.name, files)) if files else empty_dirs.append(sd.name))
    if classes and top:
        raise DataError(
            f"{d}: {len(top)} image(s) sit at the top level ({_listing([p.name for p in top], 5)}) while the others are in "
            f"class sub-folders ({_listing([c for c, _ in classes], 5)}), so they have no class. Move them into a class "
            "folder or out of the folder; or put every image at the top level to train without labels")
    files = [(p, label) for label, (_, fs) in enumerate(classes) for p in fs] if classes else [(p, -1) for p in top]
    if not files:
        raise DataError(f"{d}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
                        + (f"; skipped {len(hidden) + len(other)} other files" if hidden or other else "") + ")")

    arrays, modes, bad = [], Counter(), []
    for p, _ in files:
        try:
            arr, mode = decode_image(p.read_bytes(), str(p), return_mode=True)
        except DataError as e:
            bad.append(f"{p.relative_to(d)} ({str(e).split(': ', 1)[-1].split('; remove')[0]})")
            continue
        except OSError as e:
            bad.append(f"{p.relative_to(d)} (cannot read: {e.strerror or e})")
            continue
        arrays.append(arr)
        modes[mode] += 1
    if bad:
        raise DataError(f"{d}: {len(bad)} of {len(files)} image files cannot be read: {_listing(bad)}. "
                        "Remove or replace them, then run again")

    notes = []
    # one number of channels: what data.channels asks, else colour if any image has colour
    chans = {a.shape[2] for a in arrays}
    want = opt.channels or (3 if 3 in chans else 1)
    if len(chans) > 1 or want not in chans:
        converted = sum(a.shape[2] != want for a in arrays)
        arrays = [a if a.shape[2] == want else _to_channels(a, want) for a in arrays]
        notes.append(f"converted {converted} {'grayscale' if want == 3 else 'colour'} images to "
                     f"{'RGB' if want == 3 else 'grayscale'}")
    for m, what in (("RGBA", "RGBA images to RGB (alpha dropped)"), ("P", "palette images to RGB"),
                    ("LA", "grayscale+alpha images to grayscale (alpha dropped)"), ("CMYK", "CMYK images to RGB")):
        if modes.get(m):
            notes.append(f"converted {modes[m]} {what}")
    sixteen = sum(v for k, v in modes.items() if k.startswith("I"))
    if sixteen:
        notes.append(f"scaled {sixteen} 16-bit images to 8 bits")
    sizes = Counter(a.shape[:2] for a in arrays)
    if len(sizes) > 1 or (opt.size is not None and opt.resize_mode == "resize" and sizes and next(iter(sizes)) != (opt.size, opt.size)):
        if opt.size is None:
            shown = ", ".join(f"{h}x{w} ({n})" for (h, w), n in sizes.most_common(4))
            raise DataError(f"{d}: the images have {len(sizes)} different sizes ({shown}{', ...' if len(sizes) > 4 else ''}); "
                            "bring them to one with --set data.size=N --set data.resize_mode=resize (resample to N x N) "
                            "or data.resize_mode=pad (centre each on black, for images no larger than N)")
        changed = sum(a.shape[:2] != (opt.size, opt.size) for a in arrays)
        stretched = sum(a.shape[0] != a.shape[1] for a in arrays) if opt.resize_mode == "resize" else 0
        arrays = [_fit_size(a, opt.size, opt.resize_mode, str(p)) for a, (p, _) in zip(arrays, files)]
        notes.append(f"{'resized' if opt.resize_mode == 'resize' else 'padded'} {changed} images to {opt.size}x{opt.size}"
                     + (f" ({stretched} were not square and are stretched)" if stretched else ""))
    labels = torch.tensor([lab for _, lab in files]) if classes else None
    names = [c for c, _ in classes]
    counts = (", ".join(f"{c} {len(fs)}" for c, fs in classes) if classes else "no class sub-folders, so no labels")
    summary = f"folder {d}: {len(files)} images ({counts})"
    skipped = []
    if hidden:
        skipped.append(f"{len(hidden)} hidden or system files ({_listing(hidden, 3)})")
    if other:
        skipped.append(f"{len(other)} files that are not images ({_listing(other, 3)})")
    if empty_dirs:
        skipped.append(f"{len(empty_dirs)} sub-folders without images ({_listing(empty_dirs, 3)})")
    notes = [summary] + ([f"skipped {'; '.join(skipped)}"] if skipped else []) + notes
    for n in notes:
        log.info("%s", n)
    files_rel = [str(p.relative_to(d)) for p, _ in files]
    return ImageSet(images_to_tensor(np.stack(arrays), str(d)), labels, d.name, names, files=files_rel, notes=notes)


def _to_channels(a: np.ndarray, channels: int) -> np.ndarray:
    if channels == 3:
        return np.repeat(a, 3, axis=2)
    w = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, as PIL's convert("L")
    return np.clip(np.round((a.astype(np.float64) * w).sum(2, keepdims=True)), 0, 255).astype(np.uint8)


class FolderCache:
    """The last folder read, so the train and test splits of one folder decode it once."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: ImageSet | None = None

    def get(self, d: Path, options: FolderOptions) -> ImageSet:
        stamp = tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in d.rglob("*") if p.is_file()))
        key = (str(d.resolve()), options.size, options.resize_mode, options.channels, hash(stamp))
        if key != self._key or self._value is None:
            self._value, self._key = read_folder(d, options), key
        return self._value
