"""The OOD study's data layout, built from MNIST (or Fashion-MNIST, or CIFAR-10), its loader, and
the sets `vaelab detect` scores.

The layout (one .npz, images uint8 N x 32 x 32, the 28 x 28 images padded with 2 black pixels; from
CIFAR-10 N x 32 x 32 x 3):

| key                        | what                                                                    |
|----------------------------|-------------------------------------------------------------------------|
| `x_train`                  | unlabeled in-distribution training images (no `y_train`)                |
| `x_labeled`, `y_labeled`   | a labeled in-distribution set, labels 0..K-1 (the index in `classes`)   |
| `x_test`, `y_test`         | representative set 1: ~95% in-distribution (labels 0..K-1) and ~5%     |
|                            | anomalies from the other digits, labelled K (`anomaly_label`)           |
| `x_rep2`, `y_rep2`         | representative set 2, drawn the same way, disjoint from set 1           |
| `classes`                  | the K in-distribution classes (default 0..4, so K = 5)                  |
| `anomaly_label`            | K, the label of the anomalies (1 element)                               |
| `index_train`, `index_labeled` | the images' indices in the source's training split (provenance)     |
| `index_test`, `index_rep2` | the images' indices in the source's test split                          |
| `seed`                     | the seed that drew the sets (1 element)                                 |
| `source`                   | the dataset the images come from (`mnist` by default)                   |

The study itself is built from MNIST. The same layout from Fashion-MNIST (`dataset="fashion-mnist"`,
`vaelab data build-ood-study --data fashion-mnist`) is a task of the same shape on other images
(benchmarks/detect_scores.py --validate); from CIFAR-10 (`--data cifar10`) a colour one
(benchmarks/detect_tasks.py).

Representative set 1 is stored as `x_test`/`y_test`, so the generic `npz` source trains on
`x_train` and tests on it: `vaelab train vae --data npz --set data.path=study.npz`. A file of
your own in this layout works too: `x_train`, `x_test`, `y_test` and `anomaly_label` are needed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data import SOURCES, DataConfig, ImageSet, load_split, resolve_classes, source_for_path
from ..data.parsers import images_to_tensor, load_npz
from ..errors import ConfigError, DataError
from ..fileio import atomic_path

STUDY_SIZES = ((28, 28), (32, 32))  # the layout's 32 x 32 images: padded from 28 x 28, or as they are
STUDY_SETS = {"rep1": ("x_test", "y_test"), "rep2": ("x_rep2", "y_rep2"), "labeled": ("x_labeled", "y_labeled"),
              "train": ("x_train", None)}


def study_sources() -> list[str]:
    """The sources the layout is built from, as each declares itself: labelled, 10 classes, images of
    28 x 28 or 32 x 32 pixels (the smallest first)."""
    fits = [n for n, s in SOURCES.items()
            if s.labelled and len(s.class_names) == 10 and s.shape is not None and tuple(s.shape[-2:]) in STUDY_SIZES]
    return sorted(fits, key=lambda n: math.prod(SOURCES[n].shape))


def _anomaly_count(n_normal: int, fraction: float) -> int:
    """Anomalies to add to ``n_normal`` normal images so that they make ``fraction`` of the set."""
    return int(n_normal * fraction / (1.0 - fraction))


def build_ood_study(out: str | Path, seed: int = 0, classes: Sequence[int | str] = (0, 1, 2, 3, 4), n_labeled: int = 1000,
                    n_normal: int = 1000, anomaly_fraction: float = 0.05,
                    mnist: tuple[ImageSet, ImageSet] | None = None, dataset: str = "mnist") -> dict[str, int]:
    """Write the study layout built from ``dataset`` (MNIST by default; any labelled source with 10
    classes: also fashion-mnist, and cifar10 in colour) to ``out`` (.npz) and return the set sizes.
    Grayscale images are written N x 32 x 32 (padded from 28 x 28), colour ones N x 32 x 32 x 3.

    In-distribution: the classes ``classes``. From the training split, ``n_labeled`` images
    (equal numbers per class) form the labeled set and all the other in-distribution images the
    unlabeled training set. From the test split, each representative set takes ``n_normal``
    in-distribution images and ``int(n_normal * f / (1 - f))`` anomalies (f = anomaly_fraction;
    52 for 1000 and 5%: 1,052 images), shuffled. ``mnist``: (train, test) ImageSets of ``dataset``,
    else loaded."""
    classes = resolve_classes(classes, getattr(SOURCES.get(dataset), "class_names", []), dataset, "classes")
    if len(set(classes)) != len(classes) or not classes or not all(0 <= c <= 9 for c in classes) or len(classes) > 9:
        raise ConfigError(f"classes must be 1 to 9 distinct digits 0..9 (the rest are the anomalies), got {classes}")
    if not 0 < anomaly_fraction < 0.5:
        raise ConfigError(f"anomaly_fraction must be in (0, 0.5), got {anomaly_fraction}")
    if n_labeled < 0 or n_labeled % len(classes):
        raise ConfigError(f"n_labeled must be a non-negative multiple of the {len(classes)} classes, got {n_labeled}")
    ten_class = study_sources()
    if dataset not in ten_class:
        raise ConfigError(f"the OOD study layout is built from a labelled 10-class dataset: one of {', '.join(ten_class)}; "
                          f"got {dataset!r}")
    if mnist is None:
        src = SOURCES[dataset]
        mnist = (src.load("train"), src.load("test"))
    train, test = mnist
    if train.labels is None or test.labels is None:
        raise DataError(f"the OOD study is built from labelled {dataset}; the given sets have no labels")
    rng = np.random.default_rng(seed)
    cls = torch.as_tensor(classes)
    label_of = np.full(10, len(classes), dtype=np.int64)  # digit -> its label: index in classes, or the anomaly label
    label_of[classes] = np.arange(len(classes))

    # training split: a stratified labeled set, the rest unlabeled
    labeled_idx = []
    per_class = n_labeled // len(classes)
    for c in classes:
        idx = np.flatnonzero(train.labels.numpy() == c)
        if len(idx) < per_class:
            raise DataError(f"{dataset}'s training split has {len(idx)} images of class {c}, fewer than the {per_class} asked")
        labeled_idx.append(rng.choice(idx, per_class, replace=False))
    labeled_idx = np.sort(np.concatenate(labeled_idx)) if labeled_idx else np.zeros(0, np.int64)
    in_train = np.flatnonzero(torch.isin(train.labels, cls).numpy())
    unlabeled_idx = np.setdiff1d(in_train, labeled_idx)

    # test split: two disjoint representative sets
    normal_pool = rng.permutation(np.flatnonzero(torch.isin(test.labels, cls).numpy()))
    anomaly_pool = rng.permutation(np.flatnonzero(~torch.isin(test.labels, cls).numpy()))
    n_anom = _anomaly_count(n_normal, anomaly_fraction)
    if len(normal_pool) < 2 * n_normal or len(anomaly_pool) < 2 * n_anom:
        raise DataError(f"{dataset}'s test split has {len(normal_pool)} in-distribution and {len(anomaly_pool)} other images; "
                        f"two representative sets need {2 * n_normal} and {2 * n_anom}. Ask for a smaller n_normal")
    reps = []
    for r in range(2):
        idx = np.concatenate([normal_pool[r * n_normal : (r + 1) * n_normal], anomaly_pool[r * n_anom : (r + 1) * n_anom]])
        reps.append(rng.permutation(idx))

    def images(s: ImageSet, idx: np.ndarray) -> np.ndarray:
        x = s.subset(torch.as_tensor(idx, dtype=torch.long)).to_size(32, "pad").images
        return x[:, 0].numpy() if x.shape[1] == 1 else x.permute(0, 2, 3, 1).contiguous().numpy()

    def labels(s: ImageSet, idx: np.ndarray) -> np.ndarray:
        return label_of[s.labels[torch.as_tensor(idx, dtype=torch.long)].numpy()]

    arrays = {
        "x_train": images(train, unlabeled_idx), "index_train": unlabeled_idx.astype(np.int64),
        "x_labeled": images(train, labeled_idx), "y_labeled": labels(train, labeled_idx),
        "index_labeled": labeled_idx.astype(np.int64),
        "x_test": images(test, reps[0]), "y_test": labels(test, reps[0]), "index_test": reps[0].astype(np.int64),
        "x_rep2": images(test, reps[1]), "y_rep2": labels(test, reps[1]), "index_rep2": reps[1].astype(np.int64),
        "classes": np.asarray(classes, dtype=np.int64), "anomaly_label": np.asarray([len(classes)], dtype=np.int64),
        "seed": np.asarray([seed], dtype=np.int64), "source": np.asarray(dataset),
    }
    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return {"train": len(unlabeled_idx), "labeled": len(labeled_idx), "rep1": len(reps[0]), "rep2": len(reps[1]),
            "anomalies_per_rep": n_anom}


@dataclass
class OODStudy:
    """The study's sets as ImageSets (labels: 0..K-1 in-distribution, ``anomaly_label`` anomalies)."""

    train: ImageSet
    rep1: ImageSet
    anomaly_label: int
    labeled: ImageSet | None = None
    rep2: ImageSet | None = None

    def get(self, name: str) -> ImageSet:
        if name not in STUDY_SETS:
            raise ConfigError(f"unknown set {name!r} of the OOD study; choose one of: {', '.join(STUDY_SETS)}")
        s = getattr(self, name)
        if s is None:
            raise DataError(f"this OOD study file has no {name} set ({STUDY_SETS[name][0]})")
        return s

    def anomalies(self, name: str) -> np.ndarray | None:
        """1 for an anomaly of set ``name``, 0 otherwise; None when the set has no labels."""
        s = self.get(name)
        return None if s.labels is None else (s.labels == self.anomaly_label).numpy().astype(np.int64)


