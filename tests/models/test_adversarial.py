"""The adversarial models (factor-vae, aae): the dimension-wise permutation, the discriminator's
total-correlation estimate against the closed form of a correlated Gaussian, both optimizers in the
checkpoint, and a run killed between the model's step and the discriminator's step resuming to the
same weights as an uninterrupted run."""
from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from vaelab.objectives.adversarial import density_ratio_tc, discriminator_mlp, permute_dims
from vaelab.train import CHECKPOINT

from tests.conftest import vaelab_here


def test_permute_dims_shuffles_each_column_alone():
    torch.manual_seed(0)
    z = torch.randn(500, 4) @ torch.tensor([[1.0, 0.9, 0, 0], [0, 0.4, 0, 0], [0, 0, 1, 0.5], [0, 0, 0, 1]])
    p = permute_dims(z)
    for j in range(4):  # every column holds the same values: the marginals are kept
        assert torch.equal(torch.sort(p[:, j]).values, torch.sort(z[:, j]).values)
    c_z, c_p = torch.corrcoef(z.T)[0, 1], torch.corrcoef(p.T)[0, 1]
    assert c_z > 0.8 and abs(c_p) < 0.15  # ... and the dependence between columns is gone


def test_discriminator_estimates_the_total_correlation_of_a_gaussian():
    """For q = N(0, [[1, r], [r, 1]]) the total correlation KL(q || q1 q2) is -0.5 log(1 - r^2); a
    discriminator trained as factor-vae trains its own (codes vs permuted codes) estimates it as the
    mean of its log density ratio."""
    torch.manual_seed(0)
    r = 0.9
    chol = torch.linalg.cholesky(torch.tensor([[1.0, r], [r, 1.0]]))
    d = discriminator_mlp(2, 64, 2, 2)
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    for _ in range(600):
        z = torch.randn(512, 2) @ chol.T
        logits = d(torch.cat([z, permute_dims(z)]))
        target = torch.cat([torch.zeros(512, dtype=torch.long), torch.ones(512, dtype=torch.long)])
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        est = float(density_ratio_tc(d(torch.randn(20000, 2) @ chol.T)).mean())
    exact = -0.5 * math.log(1 - r * r)
    print(f"\nTC of a Gaussian with correlation {r}: discriminator {est:.3f}, closed form {exact:.3f}")
    assert abs(est - exact) < 0.15 * exact


@pytest.mark.parametrize("name,terms", [("factor-vae", {"tc", "d_loss", "d_accuracy", "kl"}), ("aae", {"adv", "d_loss", "d_accuracy"})])
def test_both_optimizers_step_and_are_checkpointed(name, terms, tmp_path):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.models import build, make_config
    from vaelab.train import RunConfig

    cfg = RunConfig.build(name, parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[32]", "model.latent_dim=3",
                                           "train.epochs=1", "train.batch_size=64", "train.progress_bar=false",
                                           "model.disc_hidden=16", "model.disc_layers=2"]))
    torch.manual_seed(cfg.seed)
    init = build(make_config(name, {"arch": "mlp", "mlp_hidden": [32], "latent_dim": 3, "disc_hidden": 16,
                                    "disc_layers": 2}), (1, 8, 8))
    run, metrics = train_run(cfg, tmp_path / "run")
    rows = [r for r in csv.DictReader(open(run / "logs" / "metrics.csv")) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == list(range(21))  # one row per batch, numbered as any model's
    assert all(math.isfinite(float(r[f"train/{t}"])) for r in rows for t in terms)
    ck = torch.load(run / CHECKPOINT, weights_only=True)
    assert len(ck["optimizer_states"]) == 2 and ck["global_step"] == 2 * 21
    disc_params = sum(p.numel() for p in init.discriminator.parameters())
    n_state = [sum(v["exp_avg"].numel() for v in o["state"].values()) for o in ck["optimizer_states"]]
    assert n_state[1] == disc_params and n_state[0] == init.num_parameters() - disc_params
    w = load_file(str(run / "model.safetensors"))
    assert any(k.startswith("discriminator.") for k in w)
    moved = [k for k in w if k.startswith("discriminator.") and not torch.equal(w[k], init.state_dict()[k])]
    assert moved  # the discriminator was trained


# ---- killed between the model's step and the discriminator's step, resumed: exact ----
ARGS = ["train", "factor-vae", "--data", "digits", "--epochs", "2", "--batch-size", "64", "--latent-dim", "3", "--seed", "3",
        "--set", "model.arch=mlp", "--set", "model.mlp_hidden=[32]", "--set", "model.disc_hidden=32",
        "--set", "model.disc_layers=2", "--set", "train.progress_bar=false", "--set", "train.checkpoint_every_n_steps=5"]
STALL_AT = 28  # epoch 1, batch 7: after the model's step of that batch, before its discriminator step

STALLING_CHILD = f"""
import sys, time
from pathlib import Path
from vaelab.models.factor_vae_aae import FactorVAE
marker = Path(sys.argv[1])
d_loss = FactorVAE.discriminator_loss
calls = [0]
def stalling(self, x, labels=None):
    if calls[0] == {STALL_AT}:
        marker.write_text(str(calls[0]))
        time.sleep(600)
    calls[0] += 1
    return d_loss(self, x, labels)
FactorVAE.discriminator_loss = stalling
from vaelab.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_killed_between_the_model_step_and_the_discriminator_step_resumes_exactly(tmp_path, one_thread):
    """The killed run is a real process; the uninterrupted reference (trained meanwhile) and the resume
    run through the CLI's main() in this process, with one thread as the child has."""
    run, ref, marker = tmp_path / "run", tmp_path / "ref", tmp_path / "stalled"
    log = open(tmp_path / "child.log", "w")
    child = subprocess.Popen([sys.executable, "-c", STALLING_CHILD, str(marker), *ARGS, "--out", str(run)], stdout=log,
                             stderr=subprocess.STDOUT, env=_env())
    reference = vaelab_here(*ARGS, "--out", str(ref))
    assert reference.returncode == 0, reference.stderr
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert child.poll() is None, (tmp_path / "child.log").read_text()
            assert time.monotonic() < deadline, "the child never reached the discriminator step where it stalls"
            time.sleep(0.1)
        ck = torch.load(run / CHECKPOINT, weights_only=True)
        assert ck["global_step"] == 2 * 25  # the last checkpoint: after batch 25 (5 per checkpoint), both optimizers
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    resumed = vaelab_here("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    w_run, w_ref = load_file(str(run / "model.safetensors")), load_file(str(ref / "model.safetensors"))
    assert w_run.keys() == w_ref.keys() and any(k.startswith("discriminator.") for k in w_ref)
    assert all(torch.equal(w_run[k], w_ref[k]) for k in w_ref), "resumed weights differ from the uninterrupted run"
    c_run, c_ref = (torch.load(r / CHECKPOINT, weights_only=True) for r in (run, ref))
    for o_run, o_ref in zip(c_run["optimizer_states"], c_ref["optimizer_states"]):
        for s_run, s_ref in zip(o_run["state"].values(), o_ref["state"].values()):
            assert all(torch.equal(s_run[k], s_ref[k]) for k in s_ref)  # both optimizers' moments
