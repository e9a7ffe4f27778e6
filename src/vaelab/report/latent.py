"""The latent map: a 2-D scatter of latent means coloured by label (t-SNE when d > 2)."""
from __future__ import annotations

import contextlib
import io
import logging
import re
from pathlib import Path

import numpy as np

from ..data import ImageSet
from ..fileio import atomic_write_figure
from ..models import Autoencoder, embed_images
from ..progress import Progress

log = logging.getLogger("vaelab")


class _IterationCount(io.TextIOBase):
    """Where scikit-learn's verbose t-SNE prints: its '[t-SNE] Iteration N: ...' lines (every 50
    iterations) become the count of ``progress``; everything else it prints is dropped."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        for m in re.finditer(r"\[t-SNE\] Iteration (\d+):", s):
            self.progress.update(max(0, int(m.group(1)) - self.progress.done))
        return len(s)


def latent_map(model: Autoencoder, data: ImageSet, out: Path, max_points: int = 1000, seed: int = 0,
               tsne_iterations: int = 500) -> Path | None:
    """A scatter of the latent means of up to ``max_points`` images (t-SNE beyond 2 dimensions,
    ``tsne_iterations`` steps: 1,000 points and 500 steps keep it to seconds after training)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..errors import DataError

    sub = data.limit(max_points, seed)
    z = embed_images(model, sub).double().numpy()
    if not np.isfinite(z).all():
        raise DataError("some latent means are not finite (the model diverged)")
    distinct = len(np.unique(z.round(6), axis=0))
    if z.shape[1] == 1:
        xy, how = np.stack([z[:, 0], np.zeros(len(z))], 1), "latent means"
    elif z.shape[1] == 2:
        xy, how = z, "latent means"
    elif distinct < 5:
        # t-SNE needs a few distinct points; on identical codes scikit-learn's Barnes-Hut tree can crash the process
        raise DataError(f"the {len(z)} test images have {distinct} distinct latent mean(s) (identical images, or a model "
                        "that ignores its input), and a t-SNE map needs at least 5")
    else:
        from sklearn.manifold import TSNE

        log.info("t-SNE of %d latent means for the report's latent map", len(z))
        perplexity = float(min(30, max(1, (len(z) - 1) // 3)))
        tsne = TSNE(2, init="pca", random_state=seed, perplexity=perplexity, max_iter=tsne_iterations, verbose=2)
        with Progress(f"t-SNE of {len(z)} latent means", tsne_iterations, "iterations") as progress, \
                contextlib.redirect_stdout(_IterationCount(progress)):
            xy = tsne.fit_transform(z)
        how = f"t-SNE of {z.shape[1]}-d latent means"
    fig, ax = plt.subplots(figsize=(6, 5))
    if sub.labels is not None:
        labels = sub.labels.numpy()
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=4, alpha=0.8)
        names = sub.class_names or [str(i) for i in range(int(labels.max()) + 1)]
        handles = [plt.Line2D([], [], marker="o", ls="", color=sc.cmap(sc.norm(i)), label=names[i] if i < len(names) else str(i))
                   for i in np.unique(labels)]
        ax.legend(handles=handles, fontsize=7, markerscale=1.2, loc="best")
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=4)
    ax.set_title(f"{how} ({len(sub)} test images)")
    return atomic_write_figure(fig, out)