def is_study_file(path: str | Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return "anomaly_label.npy" in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def load_ood_study(path: str | Path) -> OODStudy:
    """Read a file in the study layout (see the module docstring); checks keys, shapes and labels."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"OOD study file {path} does not exist; build one with `vaelab data build-ood-study --out {path}`")
    z = load_npz(path, ("x_train", "x_test", "y_test"))
    if "anomaly_label" in z:
        a = np.asarray(z["anomaly_label"]).reshape(-1)
        if a.size != 1 or a.dtype.kind not in "iu":
            raise DataError(f"{path}: anomaly_label must be one integer, got {a.dtype} of shape {np.shape(z['anomaly_label'])}")
        anomaly_label = int(a[0])
    elif "classes" in z:
        anomaly_label = len(z["classes"])
    else:
        raise DataError(f"{path}: no anomaly_label array; save the label that marks anomalies in y_test, e.g. "
                        "numpy.savez(..., anomaly_label=[5])")

    def make(xk: str, yk: str | None) -> ImageSet | None:
        if xk not in z:
            return None
        x = z[xk]
        if x.dtype.kind == "f":
            if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
                raise DataError(f"{path}: float images {xk} must be finite and in [0, 1]")
            x = np.round(x.astype(np.float64) * 255).astype(np.uint8)
        y = None
        if yk is not None:
            if yk not in z:
                raise DataError(f"{path}: {xk} has no labels {yk}; the layout needs them")
            y = z[yk]
            if y.dtype.kind not in "iu" or y.shape != (len(x),):
                raise DataError(f"{path}: {yk} must be {len(x)} integer labels, got {y.dtype} {y.shape}")
            y = torch.from_numpy(y.astype(np.int64))
        return ImageSet(images_to_tensor(x, f"{path}:{xk}"), y, f"{path.stem}-{xk[2:]}")

    sets = {name: make(xk, yk) for name, (xk, yk) in STUDY_SETS.items()}
    shapes = {n: s.shape for n, s in sets.items() if s is not None}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{path}: the sets have different image shapes {shapes}; give every set the same size")
    return OODStudy(sets["train"], sets["rep1"], anomaly_label, sets["labeled"], sets["rep2"])


def load_detection_set(data: str, like: DataConfig, split: str | None = None,
                       anomaly_classes: Sequence[int | str] | None = None) -> tuple[ImageSet, np.ndarray | None, str]:
    """The set `vaelab detect` scores, shaped like the run's data (``like``: size, channels), its
    anomaly labels when they are known, and a description.

    ``data``: a file in the OOD-study layout (``split``: rep1 (default), rep2, labeled, train;
    anomalies = its anomaly label), another .npz or a folder of images (``split`` test by
    default), or a source name (mnist, fashion-mnist, ...). Anomaly labels: ``anomaly_classes``
    (class numbers or names) when given; else, for the run's own source with a class filter (data.classes / drop_classes),
    every image outside the kept classes."""
    if data in SOURCES and data == like.name and like.path and not Path(data).exists():
        data = like.path  # the run's own npz / folder
    path = Path(data).expanduser()
    study = None
    if data in SOURCES and "/" not in data:
        cfg = DataConfig(name=data)
    elif path.is_file() and is_study_file(path):
        study = load_ood_study(path)
        name = split or "rep1"
        s = study.get(name)
        desc = f"{path} ({name})"
    else:
        src = source_for_path(path)  # the source that reads this file or folder (csv, npz, mvtec, folder, ...)
        if src is None:
            raise DataError(f"{data!r} is neither a file, a folder nor a dataset name; choose one of: {', '.join(SOURCES)}")
        if not path.exists():
            raise DataError(f"{path} does not exist; give an .npz file, a folder of images or a dataset name "
                            f"({', '.join(SOURCES)})")
        # the data.* keys the source reads (a CSV's label column) as the run has them
        cfg = DataConfig(name=src.name, path=str(path), **{k: getattr(like, k) for k in src.config_keys})
    if study is None:
        # a folder of images without train/ and test/ sub-folders, a CSV file and an npz of one array x
        # are scored whole (every file, row or example); a source with its own train / test splits, its test split
        whole = cfg.path is not None and SOURCES[cfg.name].scored_whole(path)
        split = split or ("all" if whole else "test")
        allowed = ("all", "train", "test") if whole else ("train", "test")
        if split not in allowed:
            raise ConfigError(f"--split for {'this file or folder' if whole else 'a dataset'} is {' or '.join(allowed)}, got "
                              f"{split!r} (rep1, rep2, labeled are OOD-study sets)")
        cfg.size, cfg.channels, cfg.resize_mode = like.size, like.channels, like.resize_mode
        cfg.center, cfg.scale = like.center, like.scale  # vectors: standardised as the run's training data
        s = load_split(cfg, split, apply_class_filter=False)
        desc = f"{data} ({'every image' if split == 'all' else split})"
    else:
        s = s.to_channels(like.channels).to_size(like.size, like.resize_mode)
    y = None
    if anomaly_classes is not None:
        if s.labels is None:
            raise DataError(f"{desc} has no labels, so anomaly classes {list(anomaly_classes)} cannot be marked")
        y = torch.isin(s.labels, torch.as_tensor(s.class_ids(anomaly_classes, "--anomaly-classes"))).numpy().astype(np.int64)
    elif study is not None:
        y = study.anomalies(split or "rep1")
    elif s.masks is not None and s.labels is not None:  # a defect set (build-defects, MVTec AD): 1 = defect
        y = s.labels.numpy().astype(np.int64)
    elif s.labels is not None and cfg.name == like.name and (like.classes is not None or like.drop_classes is not None):
        keep = torch.ones(len(s), dtype=torch.bool)
        if like.classes is not None:
            keep &= torch.isin(s.labels, torch.as_tensor(s.class_ids(like.classes, "the run's data.classes")))
        if like.drop_classes is not None:
            keep &= ~torch.isin(s.labels, torch.as_tensor(s.class_ids(like.drop_classes, "the run's data.drop_classes")))
        y = (~keep).numpy().astype(np.int64)
    return s, y, desc
