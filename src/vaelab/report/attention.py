"""The report's attention section: the online attention grids that training wrote after every
epoch (RUN_DIR/attention/epoch_XXX.png, see vaelab.train.callbacks.AttentionGrid)."""
from __future__ import annotations

import re
from pathlib import Path

from ..train.callbacks import ATTENTION_DIR


def attention_epochs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(epoch, grid) of every epoch's attention grid of the run, in epoch order."""
    found = []
    for p in (Path(run_dir) / ATTENTION_DIR).glob("epoch_*.png"):
        m = re.fullmatch(r"epoch_(\d+)\.png", p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def attention_epoch_figures(run_dir: str | Path, max_shown: int = 3) -> list[tuple[str, Path]]:
    """(caption, path) of the first, middle and last epochs' grids (all when there are few), so
    the report shows how the attention evolves."""
    grids = attention_epochs(run_dir)
    if not grids:
        return []
    if len(grids) > max_shown:
        picks = sorted({round(i * (len(grids) - 1) / (max_shown - 1)) for i in range(max_shown)})
        grids = [grids[i] for i in picks]
    last = attention_epochs(run_dir)[-1][0]
    return [(f"Online attention after epoch {e} (of {last} drawn): fixed training images, the attention over them, "
             "their reconstruction and the reconstruction with the attention fused into the decoder", p)
            for e, p in grids]
