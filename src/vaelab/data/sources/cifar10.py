"""CIFAR-10: the binary distribution (no pickle), read straight from the tarball or its extracted
folder; also the JPEG-bytes npz that ../shared/data provides offline (lossy pixels: not for paper
numbers). The checksum is torchvision's."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import torch

from ...errors import DataError
from ..download import RemoteFile
from ..imageset import ImageSet
from ..parsers import decode_image, images_to_tensor, load_npz, read_cifar10_bin
from .base import Source, register_source

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Cifar10Source(Source):
    """The binary distribution (no pickle), read straight from the tarball or its extracted folder;
    also the JPEG-bytes npz that ../shared/data provides offline (lossy pixels: not for paper numbers)."""

    TAR = "cifar-10-binary.tar.gz"
    JPEG_NPZ = "cifar10_jpeg_bytes.npz"

    def _complete(self, d: Path) -> bool:
        return (d / self.TAR).is_file() or (d / "cifar-10-batches-bin" / "test_batch.bin").is_file() or (d / self.JPEG_NPZ).is_file()

    def load(self, split: str, path: str | None = None) -> ImageSet:
        d = self.fetch()
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
        if (d / "cifar-10-batches-bin" / "test_batch.bin").is_file():
            blobs = [((d / "cifar-10-batches-bin" / n).read_bytes(), str(d / "cifar-10-batches-bin" / n)) for n in names]
        elif (d / self.TAR).is_file():
            blobs = []
            try:
                with tarfile.open(d / self.TAR, "r:gz") as tf:
                    for n in names:
                        m = tf.extractfile(f"cifar-10-batches-bin/{n}")
                        if m is None:
                            raise KeyError(n)
                        blobs.append((m.read(), f"{d / self.TAR}:{n}"))
            except (tarfile.TarError, KeyError, EOFError, OSError) as e:
                raise DataError(f"{d / self.TAR}: corrupt or truncated archive ({e}); delete it and download again") from None
        else:
            return self._load_jpeg_npz(d / self.JPEG_NPZ, split)
        parts = [read_cifar10_bin(b, src) for b, src in blobs]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        return ImageSet(torch.from_numpy(x), torch.from_numpy(y), self.name, self.class_names)

    def _load_jpeg_npz(self, path: Path, split: str) -> ImageSet:
        z = load_npz(path, (f"{split}_bytes", f"{split}_offsets", f"y_{split}"))
        buf, off = z[f"{split}_bytes"], z[f"{split}_offsets"]
        if off.ndim != 1 or off[0] != 0 or off[-1] != len(buf) or np.any(np.diff(off) <= 0):
            raise DataError(f"{path}: offsets do not partition the byte buffer; the file is corrupt")
        imgs = np.stack([decode_image(buf[off[i] : off[i + 1]].tobytes(), f"{path}[{i}]", "RGB") for i in range(len(off) - 1)])
        return ImageSet(images_to_tensor(imgs, str(path)), torch.from_numpy(z[f"y_{split}"].astype(np.int64)), self.name, self.class_names)


CIFAR10 = register_source(Cifar10Source(
    "cifar10", "CIFAR-10, 50k/10k, 32x32 RGB", ("cifar10", "cifar-10"),
    "connect to the internet once, or put cifar-10-binary.tar.gz in $VAELAB_DATA/cifar10",
    remote=(RemoteFile("cifar-10-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                       "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", 170052171),),
    class_names=CIFAR_CLASSES, shape=(3, 32, 32),
))


