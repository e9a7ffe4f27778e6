"""Training and evaluation speed of the same conv VAE in vaelab, Pythae 0.1.2 and a plain PyTorch loop.

Training and evaluation speed of the same conv VAE in vaelab, Pythae 0.1.2 and a plain PyTorch
loop, measured side by side in one run on this machine.

The model is vaelab's default `vae` for 28x28 images (conv 32-64, hidden 256, latent 16, Bernoulli
likelihood on logits); Pythae trains the very same encoder and decoder modules (wrapped in its
BaseEncoder / BaseDecoder, sigmoid on the decoder's logits, reconstruction_loss="bce"). Batch 128,
Adam 1e-3, Fashion-MNIST.

1. Training images/s, each measurement in a fresh process (no allocator, thread-pool or cache
   state carried from one to the next), modes interleaved over --rounds rounds, median reported.
   The clock covers the whole training call a user makes: `vaelab.train.fit` (Lightning, logs,
   checkpoints), Pythae's `BaseTrainer.train()`, or the plain loop; one epoch of --steps batches.
   - vaelab default: the default TrainConfig (train.fast=true);
   - vaelab fp32 eager: train.fast=false (NCHW layout, unfused Adam, system allocator);
   - pythae 0.1.2: run by the interpreter of --pythae-python (a separate venv, see below);
   - plain PyTorch: index a uint8 tensor, model.loss, backward, Adam.step; nothing else.
2. Quality: test negative ELBO (one posterior sample per test image, fixed seed) after
   --quality-epochs full epochs, default vs fp32 eager; the check is a relative difference <= 1%.
3. Achieved GFLOP/s of training (FLOPs of forward + backward per image, counted with
   torch.utils.flop_counter, times images/s) against this machine's measured matmul peak in
   fp32 and bf16 (best of square matmuls, same thread count).
4. NLL evaluation with k = --nll-k importance samples on the first --nll-images test images:
   `vaelab.evaluate.nll` vs Pythae's `VAE.get_nll(data, n_samples=k, batch_size=100)` on the same
   trained weights (the quality run's default model); Pythae's call is wrapped in torch.no_grad(),
   which only helps it.
5. With --one-class: wall time of `vaelab bench one-class` over the 10 classes, sequential
   (--jobs 1) vs concurrent (--jobs --one-class-jobs); see one_class_wall_times.

Pythae lives in its own environment so that the main one is not disturbed:
    python -m venv --system-site-packages /work/venv-pythae
    /work/venv-pythae/bin/pip install --no-deps pythae==0.1.2   # its other requirements are already there
Without --pythae-python (or $PYTHAE_PYTHON, or pythae importable here) the Pythae rows are skipped
and the result says so.

    python -m benchmarks throughput --pythae-python /work/venv-pythae/bin/python \
        [--steps 200] [--rounds 3] [--quality-epochs 2] [--nll-images 100] [--nll-k 1000] [--threads N] [--one-class]

--in-process runs every measurement in this process instead of a fresh one each (smoke tests: its
figures carry this process's state from one to the next). The quality and one-class runs go to --runs
(the quality runs are trained anew each call).
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import ROOT, Bench, add_metric_arguments, print_table

BATCH = 128
LR = 1e-3
MODES = ["vaelab-default", "vaelab-fp32-eager", "pythae", "plain-pytorch"]
SMOKE = ["--steps", "1", "--rounds", "1", "--quality-epochs", "1", "--quality-limit", "100", "--quality-test-limit", "100",
         "--nll-images", "10",
         "--nll-k", "4", "--threads", "1", "--matmul-sizes", "64,128", "--in-process"]
NEEDS = ("fashion-mnist",)  # the data its smoke test reads (besides scikit-learn's)


# ---- workers: each runs in its own process and prints one line "RESULT {json}" ---------------
@functools.lru_cache(maxsize=None)  # a worker in its own process loads once; --in-process workers share the loads
def _data(limit: int | None, val_fraction: float, test_limit: int | None = None, seed: int = 0):
    from vaelab.data import DataConfig, load_data

    return load_data(DataConfig(name="fashion-mnist", limit=limit, val_fraction=val_fraction, test_limit=test_limit), seed)


def _vaelab_cfg(fast: bool, epochs: int, device: str, limit: int | None, val_fraction: float, seed: int):
    from vaelab.train import RunConfig

    return RunConfig.build("vae", {
        "data": {"name": "fashion-mnist", "limit": limit, "val_fraction": val_fraction},
        "train": {"epochs": epochs, "batch_size": BATCH, "lr": LR, "fast": fast, "progress_bar": False, "accelerator": device},
        "seed": seed})


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _pythae_model(vaelab_model):
    """A Pythae VAE whose encoder and decoder are the modules of ``vaelab_model`` (shared, not copied)."""
    import torch
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, m):
            super().__init__()
            self.features, self.mu, self.logvar = m.encoder, m.mu, m.logvar

        def forward(self, x):
            h = self.features(x)
            return ModelOutput(embedding=self.mu(h), log_covariance=self.logvar(h).clamp(-30.0, 20.0))

    class Decoder(BaseDecoder):
        def __init__(self, m):
            super().__init__()
            self.net = m.decoder

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    cfg = VAEConfig(input_dim=tuple(vaelab_model.image_shape), latent_dim=vaelab_model.latent_dim, reconstruction_loss="bce")
    return VAE(cfg, encoder=Encoder(vaelab_model), decoder=Decoder(vaelab_model))


def worker_train(a: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    data = _data(a.steps * BATCH, 0.0, test_limit=1000, seed=a.seed)
    train = data[0]
    n = len(train)
    if a.mode.startswith("vaelab"):
        from vaelab.train import fit

        cfg = _vaelab_cfg(a.mode == "vaelab-default", 1, a.device, a.steps * BATCH, 0.0, a.seed)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            fit(cfg, Path(tmp) / "run", data=data)
            _sync(a.device)
            seconds = time.perf_counter() - t0
    elif a.mode == "plain-pytorch":
        from vaelab.models import build, make_config

        torch.manual_seed(a.seed)
        model = build(make_config("vae", {}), train.shape).to(a.device)
        opt = torch.optim.Adam(model.parameters(), lr=LR)
        images = train.images.to(a.device)
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(a.seed)).to(a.device)
        for i in range(0, n, BATCH):
            x = images[perm[i : i + BATCH]].float().div_(255.0)
            loss = model.loss(x).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        _sync(a.device)
        seconds = time.perf_counter() - t0
    elif a.mode == "pythae":
        import logging

        from pythae.data.datasets import BaseDataset
        from pythae.trainers import BaseTrainer, BaseTrainerConfig

        from vaelab.models import build, make_config

        logging.disable(logging.WARNING)
        torch.manual_seed(a.seed)
        model = _pythae_model(build(make_config("vae", {}), train.shape))
        x = train.images.float().div_(255.0)
        dataset = BaseDataset(x, torch.zeros(n))
        with tempfile.TemporaryDirectory() as tmp:
            tc = BaseTrainerConfig(output_dir=tmp, num_epochs=1, per_device_train_batch_size=BATCH, learning_rate=LR,
                                   no_cuda=a.device != "cuda", seed=a.seed)
            t0 = time.perf_counter()
            BaseTrainer(model, train_dataset=dataset, training_config=tc).train()
            _sync(a.device)
            seconds = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown mode {a.mode}")
    return {"mode": a.mode, "images": n, "seconds": seconds, "images_per_s": n / seconds}


def worker_quality(a: argparse.Namespace) -> dict:
    import torch

    from vaelab.evaluate.metrics import elbo_terms
    from vaelab.train import fit

    torch.set_num_threads(a.threads)
    cfg = _vaelab_cfg(a.mode == "vaelab-default", a.quality_epochs, a.device, a.quality_limit, 0.1, a.seed)
    data = _data(a.quality_limit, 0.1, a.quality_test_limit, seed=a.seed)
    run = Path(a.run_dir)
    if run.exists():
        shutil.rmtree(run)
    t0 = time.perf_counter()
    model, (train, _, test) = fit(cfg, run, data=data)
    _sync(a.device)
    seconds = time.perf_counter() - t0
    terms = elbo_terms(model, test, seed=0)
    return {"mode": a.mode, "epochs": a.quality_epochs, "train_images": len(train) * a.quality_epochs, "seconds": seconds,
            "images_per_s": len(train) * a.quality_epochs / seconds, "test_nelbo": terms["nelbo"], "run_dir": str(run)}


def worker_nll(a: argparse.Namespace) -> dict:
    import torch

    import vaelab
    from vaelab.data import ImageSet

    torch.set_num_threads(a.threads)
    test = _data(1000, 0.1, seed=a.seed)[2]
    test = ImageSet(test.images[: a.nll_images], None, "test")
    model = vaelab.load(a.run_dir).to(a.device)
    if a.mode == "vaelab":
        from vaelab.evaluate.likelihood import nll

        t0 = time.perf_counter()
        value = nll(model, test, nll_k=a.nll_k)["nll"]
        _sync(a.device)
    else:
        pm = _pythae_model(model).eval()
        x = test.images.float().div_(255.0).to(a.device)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        with torch.no_grad():
            value = -float(pm.get_nll(x, n_samples=a.nll_k, batch_size=100))
        _sync(a.device)
    seconds = time.perf_counter() - t0
    return {"mode": a.mode, "images": len(test), "k": a.nll_k, "seconds": seconds, "images_per_s": len(test) / seconds, "nll": value}


# ---- the orchestrator --------------------------------------------------------------------------
WORKERS = {"train": worker_train, "quality": worker_quality, "nll": worker_nll}


def _run_worker(python: str, kind: str, a: argparse.Namespace, **over) -> dict:
    if a.in_process:
        return WORKERS[kind](argparse.Namespace(**{**vars(a), **{k: str(v) if isinstance(v, Path) else v for k, v in over.items()}}))
    args = [python, "-m", "benchmarks", "throughput", "--worker", kind, "--threads", str(a.threads), "--device", a.device, "--seed", str(a.seed),
            "--steps", str(a.steps), "--quality-epochs", str(a.quality_epochs), "--nll-images", str(a.nll_images),
            "--nll-k", str(a.nll_k)] + (["--quality-limit", str(a.quality_limit)] if a.quality_limit else []) \
        + (["--quality-test-limit", str(a.quality_test_limit)] if a.quality_test_limit else [])
    for k, v in over.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    p = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"worker {kind} {over} failed (exit {p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def find_pythae(explicit: str | None) -> str | None:
    """The interpreter that has pythae: --pythae-python, $PYTHAE_PYTHON, or this one."""
    for cand in (explicit, os.environ.get("PYTHAE_PYTHON")):
        if cand and subprocess.run([cand, "-c", "import pythae, vaelab"], capture_output=True).returncode == 0:
            return cand
    return sys.executable if importlib.util.find_spec("pythae") is not None else None


def flops_per_training_image(device: str) -> float:
    """FLOPs of one forward + backward pass of the model per image (batch 128; Adam not counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vaelab.models import build, make_config

    model = build(make_config("vae", {}), (1, 28, 28)).to(device)
    x = torch.rand(BATCH, 1, 28, 28, device=device).round()
    counter = FlopCounterMode(display=False)
    with counter:
        model.loss(x).loss.backward()
    return counter.get_total_flops() / BATCH


def matmul_peak(dtype_name: str, device: str, sizes: tuple[int, ...] = (512, 1024, 2048)) -> dict:
    """Best GFLOP/s of square matmuls (of each of ``sizes``; best of 3 each), stopping early where one
    product takes over 2 s (bf16 without hardware support)."""
    import torch

    dtype = getattr(torch, dtype_name)
    best, at = 0.0, None
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        if time.perf_counter() - t0 > 2.0:
            secs = time.perf_counter() - t0
            best, at = max(best, 2 * n**3 / secs / 1e9), at or n
            break
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            _sync(device)
            g = 2 * n**3 / (time.perf_counter() - t0) / 1e9
            if g > best:
                best, at = g, n
    return {"dtype": dtype_name, "gflops": best, "at_size": at}


def cpu_flags() -> dict:
    try:
        flags = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return {}
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}


