"""How much each input feature contributes to an anomaly score: for vectors (rows of a table), one number
per column and row.

- ``reconstruction``: the squared error of each feature of decode(E[z|x]) against x, in the units the model
  sees (standardised columns): the terms whose sum is the ``mse`` score (times D).
- ``gradient``: gradient x input of the detector's raw score, with x measured from the training mean (the
  standardised value) and the gradient taken by central differences, so it serves every score, also those
  that are not differentiable in torch (a scikit-learn mixture, nearest neighbours) and those that are not
  sums over features (the default combo of a code density and a feature kNN).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..errors import ConfigError, DataError

FEATURE_METHODS = ("auto", "reconstruction", "gradient")


def reconstruction_terms(model: Any, x: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    """(N, D) squared error of each feature of the reconstruction decode(E[z|x]) of standardised vectors x."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].float()
            out.append((model.decode(model.encode(xb).mean).mean - xb).pow(2).double().cpu())
    return torch.cat(out).numpy()


def gradient_times_input(score: Callable[[torch.Tensor], np.ndarray], x: torch.Tensor, step: float = 1e-2) -> np.ndarray:
    """(N, D) x_j * d score / d x_j of standardised vectors x (the score takes a batch of them and returns
    one number per row), the derivative by central differences of ``step`` (standardised units)."""
    import logging
    import time

    n, d = x.shape
    out = np.zeros((n, d))
    x = x.double()
    t0, said = time.perf_counter(), time.perf_counter()
    for j in range(d):
        if time.perf_counter() - said > 5:  # a wide table takes a while: say how far it is
            said = time.perf_counter()
            logging.getLogger("vaelab").info("explaining: column %d of %d (%.0f s)", j + 1, d, said - t0)
        up, down = x.clone(), x.clone()
        up[:, j] += step
        down[:, j] -= step
        out[:, j] = (score(up.float()) - score(down.float())) / (2 * step)
    return out * x.numpy()


def feature_contributions(det: Any, X: Any, method: str = "auto", step: float = 1e-2) -> np.ndarray:
    """(N, D) contribution of each feature of each row of X to ``det``'s score (see the module's doc);
    'auto' is 'reconstruction' for a score that sums per-feature reconstruction errors (``sums_feature_errors``:
    mse, bce) and 'gradient' otherwise."""
    from .inputs import as_images
    from .scores import score_images

    if method not in FEATURE_METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; choose one of: {', '.join(FEATURE_METHODS)}")
    det._check_fitted()
    x = as_images(X)
    if x.ndim != 2:
        raise DataError("explanations per feature are for vectors (rows of a table); for images, vaelab detect --maps "
                        "draws where in each image the score comes from (vaelab.detect.maps)")
    if method == "auto":
        method = "reconstruction" if det.score_.sums_feature_errors else "gradient"
    if method == "reconstruction":
        return np.mean([reconstruction_terms(m, det._prepare(x, i), det.batch_size) for i, m in enumerate(det.models_)], 0)
    # every member sees the same standardised columns when one standardiser made them (the detector trained
    # them on one X, or runs of one configuration); perturb them there
    xs = det._prepare(x, 0)

    def raw(batch: torch.Tensor) -> np.ndarray:
        return np.mean([score_images(m, s, batch, det.batch_size, det.seed).numpy()
                        for m, s in zip(det.models_, det.scores_)], 0)

    return gradient_times_input(raw, xs, step)


def top_features(contributions: np.ndarray, k: int = 3, names: list[str] | None = None) -> list[str]:
    """Per row, its ``k`` largest contributions as 'NAME (value)' joined by '; ' (names: column numbers by default)."""
    names = names or [str(j) for j in range(contributions.shape[1])]
    order = np.argsort(-contributions, axis=1)[:, :k]
    return ["; ".join(f"{names[j]} ({row[j]:.3g})" for j in idx) for row, idx in zip(contributions, order)]
