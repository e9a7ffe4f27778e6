"""Grad2VAE's attention artefacts: checkerboard, corner and border indices of its attention maps per encoder variant.

Part (d) of the grad2vae experiment (results: grad2vae.json, beside the other parts' results): for
each encoder variant (the 4x4 stride-2 halving, or 2x2 average pooling then a 3x3 convolution; zero or
circular padding), train grad2vae on each of --classes of Fashion-MNIST and measure on the test set's
normal and anomalous images (--images of each) the checkerboard, corner and border indices of the
attention maps (``_artefact_indices``), for the untrained network and the trained one, and the
default score's ROC-AUC; figures under --figures (one per variant and class). Trained runs in --runs
are reused.

    python -m benchmarks grad2vae_artefacts [--classes 0,6] [--epochs 10] [--figures DIR]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks._harness import Bench, fit_or_reuse, print_table
from benchmarks.grad2vae._shared import DATASET, add_cut_arguments, auroc, overrides, record_part

RESULT = "grad2vae"
# the encoder variants whose attention maps are measured for artefacts
ARTEFACT_VARIANTS = {"stride-zeros": {}, "stride-circular": {"padding": "circular"}, "pool-zeros": {"downsample": "pool"},
                     "pool-circular": {"padding": "circular", "downsample": "pool"}}
SMOKE = ["--classes", "0", "--epochs", "1", "--images", "20", "--variants", "stride-zeros", "--limit", "100",
         "--test-limit", "100", "--set", "model.latent_dim=4"]
NEEDS = ("fashion-mnist",)  # the data its smoke test reads (besides scikit-learn's)


def _artefact_indices(maps, images) -> dict:
    """maps, images [N, 1, H, W] (maps in [0, 1] per image): the artefact indices, each averaged over
    the images.

    checkerboard: the power of the map's spectrum on its Nyquist row and column (period-2 patterns,
    which a stride-2 layer's uneven taps print) over the power on the rows and columns next to them
    (about 1 or less for content whose spectrum falls with frequency; far above 1 for a grid);
    corner: the map's brightest value in the four 2x2 corners; border: the mean of the 2-pixel frame
    over the mean of the map. The inputs' own values beside them (their corners are background)."""
    import torch

    def nyquist(m):
        m = m[:, 0] - m[:, 0].mean((-2, -1), keepdim=True)
        power = torch.fft.fft2(m).abs().pow(2)
        h, w = m.shape[-2:]
        on = power[:, h // 2, :].sum(-1) + power[:, :, w // 2].sum(-1)
        near = (power[:, h // 2 - 1, :].sum(-1) + power[:, h // 2 + 1, :].sum(-1)
                + power[:, :, w // 2 - 1].sum(-1) + power[:, :, w // 2 + 1].sum(-1)) / 2
        return on / near.clamp_min(1e-20)

    def corners(m):
        return torch.stack([m[:, 0, :2, :2], m[:, 0, :2, -2:], m[:, 0, -2:, :2], m[:, 0, -2:, -2:]], 1).flatten(1).amax(1)

    h, w = maps.shape[-2:]
    frame = torch.ones(h, w, dtype=torch.bool)
    frame[2 : h - 2, 2 : w - 2] = False
    overall = maps.mean((-2, -1)).flatten().clamp_min(1e-12)
    return {"checkerboard": float(nyquist(maps).mean()), "checkerboard_inputs": float(nyquist(images).mean()),
            "corner": float(corners(maps).mean()), "corner_inputs": float(corners(images).mean()),
            "border": float((maps[..., frame].mean(-1).flatten() / overall).mean())}


def artefacts(classes: list[int], epochs: int, limit: int | None, test_limit: int | None, images: int, seed: int,
              runs: Path, figures: Path | None, variants: list[str] | None = None, extra: dict | None = None) -> list[dict]:
    import torch

    from vaelab.api.explain import explain_run
    from vaelab.config import deep_merge
    from vaelab.data import load_data
    from vaelab.models import build, make_config
    from vaelab.train import RunConfig

    rows = []
    for c in classes:
        data = None
        for label, opts in ARTEFACT_VARIANTS.items():
            if variants is not None and label not in variants:
                continue
            base = deep_merge({"data": {"name": DATASET, "classes": [c], "limit": limit, "test_limit": test_limit},
                               "model": opts, "train": {"progress_bar": False, "epochs": epochs}, "seed": seed}, extra or {})
            cfg = RunConfig.build("grad2vae", base)
            run_dir = runs / "artefacts" / f"class{c}-{label}"
            if data is None:
                data = load_data(cfg.data, seed)
            train, _, test = data
            y = (test.labels != c)
            pick = torch.cat([torch.nonzero(~y).flatten()[:images], torch.nonzero(y).flatten()[:images]])
            x = test.subset(pick).float()
            normal = torch.zeros(len(pick), dtype=torch.bool)
            normal[: int((~y).sum().clamp(max=images))] = True
            torch.manual_seed(seed)
            fresh = build(make_config("grad2vae", base["model"]), tuple(x.shape[1:]))
            model, seconds = fit_or_reuse(cfg, run_dir, data=data)  # trained now, or by an earlier call
            row = {"part": "d", "class": c, "variant": label, **opts, "epochs": epochs, "parameters": model.num_parameters(),
                   "train_seconds": seconds, "auroc": auroc(model, train, test, c, seed, cfg.train.eval_batch_size)}
            for name, net in (("untrained", fresh), ("trained", model)):
                net.eval()
                maps = net.attention_maps(x, torch.Generator().manual_seed(seed))
                for part, sel in (("normal", normal), ("anomalous", ~normal)):
                    for k, v in _artefact_indices(maps[sel], x[sel]).items():
                        row[f"{name}_{part}_{k}"] = v
            if figures is not None:
                figures.mkdir(parents=True, exist_ok=True)
                row["figure"] = str(explain_run(run_dir, "grad2", n=8, out=figures / f"grad2vae-attention-{label}-class{c}.png"))
            rows.append(row)
            print(f"  class {c} {label:<16} ROC-AUC {row['auroc']:.4f}  checkerboard {row['trained_normal_checkerboard']:.2f} "
                  f"(inputs {row['trained_normal_checkerboard_inputs']:.2f})  corner {row['trained_normal_corner']:.2f} "
                  f"(inputs {row['trained_normal_corner_inputs']:.2f})  border {row['trained_normal_border']:.2f}", flush=True)
    return rows


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--classes", default="0,6", help="normal classes (default 0,6)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    ap.add_argument("--images", type=int, default=200, help="normal and anomalous test images measured (default 200 each)")
    ap.add_argument("--variants", default=",".join(ARTEFACT_VARIANTS), help="encoder variants (default all)")
    ap.add_argument("--figures", default=None, help="write each variant's attention figure into this folder")
    add_cut_arguments(ap)


def main(b: Bench) -> None:
    a = b.args
    t0 = time.perf_counter()
    classes = [int(c) for c in a.classes.split(",") if c.strip()]
    rows = artefacts(classes, a.epochs, a.limit, a.test_limit, a.images, a.seed, b.runs,
                     Path(a.figures) if a.figures else None, a.variants.split(","), overrides(a))
    print("\n(d) attention artefacts (trained; normal test images)")
    print_table(rows, ["class", "variant", "auroc", "trained_normal_checkerboard", "trained_anomalous_checkerboard",
                       "trained_normal_checkerboard_inputs", "untrained_normal_checkerboard", "trained_normal_corner",
                       "trained_anomalous_corner", "trained_normal_corner_inputs", "untrained_normal_corner", "trained_normal_border"])
    record_part(b, "d", {"artefacts": rows}, time.perf_counter() - t0)
