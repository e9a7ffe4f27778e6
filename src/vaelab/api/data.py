"""Data layouts built from the named sources: the OOD study's file and a defect set with exact masks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.defects import build_defect_set
from ..detect import build_ood_study
from ..errors import ConfigError


def build_ood_study_file(out: str | Path, classes: list[int | str], seed: int = 0, n_labeled: int = 1000,
                         n_normal: int = 1000, anomaly_fraction: float = 0.05, data: str = "mnist") -> dict[str, Any]:
    """Write the OOD study's layout (see vaelab.detect.build_ood_study) to ``out``; returns the sizes."""

    if not classes:
        raise ConfigError("classes: give the in-distribution classes, such as 0,1,2,3,4 (numbers or names)")
    return build_ood_study(out, seed, classes, n_labeled, n_normal, anomaly_fraction, dataset=data)


def build_defects_file(out: str | Path, data: str = "fashion-mnist", kind: str = "noise", fraction: float = 0.5,
                       seed: int = 0, test_limit: int | None = None, path: str | None = None) -> dict[str, Any]:
    """Write ``data``'s test images with synthetic defects and their exact masks to ``out`` (see
    vaelab.data.defects.build_defect_set); returns the sizes."""

    return build_defect_set(out, data, kind, fraction, seed, test_limit=test_limit, path=path)
