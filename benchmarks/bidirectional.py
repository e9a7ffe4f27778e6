"""Each unidirectional VAE beside its bidirectional twin (same architecture and budget) on
Fashion-MNIST and MNIST: parameters, test negative ELBO, NLL, active units, PSNR, SSIM and
linear-probe accuracy. Shares (and reuses) the run directories of zoo.py when --runs is the same.

    VAELAB_DATA=../shared/data python benchmarks/bidirectional.py [--epochs 2] [--runs DIR]
    python benchmarks/bidirectional.py --epochs 5 --runs DIR --finished-only   # the pairs DIR holds so far
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, write_result  # noqa: E402
from _zoo_runner import add_arguments, get_row  # noqa: E402

PAIRS = [("vae", "bvae"), ("beta-vae", "beta-bvae"), ("beta-tcvae", "beta-tcbvae"), ("iwae", "biwae")]
COLS = ["dataset", "model", "parameters", "param_ratio", "nelbo", "nll", "active_units", "psnr", "ssim", "probe_linear_acc"]


def main() -> None:
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    a = ap.parse_args()
    runs = Path(a.runs or tempfile.mkdtemp(prefix="vaelab-bidir-"))
    rows, missing = [], []
    for ds in a.datasets.split(","):
        for uni, bi in PAIRS:
            u, b = get_row(uni, ds, a, runs), get_row(bi, ds, a, runs)
            if u is None or b is None:
                missing.append(f"{ds}/{uni}+{bi}")
                continue
            for r in (u, b):
                rows.append({k: r.get(k) for k in COLS if k != "param_ratio"} | {"param_ratio": r["parameters"] / u["parameters"]})
            d = {k: b[k] - u[k] for k in ("nelbo", "nll", "psnr", "ssim", "probe_linear_acc") if k in b and k in u}
            print(f"{ds} {bi} - {uni}: " + ", ".join(f"{k} {v:+.3f}" for k, v in d.items()), flush=True)
    print_table(rows, COLS)
    if missing:
        print("missing pairs (not yet trained and evaluated):", ", ".join(missing))
    write_result("bidirectional", rows, epochs=a.epochs, nll_k=a.nll_k, nll_images=a.nll_images, missing=missing)


if __name__ == "__main__":
    main()
