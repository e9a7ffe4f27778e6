"""Which sampler makes a model generate well: FID (LeNet features) of samples from the prior and
from densities fitted to the training codes (gmm, two-stage, maf, iaf; vaelab.generate) for `vae`,
`rae-l2` and `wae` on Fashion-MNIST and MNIST. Ghosh et al. (ICLR 2020) report that ex-post density
estimation is what makes a regularised autoencoder generate well; the table shows whether it
holds here (an RAE has no prior of its own, so its prior column is empty).

The runs are benchmarks/zoo.py's (same budget: default conv networks, latent 16, E epochs, one
seed; `--runs` shared with it, finished runs reused). FID compares --fid-images samples with as
many test images, through `vaelab evaluate --metrics fid --fid-samplers ...`.

    VAELAB_DATA=../shared/data python benchmarks/samplers.py [--epochs 5] [--runs DIR] [--fid-images 5000]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table, write_result  # noqa: E402
from _zoo_runner import train_or_reuse  # noqa: E402

MODELS = ("vae", "rae-l2", "wae")
SAMPLERS = ("prior", "gmm", "two-stage", "maf", "iaf")


def _key(sampler: str) -> str:
    return "fid_lenet" if sampler == "prior" else f"fid_lenet_{sampler}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--datasets", default="fashion-mnist,mnist")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--runs", default=None, help="run directories (benchmarks/zoo.py's; reused when finished)")
    ap.add_argument("--fid-images", type=int, default=5000)
    a = ap.parse_args()
    runs = Path(a.runs or tempfile.mkdtemp(prefix="vaelab-zoo-"))
    rows = []
    for ds in a.datasets.split(","):
        for m in a.models.split(","):
            run = train_or_reuse(m, ds, a.epochs, runs)
            cache = run / f"samplers_fid{a.fid_images}.json"
            if cache.is_file():
                ev = json.loads(cache.read_text())
            else:
                cmd = ["vaelab", "evaluate", str(run), "--metrics", "fid", "--fid-images", str(a.fid_images),
                       "--fid-samplers", ",".join(SAMPLERS), "--json", "--no-report"]
                print("$", " ".join(cmd), flush=True)
                ev = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                cache.write_text(json.dumps(ev, indent=2))
            row = {"dataset": ds, "model": m, **{s: ev.get(_key(s)) for s in SAMPLERS}, "rfid": ev.get("rfid_lenet")}
            fitted = {s: row[s] for s in SAMPLERS if row[s] is not None}
            row["best_sampler"] = min(fitted, key=fitted.get) if fitted else None
            rows.append(row)
            print(row, flush=True)
    print_table(rows, ["dataset", "model", *SAMPLERS, "rfid", "best_sampler"])
    write_result("samplers", rows, epochs=a.epochs, fid_images=a.fid_images, runs=str(runs))


if __name__ == "__main__":
    main()
