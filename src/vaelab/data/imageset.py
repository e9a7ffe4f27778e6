"""The in-memory image set every stage consumes: uint8 N x C x H x W plus optional labels."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import DataError


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """What a model takes: uint8 pixels as floats in [0, 1] (x / 255), float data (vectors, images
    already in [0, 1]) as float32. Every stage turns stored data into model input with this."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


UNKNOWN_LABEL = -1  # the label of an image whose class is not known (semi-supervised training sets)


def resolve_classes(classes: Sequence[int | str], class_names: Sequence[str], where: str = "the data",
                    what: str = "class") -> list[int]:
    """Class numbers from numbers, digit strings or names of ``class_names`` (their index): the one
    place where `--anomaly-classes`, `--classes` and `data.classes` turn names into numbers."""
    names = [str(n) for n in class_names]
    out = []
    for c in classes:
        if isinstance(c, bool):
            raise DataError(f"{what}: {c!r} is not a class; give class numbers or names")
        if isinstance(c, int):
            out.append(c)
            continue
        text = str(c).strip()
        if text.lstrip("-").isdigit():
            out.append(int(text))
        elif text in names:
            out.append(names.index(text))
        else:
            known = ", ".join(repr(n) for n in names) if names else "none (its labels are numbers only)"
            raise DataError(f"{what}: {where} has no class named {text!r}; its class names are {known}")
    return out


