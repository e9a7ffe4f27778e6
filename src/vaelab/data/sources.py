"""Named image sources. Each is found under $VAELAB_DATA, the user cache, Debian's datasets, or
downloaded (sha256-checked, atomic). Checksums were read from tensorflow_datasets' url_checksums
and torchvision's dataset definitions, and the MNIST ones also match the md5-verified local copies."""
from __future__ import annotations

import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from ..fileio import atomic_path
from .download import RemoteFile, cache_dir, data_roots, download
from .folder import IMAGE_SUFFIXES, FolderCache, FolderOptions, read_folder  # noqa: F401
from .imageset import UNKNOWN_LABEL, ImageSet
from .parsers import decode_image, images_to_tensor, load_npz, read_cifar10_bin, read_idx

SPLITS = ("train", "test")

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass
class Source:
    """A named dataset: where to look, how to fetch, how to parse."""

    name: str
    description: str
    dirnames: tuple[str, ...]
    how_to_get: str
    needs_path: bool = False
    remote: tuple[RemoteFile, ...] = ()
    class_names: list[str] = field(default_factory=list)
    takes_image_options = False  # a source that decodes image files itself takes FolderOptions in load()

    def candidates(self) -> list[Path]:
        return [root / d for root in data_roots() for d in self.dirnames]

    def locate(self) -> Path | None:
        for c in self.candidates():
            if self._complete(c):
                return c
        return None

    def _complete(self, d: Path) -> bool:  # overridden
        raise NotImplementedError

    def fetch(self) -> Path:
        found = self.locate()
        if found is not None:
            return found
        if not self.remote:
            raise self._missing()
        dest = cache_dir() / self.dirnames[0]
        for r in self.remote:
            if not (dest / r.filename).exists():
                download(r, dest)
        return dest

    def _missing(self) -> DataError:
        where = "\n  ".join(str(c) for c in self.candidates())
        return DataError(f"dataset {self.name!r} not found. Looked in:\n  {where}\nTo get it: {self.how_to_get}")

    def load(self, split: str, path: str | None = None) -> ImageSet:  # overridden
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
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


MNIST = IdxSource(
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
    class_names=[str(i) for i in range(10)],
)

FASHION_MNIST = IdxSource(
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
    class_names=FASHION_CLASSES,
)


# --------------------------------------------------------------------------------------------
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


