"""Health checks of a trained run, from its metrics: what its numbers say went wrong, and the usual fix.

- ``posterior_collapse``: a stochastic code that carries nothing: no active unit, or a KL under
  ``KL_FLOOR`` nats per image. Every image then gets the same reconstruction and the samples are one blur.
- ``non_finite_loss``: the negative ELBO (or the loss terms) is NaN or infinite.
- ``no_better_than_mean_image``: the reconstructions are no closer to the images than the training
  set's mean image is.
"""
from __future__ import annotations

import math
from typing import Any

KL_FLOOR = 0.1  # nats per image: below it the code tells the images almost nothing
FIXES = {
    "posterior_collapse": "train longer (--epochs), warm the KL up (--set train.kl_warmup_steps=N), lower beta "
                          "(--set model.beta=...), or give the code more units (--latent-dim)",
    "non_finite_loss": "lower the learning rate (--set train.lr=...), clip gradients (--set train.grad_clip=1), or check the "
                       "data for NaN or extreme values",
    "no_better_than_mean_image": "train longer (--epochs), lower beta or warm the KL up, or check that the data are "
                                 "the images the model should learn",
}


def health_flags(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """The flags ``metrics`` raise, each {'flag', 'why', 'fix'}; an empty list for a healthy run. A check
    whose metric is absent (a deterministic AE has no KL) is not made."""
    flags = []

    def add(flag: str, why: str) -> None:
        flags.append({"flag": flag, "why": why, "fix": FIXES[flag]})

    bad = [k for k in ("nelbo", "rec", "kl", "loss") if isinstance(metrics.get(k), float) and not math.isfinite(metrics[k])]
    if bad or any(metrics.get(k) is None and k in metrics for k in ("nelbo", "rec", "kl")):
        add("non_finite_loss", f"{', '.join(bad) or 'the loss'} is not a finite number")
    kl, au = metrics.get("kl"), metrics.get("active_units")
    if isinstance(kl, (int, float)) and math.isfinite(kl) and (kl < KL_FLOOR or au == 0):
        add("posterior_collapse", f"the KL is {kl:.3g} nats per image and {au if au is not None else 'no'} unit(s) are "
                                  "active: the code carries (almost) nothing about the image")
    mse, base = metrics.get("mse"), metrics.get("mse_mean_image")
    if isinstance(mse, (int, float)) and isinstance(base, (int, float)) and math.isfinite(mse) and mse >= 0.95 * base:
        add("no_better_than_mean_image", f"the reconstruction error {mse:.4g} is not clearly below the {base:.4g} of the "
                                         "training set's mean image put in place of every reconstruction")
    return flags


def health_notes(flags: list[dict[str, str]]) -> list[str]:
    """One warning line per flag, for a report or a terminal."""
    return [f"Warning ({f['flag'].replace('_', ' ')}): {f['why']}. Likely fix: {f['fix']}." for f in flags]
