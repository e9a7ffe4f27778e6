"""MNIST and Fashion-MNIST: IDX files (gzipped or not). Checksums were read from
tensorflow_datasets' url_checksums and torchvision's dataset definitions, and the MNIST ones also
match the md5-verified local copies."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import DataError
from ..download import RemoteFile
from ..imageset import ImageSet
from ..parsers import read_idx
from .base import Source, register_source

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class IdxSource(Source):
    files = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }

    def _file(self, d: Path, stem: str) -> Path | None:
        for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
            if (d / name).is_file():
                return d / name
        return None

    def _complete(self, d: Path) -> bool:
        return all(self._file(d, s) for pair in self.files.values() for s in pair)

    def load(self, split: str, path: str | None = None) -> ImageSet:
        d = self.fetch()
        img_stem, lab_stem = self.files[split]
        x = read_idx(self._file(d, img_stem))
        y = read_idx(self._file(d, lab_stem))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{d}: images {x.shape} and labels {y.shape} do not match; the files are corrupt")
        return ImageSet(torch.from_numpy(x.copy())[:, None], torch.from_numpy(y.astype(np.int64)), self.name, self.class_names)


def _idx_remote(base_urls: list[str], sums: dict[str, tuple[str, int]]) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(f, tuple(b + f for b in base_urls), s, n) for f, (s, n) in sums.items())


MNIST = register_source(IdxSource(
    "mnist", "MNIST handwritten digits, 60k/10k, 28x28 gray", ("mnist",),
    "connect to the internet once (vaelab downloads and checks it), or put the four IDX .gz files in $VAELAB_DATA/mnist",
    remote=_idx_remote(
        ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"],
        {
            "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
            "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
            "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
            "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
        },
    ),
    class_names=[str(i) for i in range(10)], shape=(1, 28, 28),
))

FASHION_MNIST = register_source(IdxSource(
    "fashion-mnist", "Zalando Fashion-MNIST, 60k/10k, 28x28 gray", ("fashion-mnist",),
    "on Debian/Ubuntu: apt-get install dataset-fashion-mnist; or connect to the internet once; "
    "or put the four IDX .gz files in $VAELAB_DATA/fashion-mnist",
    remote=_idx_remote(
        ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        {
            "train-images-idx3-ubyte.gz": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
            "train-labels-idx1-ubyte.gz": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
            "t10k-images-idx3-ubyte.gz": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
            "t10k-labels-idx1-ubyte.gz": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
        },
    ),
    class_names=FASHION_CLASSES, shape=(1, 28, 28),
))