@dataclass
class ImageSet:
    """Images as a uint8 tensor (N, C, H, W), or vectors as a float32 tensor (N, D) (tabular
    data), and optional int64 labels (N,): class numbers 0, 1, ..., or UNKNOWN_LABEL (-1) for an
    image whose class is not known (a partly labelled training set for a semi-supervised model;
    ``labelled()`` is the part with known labels)."""

    images: torch.Tensor
    labels: torch.Tensor | None = None
    name: str = "images"
    class_names: list[str] = field(default_factory=list)
    factors: torch.Tensor | None = None  # (N, K) discrete ground-truth factors, when known
    files: list[str] | None = None  # each image's file, relative to its folder (a folder source)
    notes: list[str] = field(default_factory=list)  # what the loader did (files skipped, images converted)
    masks: torch.Tensor | None = None  # (N, H, W) bool: each image's defect pixels, when known (pixel-level evaluation)

    def __post_init__(self) -> None:
        x = self.images
        if not isinstance(x, torch.Tensor):
            raise DataError(f"{self.name}: images must be a torch tensor, got {type(x).__name__}")
        if x.ndim == 2:  # vectors: N x D numbers (tabular data), float32
            if not x.is_floating_point():
                self.images = x = x.float()
            elif x.dtype != torch.float32:
                self.images = x = x.float()
            if x.shape[1] < 1:
                raise DataError(f"{self.name}: vectors must have at least one column, got shape {tuple(x.shape)}")
            if not torch.isfinite(x).all():
                bad = int((~torch.isfinite(x)).any(1).sum())
                raise DataError(f"{self.name}: {bad} rows hold NaN or infinite values; drop or impute them before loading")
            self._check_labels_and_extras(x)
            return
        if x.dtype != torch.uint8:
            raise DataError(
                f"{self.name}: images must be uint8 in [0, 255], got {x.dtype}; "
                "convert with (x * 255).round().clamp(0, 255).to(torch.uint8) or use ImageSet.from_float"
            )
        if x.ndim != 4:
            raise DataError(f"{self.name}: images must have shape (N, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] not in (1, 3):
            raise DataError(f"{self.name}: expected 1 or 3 channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        self._check_labels_and_extras(x)

    def _check_labels_and_extras(self, x: torch.Tensor) -> None:
        if self.labels is not None:
            if self.labels.ndim != 1 or len(self.labels) != len(x):
                raise DataError(
                    f"{self.name}: {len(x)} images but labels of shape {tuple(self.labels.shape)}; "
                    "give one integer label per image"
                )
            self.labels = self.labels.long()
            if len(self.labels) and int(self.labels.min()) < UNKNOWN_LABEL:
                raise DataError(f"{self.name}: labels must be class numbers 0, 1, 2, ... or {UNKNOWN_LABEL} for an unknown "
                                f"label; found {int(self.labels.min())}")
        if self.files is not None and len(self.files) != len(x):
            raise DataError(f"{self.name}: {len(x)} images but {len(self.files)} file names")
        if self.masks is not None:
            self.masks = torch.as_tensor(self.masks).bool()
            if x.ndim != 4 or tuple(self.masks.shape) != (len(x), *x.shape[2:]):
                raise DataError(f"{self.name}: masks must have shape (N, H, W) = ({len(x)}, {', '.join(map(str, x.shape[2:]))}), "
                                f"got {tuple(self.masks.shape)}")
        if self.factors is not None and (self.factors.ndim != 2 or len(self.factors) != len(x)):
            raise DataError(f"{self.name}: factors must have shape (N, K) with N = {len(x)}, got {tuple(self.factors.shape)}")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_float(cls, x: torch.Tensor, labels: torch.Tensor | None = None, name: str = "images") -> "ImageSet":
        """Build from floats in [0, 1]; refuses NaN/inf and out-of-range values."""
        x = torch.as_tensor(x)
        if not torch.isfinite(x).all():
            raise DataError(f"{name}: images contain NaN or infinite values; clean them before loading")
        if x.min() < 0 or x.max() > 1:
            raise DataError(
                f"{name}: float images must lie in [0, 1] (found [{float(x.min()):.3g}, {float(x.max()):.3g}]); "
                "rescale them or pass uint8 images"
            )
        return cls((x * 255).round().to(torch.uint8), labels, name)

    # -- views ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image, or (D,) of one vector."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def is_vector(self) -> bool:
        """True for N x D vectors (tabular data), False for images."""
        return self.images.ndim == 2

    def float(self) -> torch.Tensor:
        return to_unit_float(self.images)

    def subset(self, index: torch.Tensor | Sequence[int], name: str | None = None) -> "ImageSet":
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(
            self.images[index],
            None if self.labels is None else self.labels[index],
            name or self.name,
            list(self.class_names),
            None if self.factors is None else self.factors[index],
            None if self.files is None else [self.files[i] for i in index.tolist()],
            list(self.notes),
            None if self.masks is None else self.masks[index],
        )

    @property
    def has_unknown_labels(self) -> bool:
        return self.labels is not None and bool((self.labels == UNKNOWN_LABEL).any())

    def labelled(self) -> "ImageSet":
        """The images whose label is known (itself when every label is; labels None stay None)."""
        if not self.has_unknown_labels:
            return self
        return self.subset((self.labels != UNKNOWN_LABEL).nonzero().squeeze(1))

    def class_ids(self, classes: Sequence[int | str], what: str = "class") -> list[int]:
        """The class numbers of ``classes``: numbers (or digit strings) as they are, names looked up in
        ``class_names`` (a CSV label column of names, fashion-mnist's 'Sneaker'); an unknown name is
        refused with the known ones."""
        return resolve_classes(classes, self.class_names, f"{self.name}", what)

    def select_classes(self, keep: Sequence[int | str] | None = None, drop: Sequence[int | str] | None = None) -> "ImageSet":
        """Keep only the listed classes and/or drop others (one-class work); numbers or class names."""
        if keep is None and drop is None:
            return self
        if self.labels is None:
            raise DataError(f"{self.name}: a class filter needs labels, and this set has none")
        keep = None if keep is None else self.class_ids(keep, "data.classes")
        drop = None if drop is None else self.class_ids(drop, "data.drop_classes")
        mask = torch.ones(len(self), dtype=torch.bool)
        if keep is not None:
            mask &= torch.isin(self.labels, torch.as_tensor(list(keep)))
        if drop is not None:
            mask &= ~torch.isin(self.labels, torch.as_tensor(list(drop)))
        if not mask.any():
            present = sorted(set(self.labels.tolist()))
            raise DataError(
                f"{self.name}: the class filter (keep={keep}, drop={drop}) selects no image; "
                f"classes present: {present}"
            )
        return self.subset(mask.nonzero().squeeze(1))

    def limit(self, n: int | None, seed: int = 0) -> "ImageSet":
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise DataError(f"{self.name}: size limit must be positive, got {n}")
        g = torch.Generator().manual_seed(seed)
        return self.subset(torch.randperm(len(self), generator=g)[:n].sort().values)

    def split(self, fraction: float, seed: int = 0) -> tuple["ImageSet", "ImageSet"]:
        """Deterministically split off ``fraction`` of the images: returns (rest, held_out)."""
        if not 0 <= fraction < 1:
            raise DataError(f"split fraction must be in [0, 1), got {fraction}")
        n_out = int(round(len(self) * fraction))
        if fraction > 0 and n_out == 0 and len(self) > 1:
            n_out = 1
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(self), generator=g)
        return (
            self.subset(perm[n_out:].sort().values, self.name),
            self.subset(perm[:n_out].sort().values, self.name + "-val"),
        )

    # -- transforms ------------------------------------------------------------------------------
    def to_channels(self, channels: int | None) -> "ImageSet":
        if channels is None:
            return self
        if self.is_vector:
            raise DataError(f"{self.name}: data.channels is for images; this set holds vectors of {self.shape[0]} numbers")
        if channels == self.shape[0]:
            return self
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
        if channels == 3:
            x = self.images.expand(-1, 3, -1, -1).contiguous()
        else:  # ITU-R 601 luma, as PIL's convert("L")
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (self.images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        return ImageSet(x, self.labels, self.name, self.class_names, self.factors, self.files, self.notes, self.masks)

    def to_size(self, size: int | None, mode: str = "pad") -> "ImageSet":
        """Make images size x size: 'pad' centres them on black (28 -> 32), 'resize' resamples."""
        if size is None:
            return self
        if self.is_vector:
            raise DataError(f"{self.name}: data.size is for images; this set holds vectors of {self.shape[0]} numbers")
        if self.shape[1] == size and self.shape[2] == size:
            return self
        _, h, w = self.shape
        if mode == "pad":
            if size < h or size < w:
                raise DataError(f"cannot pad {h}x{w} images to the smaller {size}x{size}; use resize mode 'resize'")
            top, left = (size - h) // 2, (size - w) // 2
            x = F.pad(self.images, (left, size - w - left, top, size - h - top))
        elif mode == "resize":
            x = F.interpolate(self.images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            x = x.round().clamp(0, 255).to(torch.uint8)
        else:
            raise DataError(f"unknown resize mode {mode!r}; use 'pad' or 'resize'")
        masks = None
        if self.masks is not None:  # the defect pixels follow the image: padded with False, or resampled nearest
            m = self.masks[:, None].float()
            m = F.pad(m, (left, size - w - left, top, size - h - top)) if mode == "pad" else F.interpolate(m, size=(size, size), mode="nearest")
            masks = m[:, 0] > 0.5
        return ImageSet(x, self.labels, self.name, self.class_names, self.factors, self.files, self.notes, masks)