def one_class_wall_times(epochs: int, jobs: int, out: Path, data: str = "fashion-mnist") -> dict:
    """Wall time of the whole 10-class one-class protocol (`vaelab bench one-class`), once
    sequentially (--jobs 1) and once with --jobs ``jobs`` (concurrent runs, one process each with
    cpu_count // jobs threads; see vaelab.detect.protocol). Fresh output directories, so nothing
    is reused between the two. Returns the seconds of each, their ratio and each run's mean
    ROC-AUC (which should agree: the runs are seeded)."""
    res: dict = {"epochs": epochs, "dataset": data, "jobs": jobs}
    for label, j in (("sequential", 1), ("concurrent", jobs)):
        d = out / f"one-class-{label}"
        cmd = [sys.executable, "-m", "vaelab", "bench", "one-class", "--data", data, "--epochs", str(epochs), "--jobs", str(j),
               "--out", str(d), "--set", "train.progress_bar=false"]
        print("$", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        res[f"{label}_seconds"] = time.perf_counter() - t0
        result = json.loads((d / "one_class.json").read_text())
        res[f"{label}_mean_auroc"] = {s: v["mean"] for s, v in result["auroc"].items()}
    res["speedup"] = res["sequential_seconds"] / res["concurrent_seconds"]
    return res


def arguments(ap: argparse.ArgumentParser) -> None:
    import torch

    ap.add_argument("--steps", type=int, default=200, help="batches of 128 per training-throughput run (one epoch)")
    ap.add_argument("--rounds", type=int, default=3, help="throughput runs per mode, interleaved")
    ap.add_argument("--quality-epochs", type=int, default=2, help="full Fashion-MNIST epochs for the quality check")
    ap.add_argument("--quality-limit", type=int, default=None, help="training images for the quality runs (default: all; "
                    "smaller only to smoke-test this script)")
    ap.add_argument("--quality-test-limit", type=int, default=None, help="test images of the quality check (default: all)")
    add_metric_arguments(ap, nll_k=1000, nll_images=100)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pythae-python", default=None, help="interpreter with pythae 0.1.2 installed")
    ap.add_argument("--one-class", action="store_true", help="also time the 10-class one-class protocol, sequential vs concurrent")
    ap.add_argument("--one-class-epochs", type=int, default=2)
    ap.add_argument("--one-class-jobs", type=int, default=2)
    ap.add_argument("--matmul-sizes", default="512,1024,2048", help="square matmuls timed for the machine's peak")
    ap.add_argument("--in-process", action="store_true", help="every measurement in this process (smoke tests)")
    # worker mode (internal)
    ap.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)


