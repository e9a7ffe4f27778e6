"""The latent map: a 2-D scatter of latent means coloured by label (t-SNE when d > 2)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import ImageSet
from ..fileio import atomic_write_figure
from ..models import Autoencoder, embed_images


def latent_map(model: Autoencoder, data: ImageSet, out: Path, max_points: int = 2000, seed: int = 0) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = data.limit(max_points, seed)
    z = embed_images(model, sub).double().numpy()
    if z.shape[1] == 2:
        xy, how = z, "latent means"
    else:
        from sklearn.manifold import TSNE

        xy = TSNE(2, init="pca", random_state=seed, perplexity=min(30, max(5, len(z) // 4))).fit_transform(z)
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
