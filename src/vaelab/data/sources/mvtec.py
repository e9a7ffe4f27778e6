"""MVTec AD's folder layout: normal training images, defect test images and their masks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import DataError
from ..folder import IMAGE_SUFFIXES
from ..imageset import ImageSet
from ..parsers import decode_image, images_to_tensor
from .base import Source, register_source


class MvtecSource(Source):
    """A category of MVTec AD (or any folder in its layout): ``train/good/*.png`` (normal training
    images), ``test/<defect>/*.png`` (``good`` is normal, every other folder a defect) and
    ``ground_truth/<defect>/<name>_mask.png`` (the defect pixels). Labels: 0 normal, 1 defect; each
    image's file names its defect type; the masks come with the images for pixel-level evaluation.
    Set data.size (e.g. 128) with data.resize_mode=resize for the large MVTec images."""

    def _complete(self, d: Path) -> bool:
        return (d / "train" / "good").is_dir() and (d / "test").is_dir()

    def locate(self) -> Path | None:
        return None

    def claims(self, path: Path) -> int:
        return 2 if self._complete(path) and (path / "ground_truth").is_dir() else 0

    def load(self, split: str, path: str | None = None) -> ImageSet:
        root = self._path(path, "mvtec/<category>")
        if not self._complete(root):
            raise DataError(f"{root} is not in the MVTec AD layout: it needs train/good/ and test/<defect>/ folders")
        split = "test" if split == "all" else split
        folders = [root / "train" / "good"] if split == "train" else sorted(d for d in (root / "test").iterdir() if d.is_dir())
        images, labels, masks, files = [], [], [], []
        for d in folders:
            for f in sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")):
                im = decode_image(f.read_bytes(), str(f))
                images.append(im)
                defect = d.name != "good"
                labels.append(int(defect))
                files.append(str(f.relative_to(root)))
                if defect:
                    mf = root / "ground_truth" / d.name / f"{f.stem}_mask.png"
                    if not mf.is_file():
                        raise DataError(f"{f}: its mask {mf} is missing; MVTec AD gives every defect image a mask")
                    m = decode_image(mf.read_bytes(), str(mf), mode="L")[..., 0] > 127
                    if m.shape != im.shape[:2]:
                        raise DataError(f"{mf}: a {m.shape[1]}x{m.shape[0]} mask for a {im.shape[1]}x{im.shape[0]} image")
                    masks.append(m)
                else:
                    masks.append(np.zeros(im.shape[:2], bool))
        if not images:
            raise DataError(f"{root}: no images in {', '.join(str(d) for d in folders)}")
        if len({im.shape for im in images}) > 1:
            raise DataError(f"{root}: the images have several sizes ({sorted({im.shape[:2] for im in images})[:3]}); "
                            "MVTec AD categories have one")
        x = images_to_tensor(np.stack(images), str(root))
        return ImageSet(x, torch.tensor(labels), root.name, ["good", "defect"], files=files,
                        masks=torch.from_numpy(np.stack(masks)))


MVTEC = register_source(MvtecSource(
    "mvtec", "a category of MVTec AD, or any folder in its layout (train/good, test/<defect>, ground_truth)", (),
    "download MVTec AD and set data.path to one category's folder", needs_path=True, class_names=["good", "defect"]))
