"""The progress of a long step (a sampler's fit, a detector's calibration, an NLL or FID pass, a
t-SNE): one line on the 'vaelab' logger every few seconds, with its count, so that a slow step is
never mistaken for a hung one. Steps that finish within the first interval print nothing.

``vaelab --quiet`` (or ``set_quiet(True)``) silences these lines and the training bar alike; the
command line sends the 'vaelab' logger to stderr, and a notebook sees the lines through logging."""
from __future__ import annotations

import logging
import time
from typing import Iterable, Iterator, TypeVar

log = logging.getLogger("vaelab")
T = TypeVar("T")
_quiet = False
EVERY_S = 5.0  # seconds between two lines of one step


def set_quiet(on: bool = True) -> None:
    """Silence (or restore) every progress line and the training progress bar."""
    global _quiet
    _quiet = bool(on)


def is_quiet() -> bool:
    return _quiet


class Progress:
    """``with Progress("fitting the gmm sampler", total=n, unit="codes") as p: ... p.update(k)``.

    A line is logged when ``every`` seconds have passed since the last one (the first after ``every``
    seconds), and a closing line with the elapsed time when any line was logged."""

    def __init__(self, what: str, total: int | None = None, unit: str = "", every: float | None = None) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.every = EVERY_S if every is None else every
        self.done = 0
        self.lines = 0
        self._t0 = self._last = time.monotonic()

    def _count(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            return f"{self.done}/{self.total}{unit} ({100 * self.done / self.total:.0f}%)"
        return f"{self.done}{unit}"

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every and not _quiet:
            self._last = now
            self.lines += 1
            log.info("%s: %s, %.0f s", self.what, self._count(), now - self._t0)

    def close(self) -> None:
        if self.lines and not _quiet:
            log.info("%s: done, %s in %.1f s", self.what, self._count(), time.monotonic() - self._t0)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()


def track(items: Iterable[T], what: str, total: int | None = None, unit: str = "", every: float | None = None) -> Iterator[T]:
    """Iterate ``items`` with a Progress line every few seconds (``total`` from ``len`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(what, total, unit, every) as p:
        for item in items:
            yield item
            p.update()


__all__ = ["EVERY_S", "Progress", "is_quiet", "set_quiet", "track"]
