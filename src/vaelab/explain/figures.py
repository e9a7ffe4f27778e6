"""Explanation figures: one column per image; rows input, attention overlaid on it, reconstruction
(and, for grad2vae, the reconstruction with the attention fused into the decoder)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..data import ImageSet
from ..plotting import draw_rows
from .grad2 import grad2_attention
from .gradcam import NormalStatistics, gradcam, gradcam_anomaly

METHODS = ("grad2", "gradcam")


def explain(model, x: torch.Tensor, method: str = "gradcam", *, stats: NormalStatistics | None = None,
            layer: str | int | None = None, unit: int | None = None, use_var: bool = False,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, 1, H, W] attention maps in [0, 1] of ``x`` by ``method``: 'grad2' (a grad2vae's own
    attention) or 'gradcam' (Liu et al.; with ``stats`` its anomaly variant)."""
    if method == "grad2":
        if stats is not None:
            raise ConfigError("the anomaly variant belongs to gradcam; grad2 has none. Use method gradcam for it")
        return grad2_attention(model, x, generator)["maps"]
    if method == "gradcam":
        if stats is not None:
            return gradcam_anomaly(model, x, stats, layer, use_var=use_var)
        return gradcam(model, x, layer, unit)
    raise ConfigError(f"unknown explanation method {method!r}; choose one of: {', '.join(METHODS)}")


def explanation_figure(model, x: torch.Tensor, path: str | Path, method: str = "gradcam",
                       col_titles: list[str] | None = None, title: str = "", **options: Any) -> Path:
    """Write the figure of ``explain(model, x, method, **options)`` to ``path`` (PNG, atomically)."""
    dev = next(model.parameters()).device
    x = x.to(dev).float()
    if method == "grad2":
        if options.get("stats") is not None:
            raise ConfigError("the anomaly variant belongs to gradcam; grad2 has none. Use method gradcam for it")
        out = grad2_attention(model, x, options.get("generator"))
        rows = [("input", x, None), ("grad2 attention", x, out["maps"]), ("reconstruction", out["reconstruction"], None),
                ("attention rec.", out["attention_reconstruction"], None)]
    else:
        maps = explain(model, x, method, **options)
        label = "anomaly attention" if options.get("stats") is not None else "gradient attention"
        was = model.training
        model.eval()
        try:
            rec = model.reconstruct(x)
        finally:
            model.train(was)
        rows = [("input", x, None), (label, x, maps), ("reconstruction", rec, None)]
    return draw_rows(rows, Path(path), title, col_titles)


# -- explanations ---------------------------------------------------------------------------------
def pick_examples(target: ImageSet, y: Any, n: int) -> tuple[torch.Tensor, list[str] | None]:
    """``n`` images to explain: half normal, half anomalous when anomaly labels are known (the
    first of each), else the first ``n``; and their column titles."""
    if y is not None and 0 < int(y.sum()) < len(y):
        yt = torch.as_tensor(y)
        normal = torch.nonzero(yt == 0).flatten()[: n - n // 2]
        anomalous = torch.nonzero(yt == 1).flatten()[: n // 2]
        idx = torch.cat([normal, anomalous])
        return idx, ["normal"] * len(normal) + ["anomaly"] * len(anomalous)
    idx = torch.arange(min(n, len(target)))
    if target.labels is None:
        return idx, None
    names = target.class_names
    return idx, [names[int(c)] if names and int(c) < len(names) else str(int(c)) for c in target.labels[idx]]
