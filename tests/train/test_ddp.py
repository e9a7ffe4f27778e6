"""Training with several processes through Lightning's DDP (gloo on the CPU): the processes stay in
sync, share each global batch between them, and end where one process with the same global batch
ends. The processes are started the way a user starts them: `fit` with train.strategy=ddp and
train.devices=2, and Lightning's launcher re-runs the script for the second rank; the one-process
reference trains in the test's own process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vaelab.train.batches import EpochBatchSampler

# the data and the model are small and deterministic (a plain AE has no sampling noise), so that the
# single-process run of the same global batch is a reference up to float rounding
SETTINGS = ["data.name=digits", "data.limit=320", "model.arch=mlp", "model.mlp_hidden=[32]", "model.latent_dim=2",
            "train.epochs=2", "train.batch_size=64", "train.progress_bar=false", "train.accelerator=cpu", "seed=3"]

# every process writes its final weights and the index batches it was given
SCRIPT = r"""
import json, os, sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from vaelab.config import parse_set
from vaelab.data import DataConfig, load_data
from vaelab.train import RunConfig, fit
from vaelab.train import batches

out, devices = Path(sys.argv[1]), int(sys.argv[2])
seen = []
_iter = batches.EpochBatchSampler.__iter__
def recording(self):
    for b in _iter(self):
        if self.shuffle:
            seen.append(b.tolist())
        yield b
batches.EpochBatchSampler.__iter__ = recording

cfg = RunConfig.build("ae", parse_set([*json.loads(sys.argv[3]), f"train.devices={devices}",
                                       f"train.strategy={'ddp' if devices > 1 else 'auto'}"]))
model, _ = fit(cfg, out / "run", data=load_data(cfg.data, cfg.seed))
rank = int(os.environ.get("LOCAL_RANK", 0))
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
(out / f"rank{rank}.json").write_text(json.dumps(seen))
"""


def _start(script: Path, out: Path, devices: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out.mkdir()
    return subprocess.Popen([sys.executable, str(script), str(out), str(devices), json.dumps(SETTINGS)],
                            stdout=open(out / "log.txt", "w"), stderr=subprocess.STDOUT, env=env, cwd=out)


def _single_process_run(out: Path) -> None:
    """What SCRIPT does with one device, in this process (with one thread, as the DDP processes have):
    the reference needs no process of its own, and trains while the two DDP processes start."""
    from vaelab.config import parse_set
    from vaelab.data import load_data
    from vaelab.train import RunConfig, fit

    out.mkdir()
    seen = []
    record = EpochBatchSampler.__iter__

    def recording(self):
        for b in record(self):
            if self.shuffle:
                seen.append(b.tolist())
            yield b

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(EpochBatchSampler, "__iter__", recording)
            cfg = RunConfig.build("ae", parse_set([*SETTINGS, "train.devices=1", "train.strategy=auto"]))
            model, _ = fit(cfg, out / "run", data=load_data(cfg.data, cfg.seed))
    finally:
        torch.set_num_threads(threads)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "rank0.safetensors"))
    (out / "rank0.json").write_text(json.dumps(seen))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "train_ddp.py"
    script.write_text(SCRIPT)
    ddp = _start(script, tmp / "ddp", 2)
    _single_process_run(tmp / "single")
    assert ddp.wait(timeout=240) == 0, (tmp / "ddp" / "log.txt").read_text()
    return tmp


def test_ranks_end_with_identical_weights(runs):
    w0, w1 = (load_file(str(runs / "ddp" / f"rank{r}.safetensors")) for r in (0, 1))
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


def test_ranks_share_each_global_batch(runs):
    """Each rank gets half of every global batch, the halves are disjoint, and together they are
    exactly the batch a single process gets at that step."""
    r0, r1, single = (json.loads((runs / d / f"rank{r}.json").read_text()) for d, r in (("ddp", 0), ("ddp", 1), ("single", 0)))
    assert len(r0) == len(r1) == len(single) == 2 * 5  # 288 training images (320 less 10% validation): 4 full batches + 32
    for a, b, s in zip(r0, r1, single):
        assert len(a) == len(b) == len(s) // 2
        assert not set(a) & set(b) and sorted(a + b) == sorted(s)


def test_ddp_matches_single_process_run_of_the_same_global_batch(runs):
    ddp, single = load_file(str(runs / "ddp" / "rank0.safetensors")), load_file(str(runs / "single" / "rank0.safetensors"))
    for k in single:  # the averaged gradients differ from the full-batch ones by float rounding only
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=2e-6)
    # the run directory is written once, by rank 0: one log row per optimisation step
    rows = (runs / "ddp" / "run" / "logs" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps = [r.split(",")[header.index("step")] for r in rows[1:] if r.split(",")[header.index("train/loss")]]
    assert steps == [str(i) for i in range(10)]


def test_global_batch_must_divide_among_processes():
    from vaelab.errors import TrainingError

    with pytest.raises(TrainingError, match="divisible by the number of processes"):
        len(EpochBatchSampler(100, 30, 0, rank=0, world_size=4))
    # a last partial batch too small to give every process an image is dropped
    assert len(EpochBatchSampler(130, 64, 0, rank=0, world_size=4)) == 2
    assert len(EpochBatchSampler(132, 64, 0, rank=0, world_size=4)) == 3
    assert len(EpochBatchSampler(130, 64, 0)) == 3
