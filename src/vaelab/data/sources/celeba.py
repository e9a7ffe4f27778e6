"""CelebA-64: the aligned CelebA faces, centre-cropped and resized to 64 x 64, cached once processed."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...errors import DataError
from ...fileio import atomic_path
from ..download import RemoteFile, cache_dir
from ..imageset import ImageSet
from ..parsers import decode_image, load_npz
from .base import Source, register_source


def _center_crop_resize(arr: np.ndarray, crop: int, size: int) -> np.ndarray:
    from PIL import Image

    h, w = arr.shape[:2]
    c = min(crop, h, w)
    top, left = (h - c) // 2, (w - c) // 2
    im = Image.fromarray(arr[top : top + c, left : left + c])
    return np.asarray(im.resize((size, size), Image.BICUBIC))


class CelebASource(Source):
    """Aligned CelebA, centre-cropped to 140x140 and resized to 64x64 (the usual CelebA-64).

    Reads img_align_celeba/ or img_align_celeba.zip; the official partition file if present, else
    the official index ranges (1-162770 train, 182638-202599 test); a set smaller than the official
    one (such as a sample) is split 90/10 by file order. The processed arrays are cached."""

    CROP, SIZE = 140, 64

    def _complete(self, d: Path) -> bool:
        return (d / "img_align_celeba.zip").is_file() or (d / "img_align_celeba").is_dir() or any(d.glob("*.jpg"))

    def _entries(self, d: Path) -> list[tuple[str, Callable[[], bytes]]]:
        if (d / "img_align_celeba").is_dir():
            d = d / "img_align_celeba"
        if any(d.glob("*.jpg")):
            return [(p.name, p.read_bytes) for p in sorted(d.glob("*.jpg"))]
        try:
            zf = zipfile.ZipFile(d / "img_align_celeba.zip")
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{d / 'img_align_celeba.zip'}: corrupt or truncated ({e}); download it again") from None
        names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))
        return [(Path(n).name, (lambda n=n: zf.read(n))) for n in names]

    def load(self, split: str, path: str | None = None) -> ImageSet:
        d = self.fetch()
        entries = self._entries(d)
        if not entries:
            raise DataError(f"{d}: no .jpg images found for celeba64")
        part = d / "list_eval_partition.txt"
        if part.is_file():
            table = dict(line.split() for line in part.read_text().splitlines() if line.strip())
            want = {"train": "0", "test": "2"}[split]
            chosen = [e for e in entries if table.get(e[0]) == want]
        elif len(entries) >= 202599:
            idx = {"train": (1, 162770), "test": (182638, 202599)}[split]
            chosen = [e for e in entries if idx[0] <= int(Path(e[0]).stem) <= idx[1]]
        else:
            cut = int(round(len(entries) * 0.9))
            chosen = entries[:cut] if split == "train" else entries[cut:]
        key = f"celeba64-{split}-{len(chosen)}-{chosen[0][0] if chosen else 'none'}.npz"
        cached = cache_dir() / "processed" / key
        if cached.is_file():
            try:
                x = load_npz(cached, ("x",))["x"]
                if x.dtype == np.uint8 and x.ndim == 4 and x.shape[1:] == (3, self.SIZE, self.SIZE):
                    return ImageSet(torch.from_numpy(x), None, self.name)
            except DataError:
                pass  # a damaged cache is rebuilt from the images below (and replaced atomically)
        if not chosen:
            raise DataError(f"{d}: the {split} split of celeba64 is empty")
        x = np.stack([_center_crop_resize(decode_image(read(), f"{d}/{n}", "RGB"), self.CROP, self.SIZE) for n, read in chosen])
        x = x.transpose(0, 3, 1, 2).copy()
        try:
            with atomic_path(cached) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, x=x)
        except OSError:
            pass  # a read-only cache only costs time
        return ImageSet(torch.from_numpy(x), None, self.name)


CELEBA64 = register_source(CelebASource(
    "celeba64", "CelebA aligned faces, centre crop 140, 64x64 RGB", ("celeba", "celeba-sample"),
    "connect to the internet once (1.4 GB), or put img_align_celeba.zip (or the extracted folder) in $VAELAB_DATA/celeba",
    remote=(RemoteFile("img_align_celeba.zip",
                       ("https://s3.amazonaws.com/pytorch-tutorial-assets/img_align_celeba.zip",),
                       "46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74", 1443490838),),
    labelled=False, shape=(3, 64, 64),
))


