"""The README's five-minute tour shows a model that learned: its VAE, trained with the tour's own
command line (read from the README), keeps at least half its latent units active and reconstructs
the test images clearly better than the training set's mean image does."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def tour_train_argv() -> tuple[list[str], int]:
    """The tour's `vaelab train vae ...` options (without --out) and the epochs its resume trains to."""
    tour = re.search(r"## A five-minute tour.*?```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S).group(1)
    line = next(ln for ln in tour.splitlines() if ln.startswith("vaelab train vae "))
    argv = shlex.split(line.split("#")[0])[1:]
    i = argv.index("--out")
    del argv[i : i + 2]
    resume = next(ln for ln in tour.splitlines() if ln.startswith("vaelab train --resume"))
    return argv, int(re.search(r"--epochs (\d+)", resume).group(1))


def test_the_tour_command_line_is_what_this_test_reads():
    argv, epochs = tour_train_argv()
    assert argv[:4] == ["train", "vae", "--data", "digits"] and epochs >= int(argv[argv.index("--epochs") + 1])


def test_the_tours_vae_learns(tmp_path, one_thread):
    """Trained straight to the resumed total of epochs (the resume is bit-identical to one longer run,
    tests/train checks that), in this process through the CLI's main()."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    from vaelab.cli import main
    from vaelab.data import load_run_data
    from vaelab.train import RunConfig

    argv, epochs = tour_train_argv()
    argv[argv.index("--epochs") + 1] = str(epochs)
    run = tmp_path / "tour-vae"
    assert main([*argv, "--set", "train.progress_bar=false", "--quiet", "--out", str(run)]) == 0
    m = json.loads((run / "metrics.json").read_text())
    cfg = RunConfig.load(run / "config.yaml")
    assert m["active_units"] >= cfg.model.latent_dim / 2, m
    assert m["health"] == [], m["health"]
    # the mean image's PSNR, computed the metric's way (per image, then averaged over the test set)
    train, _, test = load_run_data(cfg.data, cfg.seed, run)
    mean = train.float().mean(0, keepdim=True)
    x = test.float()
    base = float(peak_signal_noise_ratio(mean.expand_as(x), x, data_range=1.0, reduction="none", dim=(1, 2, 3)).mean())
    assert m["psnr"] > base + 2.0, (m["psnr"], base)  # measured: 15.5 dB against 11.5
    assert m["mse"] < 0.5 * m["mse_mean_image"], m  # measured: 0.030 against 0.073
    assert torch.isfinite(torch.tensor(m["nelbo"]))
