"""Fitted samplers kept in their run directory, so that the next ``vaelab sample RUN --sampler X`` (or the
FID of X's samples) draws at once instead of fitting X again (a code-prior is 2,000 Adam steps).

``RUN/samplers/KEY/`` holds ``sampler.json`` (the format, the sampler's name and options, its JSON
values) and ``sampler.safetensors`` (its learned tensors), as the sampler's ``fitted_state`` gives
them. KEY is a digest of the sampler's name, its options (``get_params``, the seed included) and
the run's ``model.safetensors`` byte for byte: other weights (a resumed run) or another option make
another key, and an entry is never updated in place. A run directory may come from someone else:
what is kept there is read as data only (JSON and raw tensors, bounded in size, never through a
symlink), must name the same sampler and options as its key, and whatever does not load is fitted
again."""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..data import ImageSet
from ..errors import CheckpointError, VaelabError
from ..fileio import atomic_write_text
from ..models import Autoencoder
from ..progress import is_quiet
from ..runfiles import digest, inside, keep, kept, read_bytes
from .samplers import PriorSampler, make_sampler

log = logging.getLogger("vaelab")

FORMAT, VERSION = "vaelab-sampler", 1
AREA = "samplers"  # RUN/samplers/KEY
MAX_JSON_BYTES = 1 << 20
MAX_STATE_BYTES = 2 << 30

_RUN: contextvars.ContextVar[Path | None] = contextvars.ContextVar("vaelab_sampler_run", default=None)


@contextlib.contextmanager
def kept_in(run_dir: str | Path) -> Iterator[None]:
    """Within this block ``fit_sampler`` without a ``run_dir`` keeps and reuses its fits in ``run_dir``;
    the models it is given there must be that run's (a job that loaded the run says so, e.g. evaluate)."""
    token = _RUN.set(Path(run_dir))
    try:
        yield
    finally:
        _RUN.reset(token)


def _options(sampler: PriorSampler) -> dict[str, Any]:
    return json.loads(json.dumps(sampler.get_params(), sort_keys=True, allow_nan=False))


def sampler_key(sampler: PriorSampler, run_dir: str | Path) -> str:
    """The digest of the sampler's name and options and the run's weights file (the name of its kept fit)."""
    h = hashlib.sha256(json.dumps({"format": FORMAT, "version": VERSION, "sampler": sampler.name,
                                   "options": _options(sampler)}, sort_keys=True).encode())
    h.update(digest(inside(run_dir, "model.safetensors")).encode())
    return h.hexdigest()[:24]


def fit_sampler(name: str, model: Autoencoder, train: ImageSet | Callable[[], ImageSet] | None = None,
                run_dir: str | Path | None = None, **options: Any) -> PriorSampler:
    """``make_sampler(name, **options).fit(model, train)``, kept in ``run_dir`` (default: the one of an
    enclosing ``kept_in``) when the sampler keeps a fitted state, and loaded from there on the next call
    instead of fitted. ``model`` is the run's trained model; ``train`` its training images, or a function
    that loads them (called only when a fit is needed)."""
    sampler = make_sampler(name, **options)
    run_dir = _RUN.get() if run_dir is None else Path(run_dir)
    images = (lambda: train() if callable(train) else train) if sampler.needs_train else (lambda: None)
    if run_dir is None or not sampler.needs_train:
        return sampler.fit(model, images())
    try:
        key = sampler_key(sampler, run_dir)
    except (OSError, CheckpointError) as e:  # no weights file to key it by (or a symlinked one): nothing is kept
        log.info("the %s sampler is fitted without keeping it (%s)", name, e)
        return sampler.fit(model, images())
    folder = kept(run_dir, AREA, key)
    if folder is not None and _load(sampler, model, run_dir, key):
        log.info("reusing the %s sampler fitted earlier (%s)", name, folder)
        return sampler
    if not is_quiet():
        log.info("fitting the %s sampler to the training codes (kept in %s for the next call)", name, Path(run_dir) / AREA / key)
    sampler.fit(model, images())
    state = sampler.fitted_state()
    if state is not None:
        keep(run_dir, AREA, key, lambda path: _write(path, sampler, *state))
    return sampler


def _write(folder: Path, sampler: PriorSampler, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    doc = {"format": FORMAT, "version": VERSION, "sampler": sampler.name, "options": _options(sampler), "values": values}
    text = json.dumps(doc, sort_keys=True, indent=1, allow_nan=False)  # a value JSON cannot hold: nothing is kept
    folder.mkdir()
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}, str(folder / "sampler.safetensors"))
    atomic_write_text(folder / "sampler.json", text + "\n")


def _load(sampler: PriorSampler, model: Autoencoder, run_dir: Path, key: str) -> bool:
    """Put the fit kept under RUN/samplers/KEY into ``sampler``; False (and a note) when it does not load."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    where = Path(run_dir) / AREA / key
    try:
        doc = json.loads(read_bytes(inside(run_dir, AREA, key, "sampler.json"), MAX_JSON_BYTES).decode("utf-8"),
                         parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not a number JSON allows")))
        if not isinstance(doc, dict) or (doc.get("format"), doc.get("version"), doc.get("sampler"), doc.get("options")) != (
                FORMAT, VERSION, sampler.name, _options(sampler)):
            raise CheckpointError("it was kept for another sampler, other options or another format")
        values = doc.get("values")
        tensors = load(read_bytes(inside(run_dir, AREA, key, "sampler.safetensors"), MAX_STATE_BYTES))
        sampler.load_fitted(model, tensors, values if isinstance(values, dict) else {})
    except (VaelabError, OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        log.info("the %s sampler kept in %s does not load (%s); fitting it again (remove that folder to keep the new fit)",
                 sampler.name, where, e)
        return False
    return True


__all__ = ["fit_sampler", "kept_in", "sampler_key"]
