"""Benchmark protocols a user runs on their own models: one-class anomaly detection."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..detect import DEFAULT_SCORE, one_class_protocol


def one_class_run(data: str, model: str = "vae", epochs: int = 20, seeds: int | list[int] = 1,
                  classes: list[int | str] | None = None, score: str | None = None, overrides: dict[str, Any] | None = None,
                  out: str | Path | None = None, keep_checkpoints: bool = False, jobs: int = 1) -> tuple[Path, dict[str, Any]]:
    """Train ``model`` on each normal class of ``data`` (each seed), score the whole test set, and write
    ``out``/one_class.json (default runs/one-class-DATA-MODEL-TIME; rerun into it to resume)."""

    out = Path(out) if out else Path("runs") / f"one-class-{data}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = one_class_protocol(data, model, epochs, seeds, classes, score or DEFAULT_SCORE, overrides or {}, out,
                                keep_checkpoints=keep_checkpoints, jobs=jobs)
    return out, result