def main(b: Bench) -> None:
    import torch

    a = b.args
    if a.worker:
        print("RESULT " + json.dumps(WORKERS[a.worker](a)), flush=True)
        return

    t_start = time.perf_counter()
    out = b.runs
    out.mkdir(parents=True, exist_ok=True)
    pythae = find_pythae(a.pythae_python)
    if a.in_process and pythae != sys.executable:
        pythae = None  # another interpreter's pythae cannot run in this process
    modes = [m for m in MODES if m != "pythae" or pythae]
    if not pythae:
        print("pythae not found: its rows are skipped. Install it in a separate environment and pass --pythae-python:\n"
              "  python -m venv --system-site-packages /work/venv-pythae && "
              "/work/venv-pythae/bin/pip install --no-deps pythae==0.1.2", flush=True)

    # 1. training throughput, modes interleaved (the order reversed every other round)
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(a.rounds):
        for m in (modes if r % 2 == 0 else modes[::-1]):
            res = _run_worker(pythae if m == "pythae" else sys.executable, "train", a, mode=m)
            runs[m].append(res)
            print(f"round {r + 1}/{a.rounds}  {m:<18} {res['images_per_s']:8.1f} images/s  ({res['seconds']:.1f} s)", flush=True)

    # 2. quality: test -ELBO after the same budget, default vs fp32 eager
    quality = {}
    for m in ("vaelab-default", "vaelab-fp32-eager"):
        quality[m] = _run_worker(sys.executable, "quality", a, mode=m, run_dir=out / f"quality-{m}")
        print(f"quality {m:<18} test -ELBO {quality[m]['test_nelbo']:.3f}  ({quality[m]['images_per_s']:.1f} images/s over "
              f"{a.quality_epochs} epochs)", flush=True)
    d, f = quality["vaelab-default"]["test_nelbo"], quality["vaelab-fp32-eager"]["test_nelbo"]
    quality_check = {"default_test_nelbo": d, "fp32_eager_test_nelbo": f, "relative_difference": abs(d - f) / abs(f),
                     "within_1_percent": abs(d - f) / abs(f) <= 0.01, "epochs": a.quality_epochs,
                     "training_images": a.quality_limit or "all", "test_images": a.quality_test_limit or "all"}

    # 3. FLOPs and the machine's matmul peak
    torch.set_num_threads(a.threads)
    flops = flops_per_training_image(a.device)
    sizes = tuple(int(n) for n in a.matmul_sizes.split(","))
    peaks = {p["dtype"]: p for p in (matmul_peak("float32", a.device, sizes), matmul_peak("bfloat16", a.device, sizes))}

    rows = []
    for m in modes:
        ips = statistics.median(r["images_per_s"] for r in runs[m])
        rows.append({"mode": m, "images_per_s": ips, "runs_images_per_s": [r["images_per_s"] for r in runs[m]],
                     "gflops": ips * flops / 1e9, "fraction_of_fp32_peak": ips * flops / 1e9 / peaks["float32"]["gflops"]})
    by = {r["mode"]: r for r in rows}
    for r in rows:
        r["x_vs_fp32_eager"] = r["images_per_s"] / by["vaelab-fp32-eager"]["images_per_s"]
        if "pythae" in by:
            r["x_vs_pythae"] = r["images_per_s"] / by["pythae"]["images_per_s"]

    # 4. NLL evaluation on the default quality run's weights
    nll_rows = [_run_worker(sys.executable, "nll", a, mode="vaelab", run_dir=quality["vaelab-default"]["run_dir"])]
    if pythae:
        nll_rows.append(_run_worker(pythae, "nll", a, mode="pythae", run_dir=quality["vaelab-default"]["run_dir"]))
    for r in nll_rows:
        print(f"nll {r['mode']:<8} k={r['k']}  {r['images_per_s']:.2f} images/s  nll {r['nll']:.2f}", flush=True)
    nll_result = {r["mode"]: r for r in nll_rows}
    if pythae:
        nll_result["x_vaelab_vs_pythae"] = nll_result["vaelab"]["images_per_s"] / nll_result["pythae"]["images_per_s"]

    one_class = one_class_wall_times(a.one_class_epochs, a.one_class_jobs, out) if a.one_class else None

    print()
    print_table(rows, ["mode", "images_per_s", "x_vs_fp32_eager", "x_vs_pythae", "gflops", "fraction_of_fp32_peak"])
    print(f"\ntraining FLOPs per image (forward + backward): {flops / 1e6:.2f} MFLOP; matmul peak: "
          f"fp32 {peaks['float32']['gflops']:.1f} GFLOP/s, bf16 {peaks['bfloat16']['gflops']:.1f} GFLOP/s ({a.threads} threads)")
    print(f"quality: test -ELBO default {d:.3f} vs fp32 eager {f:.3f}: relative difference "
          f"{quality_check['relative_difference'] * 100:.3f}% ({'within' if quality_check['within_1_percent'] else 'NOT within'} 1%)")
    if pythae:
        print(f"NLL (k={a.nll_k}): vaelab {nll_result['vaelab']['images_per_s']:.2f} vs pythae "
              f"{nll_result['pythae']['images_per_s']:.2f} images/s: x{nll_result['x_vaelab_vs_pythae']:.2f}")
    if one_class:
        print(f"one-class protocol ({a.one_class_epochs} epochs): sequential {one_class['sequential_seconds']:.0f} s, "
              f"--jobs {a.one_class_jobs} {one_class['concurrent_seconds']:.0f} s: x{one_class['speedup']:.2f}")
    b.write(rows, in_process=a.in_process, dataset="fashion-mnist", batch_size=BATCH, steps_per_run=a.steps, rounds=a.rounds,
                 threads=a.threads, device=a.device, pythae_python=pythae, quality=quality_check, quality_runs=quality,
                 training_flops_per_image=flops, matmul_peak=peaks, cpu_flags=cpu_flags(), nll=nll_result,
                 one_class=one_class, wall_seconds=time.perf_counter() - t_start)

