"""The generation jobs: samples, interpolations, traversals and reconstructions of a trained run as image files."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..data import load_run_data, load_split
from ..errors import ConfigError, ModelError
from ..fileio import atomic_path, atomic_write_text
from ..generate import fit_sampler, interpolate, latent_traversal
from ..models import Autoencoder
from ..plotting import image_format, interleave_rows, save_grid
from ..train import RunConfig, load_run

log = logging.getLogger("vaelab")


def sample_run(run_dir: str | Path, n: int, out: str | Path, seed: int = 0, sampler: str = "prior",
               label: int | None = None, run_data: str | Path | None = None) -> Path:
    """``n`` new images from the sampler named ``sampler`` (vaelab.generate.SAMPLERS): the model's
    prior, or a density fitted to the training codes (which are then loaded), kept in the run
    directory (RUN/samplers/KEY) and reused by the next call with the same options and weights
    (vaelab.generate.cache). ``label``: the class
    a conditional model (cvae) draws (``vaelab sample --class K``). A run of vectors
    writes its samples to a .csv or .npz file instead, in the data's own units (the run's
    standardisation undone)."""
    _positive("-n (images to draw)", n)
    run_dir = Path(run_dir)
    cfg = RunConfig.load(run_dir / "config.yaml")
    vectors = cfg.model.image_shape is not None and len(cfg.model.image_shape) == 1
    if not vectors:
        image_format(out)
    elif Path(out).suffix.lower() not in (".csv", ".npz"):
        raise ConfigError(f"--out {out}: this run's data are vectors, so its samples are a table: name a .csv or .npz file")
    model = load_run(run_dir)
    if label is not None:
        model.require("conditional", "drawing a chosen class (--class)")
    s = fit_sampler(sampler, model, lambda: load_run_data(cfg.data, cfg.seed, run_dir, run_data)[0], run_dir, seed=seed)
    x = s.sample(n, label=label)
    if not vectors:
        return save_grid(x, out)
    return _write_vectors(x, cfg, Path(out))


def _write_vectors(x: torch.Tensor, cfg: RunConfig, out: Path) -> Path:
    """Vectors in the data's own units (times the run's scale, plus its centre), as CSV or npz."""
    import io

    import numpy as np

    v = x.double()
    if cfg.data.center is not None and cfg.data.scale is not None:
        v = v * torch.tensor(cfg.data.scale, dtype=torch.float64) + torch.tensor(cfg.data.center, dtype=torch.float64)
    a = v.numpy()
    if out.suffix.lower() == ".npz":
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, x=a)
        return out
    buf = io.StringIO()
    np.savetxt(buf, a, delimiter=",", fmt="%.8g")
    atomic_write_text(out, buf.getvalue())
    return out


def _refuse_vectors(model: Autoencoder, what: str) -> None:
    if model.is_vector:
        raise ModelError(f"{what} draws image grids; this run's data are vectors. `vaelab sample RUN --out samples.csv` "
                         "writes new vectors, and `vaelab evaluate` measures the reconstructions")


def _positive(what: str, value: int, least: int = 1) -> None:
    if value < least:
        raise ConfigError(f"{what} must be at least {least}, got {value}")


def _test_images(run_dir: Path, n: int, start: int = 0, what: str = "test images") -> tuple[Autoencoder, torch.Tensor]:
    cfg = RunConfig.load(run_dir / "config.yaml")
    model = load_run(run_dir)
    test = load_split(cfg.data, "test", apply_class_filter=False)
    if start < 0 or start + n > len(test):
        raise ConfigError(f"{what}: the test split of {cfg.data.name} has {len(test)} images (indices 0..{len(test) - 1}); "
                          f"images {start}..{start + n - 1} were asked for")
    return model, test.subset(torch.arange(start, start + n)).float()


def interpolate_run(run_dir: str | Path, out: str | Path, pairs: int = 4, steps: int = 10, mode: str = "linear") -> Path:
    """Rows of ``steps`` images between consecutive pairs of test images."""
    _positive("--pairs", pairs)
    _positive("--steps", steps, 2)
    image_format(out)
    model, x = _test_images(Path(run_dir), 2 * pairs, what=f"--pairs {pairs} needs {2 * pairs} test images")
    _refuse_vectors(model, "interpolate")
    rows = [interpolate(model, x[2 * i], x[2 * i + 1], steps, mode) for i in range(len(x) // 2)]
    return save_grid(torch.cat(rows), out, nrow=steps)


def traverse_run(run_dir: str | Path, out: str | Path, index: int = 0, span: float = 3.0, steps: int = 9,
                 units: list[int] | None = None) -> Path:
    """One row per latent unit, swept over [-span, span] around the code of test image ``index``."""
    _positive("--steps", steps, 2)
    image_format(out)
    if span <= 0:
        raise ConfigError(f"--span must be positive (the sweep is [-span, span]), got {span}")
    model, x = _test_images(Path(run_dir), 1, index, what=f"--index {index}")
    _refuse_vectors(model, "traverse")
    if units is not None:
        bad = [u for u in units if not 0 <= u < model.latent_dim]
        if bad or not units:
            raise ConfigError(f"--units {','.join(map(str, units))}: the model has {model.latent_dim} latent units, "
                              f"numbered 0..{model.latent_dim - 1}" + (f"; {bad} are outside" if bad else ""))
    return save_grid(latent_traversal(model, x[0], span, steps, units), out, nrow=steps)


def reconstruct_run(run_dir: str | Path, out: str | Path, n: int = 32, noisy: bool = False) -> Path:
    """Test images above their reconstructions; with ``noisy`` (denoising models) clean / corrupted / denoised rows."""
    _positive("-n (images)", n)
    image_format(out)
    run_dir = Path(run_dir)
    cfg = RunConfig.load(run_dir / "config.yaml")
    model = load_run(run_dir)
    _refuse_vectors(model, "reconstruct")
    test = load_split(cfg.data, "test", apply_class_filter=False)
    x = test.subset(torch.arange(min(n, len(test)))).float()
    if noisy:
        model.require("denoises", "--noisy")
        rows = []
        for i in range(0, len(x), 8):
            corrupted, den = model.denoise(x[i : i + 8], torch.Generator().manual_seed(i))
            rows += [x[i : i + 8], corrupted, den]
        return save_grid(torch.cat(rows), out, nrow=8)
    return save_grid(interleave_rows(x, model.reconstruct(x), 8), out, nrow=8)