CIFAR10 = Cifar10Source(
    "cifar10", "CIFAR-10, 50k/10k, 32x32 RGB", ("cifar10", "cifar-10"),
    "connect to the internet once, or put cifar-10-binary.tar.gz in $VAELAB_DATA/cifar10",
    remote=(RemoteFile("cifar-10-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                       "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", 170052171),),
    class_names=CIFAR_CLASSES,
)


# --------------------------------------------------------------------------------------------
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


CELEBA64 = CelebASource(
    "celeba64", "CelebA aligned faces, centre crop 140, 64x64 RGB", ("celeba", "celeba-sample"),
    "connect to the internet once (1.4 GB), or put img_align_celeba.zip (or the extracted folder) in $VAELAB_DATA/celeba",
    remote=(RemoteFile("img_align_celeba.zip",
                       ("https://s3.amazonaws.com/pytorch-tutorial-assets/img_align_celeba.zip",),
                       "46fb89443c578308acf364d7d379fe1b9efb793042c0af734b6112e4fd3a8c74", 1443490838),),
)


# --------------------------------------------------------------------------------------------
class DigitsSource(Source):
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16 scaled to 0..255); 20% test."""

    def _complete(self, d: Path) -> bool:
        return True

    def locate(self) -> Path | None:
        import sklearn

        return Path(sklearn.__file__).parent / "datasets" / "data"

    def load(self, split: str, path: str | None = None) -> ImageSet:
        from sklearn.datasets import load_digits

        b = load_digits()
        x = torch.from_numpy((b.images * 255.0 / 16.0).round().astype(np.uint8))[:, None]
        full = ImageSet(x, torch.from_numpy(b.target.astype(np.int64)), self.name, [str(i) for i in range(10)])
        train, test = full.split(0.2, seed=0)
        return train if split == "train" else ImageSet(test.images, test.labels, self.name, full.class_names)


DIGITS = DigitsSource("digits", "scikit-learn's bundled 8x8 digits, 1,797 images", (), "ships with scikit-learn")


# --------------------------------------------------------------------------------------------
class FolderSource(Source):
    """A directory of images, optionally one sub-directory per class, optionally train/ and test/
    sub-directories; without those, 10% of the images (seeded) form the test split, and the split
    'all' is every image (what `vaelab detect` scores). Reading is in data/folder.py."""

    takes_image_options = True  # load() takes the run's size / resize_mode / channels

    _cache = FolderCache()  # one per process: the last folder read

    def _complete(self, d: Path) -> bool:
        return d.is_dir()

    def locate(self) -> Path | None:
        return None

    def load(self, split: str, path: str | None = None, options: FolderOptions | None = None) -> ImageSet:
        if not path:
            raise DataError("the folder source needs a path: --set data.path=/path/to/images")
        d = Path(path).expanduser()
        if not d.is_dir():
            raise DataError(f"folder {d} does not exist or is not a directory")
        opt = options or FolderOptions()
        if (d / "train").is_dir() and (d / "test").is_dir():
            if split == "all":
                raise DataError(f"{d} has train/ and test/ sub-folders: choose one of them (split train or test)")
            return read_folder(d / split, opt)
        full = self._cache.get(d, opt)
        if split == "all":
            return full
        train, test = full.split(0.1, seed=0)
        return train if split == "train" else ImageSet(test.images, test.labels, train.name, train.class_names,
                                                       files=test.files, notes=test.notes)


FOLDER = FolderSource("folder", "your own directory of images (class sub-directories optional)", (), "set data.path to the directory", needs_path=True)


class NpzSource(Source):
    """Arrays you saved with numpy.savez: x_train (and y_train, x_test, y_test), or x (and y; 10%
    held out as the test split). Images are uint8 N x H x W, N x H x W x C or N x C x H x W, or
    floats in [0, 1]; an N x D array is N vectors of D numbers (tabular data). A label of -1 means
    unknown. A labelled set x_labeled / y_labeled (the OOD study's layout) joins the training split
    after x_train, whose images then carry the unknown label unless y_train gives theirs: a
    semi-supervised model (ssvae) learns from those labels, the others ignore them."""

    def _complete(self, d: Path) -> bool:
        return d.is_file()

    def locate(self) -> Path | None:
        return None

    def load(self, split: str, path: str | None = None) -> ImageSet:
        if not path:
            raise DataError("the npz source needs a path: --set data.path=/path/to/arrays.npz")
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"npz file {p} does not exist")
        z = load_npz(p)
        if f"x_{split}" in z:
            x, y = z[f"x_{split}"], z.get(f"y_{split}")
            if split == "train" and "x_labeled" in z and "y_labeled" in z:  # a labelled set beside the training
                # images (the OOD study's layout): both train, the others with the unknown label
                if z["x_labeled"].shape[1:] != x.shape[1:]:
                    raise DataError(f"{p}: x_labeled's images are {z['x_labeled'].shape[1:]}, x_train's {x.shape[1:]}; "
                                    "they must have one shape")
                y = np.concatenate([np.full(len(x), UNKNOWN_LABEL, np.int64) if y is None else y.astype(np.int64),
                                    z["y_labeled"].astype(np.int64)])
                x = np.concatenate([x, z["x_labeled"]])
            if f"masks_{split}" in z:  # defect masks (vaelab data build-defects): pixel-level evaluation
                s = self._make(x, y, p)
                return ImageSet(s.images, s.labels, s.name, s.class_names, masks=torch.from_numpy(z[f"masks_{split}"].astype(bool)))
        elif "x" in z:
            full = self._make(z["x"], z.get("y"), p)
            if split == "all":
                return full
            train, test = full.split(0.1, seed=0)
            return train if split == "train" else ImageSet(test.images, test.labels, full.name)
        else:
            raise DataError(f"{p}: expected arrays x_train/x_test (with optional y_train/y_test) or x (and y); found {sorted(z)}")
        return self._make(x, y, p)

    def _make(self, x: np.ndarray, y: np.ndarray | None, p: Path) -> ImageSet:
        if x.ndim not in (2, 3, 4):
            raise DataError(f"{p}: images must be an array N x H x W, N x H x W x C or N x C x H x W, or vectors N x D; "
                            f"got shape {x.shape}")
        if x.size == 0:
            raise DataError(f"{p}: the array is empty (shape {x.shape})")
        labels = _labels(y, len(x), p)
        if x.ndim == 2:  # vectors
            if x.dtype.kind not in "fiub":
                raise DataError(f"{p}: vectors must be numbers, got dtype {x.dtype}")
            return ImageSet(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), labels, p.stem)
        if x.dtype.kind == "f":
            if not np.isfinite(x).all():
                raise DataError(f"{p}: images contain NaN or infinite values; clean them first")
            if x.min() < 0 or x.max() > 1:
                raise DataError(f"{p}: float images must be in [0, 1]; found [{x.min():.3g}, {x.max():.3g}]")
            x = np.round(x.astype(np.float64) * 255).astype(np.uint8)
        return ImageSet(images_to_tensor(x, str(p)), labels, p.stem)


def _labels(y: np.ndarray | None, n: int, p: Path) -> torch.Tensor | None:
    if y is None:
        return None
    if y.dtype.kind not in "iu" or y.shape != (n,):
        raise DataError(f"{p}: labels must be {n} integers, got {y.dtype} {y.shape}")
    if y.size and (y.min() < UNKNOWN_LABEL or int(y.max()) > np.iinfo(np.int64).max):
        raise DataError(f"{p}: labels must be class numbers 0, 1, 2, ... (or {UNKNOWN_LABEL} for an unknown label); found "
                        f"{y.min()} .. {y.max()}")
    return torch.from_numpy(y.astype(np.int64))


CSV_MAX_COLUMNS = 1 << 16  # a vector's length: the widest layer a model may have (models.base.MAX_WIDTH)
CSV_MAX_CELLS = 1 << 28  # 2 GiB of float64 numbers


class CsvSource(Source):
    """A CSV file of numbers, one example per row (tabular data): vectors of every column but the
    label column (``data.label_column``: its header name or 0-based index; integer classes). A
    first row with any non-numeric cell is the header. 10% of the rows (seeded) form the test
    split; the split 'all' is every row (what `vaelab detect` scores)."""

    def _complete(self, d: Path) -> bool:
        return d.is_file()

    def locate(self) -> Path | None:
        return None

    def load(self, split: str, path: str | None = None, label_column: str | None = None) -> ImageSet:
        import csv

        if not path:
            raise DataError("the csv source needs a path: --set data.path=/path/to/table.csv")
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"csv file {p} does not exist")
        try:
            with open(p, newline="", encoding="utf-8-sig") as f:
                rows, cells = [], 0
                for r in csv.reader(f):
                    if not (r and any(c.strip() for c in r)):
                        continue
                    cells += len(r)
                    if len(r) > CSV_MAX_COLUMNS or cells > CSV_MAX_CELLS:  # before a table that cannot fit is built
                        raise DataError(f"{p}: row {len(rows) + 1} brings the table to {len(r):,} columns and {cells:,} "
                                        f"cells; a CSV source takes at most {CSV_MAX_COLUMNS:,} columns and "
                                        f"{CSV_MAX_CELLS:,} cells. Select the columns you need first")
                    rows.append(r)
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{p}: cannot be read as a CSV text file ({e})") from None
        if not rows:
            raise DataError(f"{p}: the file holds no rows")

        def number(c: str) -> bool:
            try:
                float(c)
                return True
            except ValueError:
                return False

        header = rows[0] if not all(number(c) for c in rows[0]) else None
        body = rows[1:] if header else rows
        width = len(rows[0])
        bad = [i + (2 if header else 1) for i, r in enumerate(body) if len(r) != width]
        if bad:
            raise DataError(f"{p}: rows {bad[:5]} have another number of columns than the first ({width})")
        col = None
        if label_column is not None:
            names = header or []
            if label_column in names:
                col = names.index(label_column)
            elif label_column.lstrip("-").isdigit() and -width <= int(label_column) < width:
                col = int(label_column) % width
            else:
                raise DataError(f"{p}: no label column {label_column!r}; columns: {names or list(range(width))}")
        class_names: list[str] = []
        if col is not None and not all(number(r[col]) for r in body):  # class names: numbered in sorted order
            class_names = sorted({r[col].strip() for r in body})
            ids = {n: str(i) for i, n in enumerate(class_names)}
            body = [[*r[:col], ids[r[col].strip()], *r[col + 1:]] for r in body]
        try:
            table = np.array([[float(c) for c in r] for r in body], dtype=np.float64)
        except ValueError:
            where = next((i + (2 if header else 1), j) for i, r in enumerate(body) for j, c in enumerate(r) if not number(c))
            raise DataError(f"{p}: row {where[0]}, column {where[1]} is not a number ({body[where[0] - (2 if header else 1)][where[1]]!r}); "
                            "a CSV source holds numbers only (encode categories as numbers first)") from None
        if len(table) == 0:
            raise DataError(f"{p}: the file has a header but no rows")
        y = None
        if col is not None:
            y = table[:, col]
            if not np.all(y == np.round(y)):
                raise DataError(f"{p}: the label column {label_column!r} must hold integer classes")
            y = y.astype(np.int64)
            table = np.delete(table, col, axis=1)
        full = ImageSet(torch.from_numpy(table.astype(np.float32)), None if y is None else _labels(y, len(y), p), p.stem,
                        class_names)
        if split == "all":
            return full
        train, test = full.split(0.1, seed=0)
        return train if split == "train" else ImageSet(test.images, test.labels, full.name, full.class_names)


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

    def load(self, split: str, path: str | None = None) -> ImageSet:
        if not path:
            raise DataError("the mvtec source needs a path: --set data.path=/path/to/mvtec/<category>")
        root = Path(path).expanduser()
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


MVTEC = MvtecSource("mvtec", "a category of MVTec AD, or any folder in its layout (train/good, test/<defect>, ground_truth)",
                    (), "download MVTec AD and set data.path to one category's folder", needs_path=True)

CSV = CsvSource("csv", "a CSV file of numbers, one example per row (tabular data; data.label_column optional)", (),
                "set data.path to the .csv file", needs_path=True)

NPZ = NpzSource("npz", "arrays you saved with numpy.savez (x_train, y_train, x_test, y_test)", (), "set data.path to the .npz file", needs_path=True)

SOURCES: dict[str, Source] = {s.name: s for s in (MNIST, FASHION_MNIST, CIFAR10, CELEBA64, DIGITS, FOLDER, NPZ, CSV, MVTEC)}


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(SOURCES)}")
    return SOURCES[name]
