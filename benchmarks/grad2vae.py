"""grad2vae on Fashion-MNIST (28x28): the cost of its second-order attention, its convergence in
one-class anomaly detection against the plain VAE, and its one-class table.

(a) attention cost: the attention step (all d units' Hessian-vector products d^2 z_i / dL_e1^2 @ 1
    of one batch) by the chain path (the default: vaelab.nn.second_order), torch.func's reverse over
    forward (fast), the reference (vmap of forward-over-reverse products) and the Python loop over
    units, on the default 28x28 model (latent 16, conv_channels [8, 16]); forward only and forward +
    backward (as in training), median seconds per batch over --repeats; then one whole optimisation
    step of grad2vae with aggregation conv, sum and mean (the default chain path), conv on the
    reference and fast paths, sum on the fast path, without the attention (attention_weight 0), and
    of the default conv vae, on the same batch, the variants taking turns step by step:
    ``step_ratio_vs_vae`` = {conv, sum, mean, reference_conv, ...}. Each step runs as the trainer runs it
    with train.fast=true (--step-path trainer, the default: channels_last and the kept allocator on
    the CPU, the fused Adam); --step-path plain times the fp32 NCHW step with the plain Adam. conv,
    sum and mean are compiled, as train.compile=auto trains grad2vae on a long run; conv_eager,
    sum_eager and mean_eager are the same steps uncompiled; the VAE's step is eager (its faster
    path; vae_compiled is listed). The compile is timed cold (first step and first no-grad call
    with a fresh inductor cache) and set against what each step saves: ``compile_break_even_steps``.
(b) convergence: for each of --conv-classes, train on that class only and, after each of the first
    --conv-epochs epochs, score the whole test set with the detection package's default score
    (AutoencoderDetector, as the one-class protocol does) and record the ROC-AUC (anomaly = another
    class). Models: grad2vae; grad2vae with model.attention_weight=0 (the same network without the
    attention: the ablation); and the default conv vae of about the same size (1.69 M vs 1.63 M
    parameters). Training continues epoch by epoch by resuming the run (the trainer's resume is
    exact: same batches, same noise), so the curve is that of one --conv-epochs run.
(d) attention artefacts: for each encoder variant (the 4x4 stride-2 halving, or 2x2 average pooling
    then a 3x3 convolution; zero or circular padding), train grad2vae on each of --art-classes and measure
    on the test set's normal and anomalous images (--art-images of each) the checkerboard, corner and
    border indices of the attention maps (``_artefact_indices``), for the untrained network and the
    trained one, and the default score's ROC-AUC; figures under --art-figures (one per variant and
    class). Trained runs in --runs are reused.
(e) the paper's protocol (its Table 1): the one-class protocol on every class of each of
    --protocol-datasets, for each of --protocol-models, at --protocol-epochs epochs with the paper's
    schedule (train.schedule=paper: learning rate 1e-3, divided by 100 after half the epochs; batch
    128), scored by nelbo (the paper's score), mse and the library's default combo from the same
    models; with --limit the training images of each class are cut (said in the results). Finished
    classes are reused and an interrupted class resumes from its checkpoint, so the run can be
    completed over several sittings. Results: benchmarks/results/grad2vae_protocol.json (one entry
    per dataset and model, merged with earlier calls).
(f) the paper's convergence figure: --curve-classes (default shirt and pullover, the hardest two) of
    Fashion-MNIST as the normal class, every training image, --curve-epochs (default 100) at the paper's
    settings, for grad2vae and the vae (--curve-models), the test ROC-AUC after every epoch by nelbo and
    mse and by the default combo after every --curve-combo-every-th; every scored epoch is written at
    once, and a killed call resumes from the last one while --runs is there. Results:
    benchmarks/results/grad2vae_curve.json. One process per class runs the classes side by side.
(c) the one-class table of grad2vae through vaelab.detect.one_class_protocol (every class by
    default, --table-epochs epochs, --seeds seeds), beside the same protocol for each of
    --table-baselines (default: the plain vae) at the same budget.

A run of some parts keeps the other parts' results already in grad2vae.json (each part records
the command and settings it ran with), so the parts can be run at different times.

Results: benchmarks/results/grad2vae.json (--dry-run: a temporary directory instead).

The full run (all three parts, the defaults):

    OMP_NUM_THREADS=<cores> python benchmarks/grad2vae.py --runs runs/bench-grad2vae

--runs keeps the run directories (rerun into the same one to resume part (c)); --parts a,b,c picks
parts. Smoke test (minutes):

    OMP_NUM_THREADS=1 python benchmarks/grad2vae.py --dry-run --batch 32 --repeats 1 --conv-classes 0 \\
        --conv-epochs 2 --table-classes 0,1 --table-epochs 1 --limit 300 --test-limit 500
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _common  # noqa: E402
from _common import print_table, write_result  # noqa: E402

DATASET = "fashion-mnist"
PART_OF = {"attention_cost": "a", "step_ratio_vs_vae": "a", "convergence": "b", "one_class": "c", "one_class_baselines": "c",
           "artefacts": "d"}
# (d) the encoder variants whose attention maps are measured for artefacts
ARTEFACT_VARIANTS = {"stride-zeros": {}, "stride-circular": {"padding": "circular"}, "pool-zeros": {"downsample": "pool"},
                     "pool-circular": {"padding": "circular", "downsample": "pool"}}
CONV_MODELS = {"grad2vae": ("grad2vae", {}), "grad2vae-noatt": ("grad2vae", {"attention_weight": 0.0}), "vae": ("vae", {})}


def _median_seconds(fn, repeats: int) -> float:
    import torch

    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def attention_cost(batch: int, repeats: int, latent_dim: int, device: str, seed: int, step_path: str = "trainer") -> list[dict]:
    import torch

    from vaelab.data import DataConfig, load_data
    from vaelab.models import build, make_config

    x = load_data(DataConfig(name=DATASET, limit=batch, val_fraction=0.0, test_limit=1), seed)[0].float().to(device)
    torch.manual_seed(seed)
    model = build(make_config("grad2vae", {"latent_dim": latent_dim}), (1, 28, 28)).to(device)
    vae = build(make_config("vae", {"latent_dim": latent_dim}), (1, 28, 28)).to(device)
    eps = torch.randn(len(x), latent_dim, device=device)

    def units(impl):
        def run(le1, e):
            model.config.attention_impl = impl
            return model.second_order_attention(le1, e)
        return run

    paths = {"chain": units("chain"), "fast": units("fast"), "vmap": units("reference"),
             "loop": model.second_order_attention_loop}

    def attention(fn, backward: bool):
        def run():
            model.zero_grad(set_to_none=True)
            att = fn(model.first_layer(x), eps)
            if backward:
                att.pow(2).sum().backward()
        return run

    with torch.no_grad():  # the numbers agree before they are timed
        le1 = model.first_layer(x)
        got = {k: fn(le1, eps) for k, fn in paths.items()}
    same = {f"{k}_equals_vmap": bool(torch.allclose(got[k], got["vmap"], rtol=1e-4, atol=1e-6)) for k in ("chain", "fast", "loop")}
    rows = []
    for mode, backward in (("forward", False), ("forward+backward", True)):
        t = {k: _median_seconds(attention(fn, backward), repeats) for k, fn in paths.items()}
        rows.append({"part": "a", "what": f"attention {mode}", "batch": len(x), "units": latent_dim,
                     **{f"{k}_s": v for k, v in t.items()}, "vmap_over_chain": t["vmap"] / t["chain"], **same})
    # one optimisation step of each variant, in blocks of --repeats steps after a warm-up step (the
    # steady state of a training run, whose allocator and caches serve one variant), the blocks taken
    # in two rounds so that a slower or faster spell of the machine falls on every variant.
    # conv, sum and mean: the default chain path as the trainer runs a long run (train.compile=auto:
    # torch.compile of the loss, which grad2vae declares pays); *_eager: the same step uncompiled
    # (train.compile=false, and a run too short for auto); the other paths eager
    variants = {"conv": ({}, True), "sum": ({"aggregation": "sum"}, True), "mean": ({"aggregation": "mean"}, True),
                "conv_eager": ({}, False), "sum_eager": ({"aggregation": "sum"}, False),
                "mean_eager": ({"aggregation": "mean"}, False),
                "reference_conv": ({"attention_impl": "reference"}, False), "conv_fast": ({"attention_impl": "fast"}, False),
                "sum_fast": ({"aggregation": "sum", "attention_impl": "fast"}, False),
                "no_attention": ({"attention_weight": 0.0}, False)}
    models = {"vae": vae}
    compiled = {"vae_compiled"}
    for name, (opts, comp) in variants.items():
        torch.manual_seed(seed)
        models[name] = build(make_config("grad2vae", {"latent_dim": latent_dim, **opts}), (1, 28, 28)).to(device)
        if comp:
            compiled.add(name)
    torch.manual_seed(seed)
    models["vae_compiled"] = build(make_config("vae", {"latent_dim": latent_dim}), (1, 28, 28)).to(device)
    # the compiled losses' noise drawn by the eager generator (fallback_random), so that the first
    # gradients can be checked against the eager step's on the same weights and the same eps before
    # anything is timed; the compile itself timed cold (a fresh cache folder, as on a new machine)
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="vaelab-inductor-")
    # step_path trainer: every model's step as the trainer runs it with train.fast=true (its default):
    # on the CPU glibc's allocator kept from trimming, conv models and their images in channels_last,
    # the fused Adam step; plain: the eager fp32 NCHW step with the plain Adam (train.fast=false)
    xs = {k: x for k in models}
    fused = step_path == "trainer" and device in ("cpu", "cuda")
    if step_path == "trainer" and device == "cpu":
        from vaelab.train.speed import tune_cpu_allocator

        tune_cpu_allocator()
        for k, m in models.items():
            m.to(memory_format=torch.channels_last)
            xs[k] = x.contiguous(memory_format=torch.channels_last)
    losses = {k: (torch.compile(m.loss) if k in compiled else m.loss) for k, m in models.items()}
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3, **({"fused": True} if fused else {})) for k, m in models.items()}

    def grads(name):
        models[name].zero_grad(set_to_none=True)
        torch.manual_seed(seed + 1)
        losses[name](xs[name]).loss.backward()
        out = {n: q.grad.clone() for n, q in models[name].named_parameters() if q.grad is not None}
        models[name].zero_grad(set_to_none=True)
        return out

    def step(name):
        opts[name].zero_grad(set_to_none=True)
        losses[name](xs[name]).loss.backward()
        opts[name].step()

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def no_grad_loss(name):
        with torch.no_grad():  # validation's graph, which torch.compile builds on its first no-grad call
            losses[name](xs[name])

    # what compiling costs: each compiled grad2vae variant's first training step (dynamo, inductor's
    # forward and backward graphs, the C++ kernels' build) and its first no-grad call (validation)
    first = {k: {"train_step_s": timed(lambda k=k: grads(k)), "no_grad_call_s": timed(lambda k=k: no_grad_loss(k))}
             for k in variants if k in compiled}
    eager_g, compiled_g = grads("conv_eager"), grads("conv")
    compiled_error = max(float((compiled_g[n] - g).abs().max() / g.abs().max().clamp_min(1e-12)) for n, g in eager_g.items())

    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(2):
        for name in models:
            step(name)  # warm-up
            for _ in range(repeats):
                times[name].append(timed(lambda name=name: step(name)))
    eager_eval = {k: statistics.median([timed(lambda k=k: no_grad_loss(k)) for _ in range(3)]) for k in ("conv", "conv_eager")}
    step_s = {k: statistics.median(v) for k, v in times.items()}
    # the steps after which the compile has paid for itself: its cost over the eager path (the first step
    # and the first validation call, less what they would take eager) divided by what each step saves
    compile_cost = {}
    for k in first:
        eager = f"{k}_eager"
        overhead = first[k]["train_step_s"] + first[k]["no_grad_call_s"] - step_s[eager] - eager_eval["conv_eager"]
        saved = step_s[eager] - step_s[k]
        compile_cost[k] = {**first[k], "overhead_s": overhead, "saved_per_step_s": saved,
                           "break_even_steps": overhead / saved if saved > 0 else None}
    vae_s = step_s.pop("vae")  # the ratios are to the VAE's eager step (its faster one: vae_compiled is listed too)
    rows.append({"part": "a", "what": "training step (loss, backward, Adam)", "batch": len(x), "units": latent_dim,
                 "grad2vae_s": step_s["conv"], "vae_s": vae_s, "grad2vae_over_vae": step_s["conv"] / vae_s,
                 "step_s": step_s, "step_ratio_vs_vae": {k: v / vae_s for k, v in step_s.items()},
                 "compiled": sorted(compiled), "compile_cost": compile_cost,
                 "compile_break_even_steps": (None if any(c["break_even_steps"] is None for c in compile_cost.values())
                                              else max(c["break_even_steps"] for c in compile_cost.values())),
                 "conv_compiled_max_relative_gradient_error": compiled_error,
                 "conv_compiled_equals_eager": bool(compiled_g.keys() == eager_g.keys() and compiled_error <= 1e-4),
                 "grad2vae_parameters": model.num_parameters(), "vae_parameters": vae.num_parameters(),
                 "torch_threads": torch.get_num_threads(), "step_path": step_path})
    return rows


def _auroc(model, train, test, c: int, seed: int, batch_size: int) -> float:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from vaelab.detect import DEFAULT_SCORE, AutoencoderDetector

    y = (test.labels != c).numpy().astype(np.int64)
    det = AutoencoderDetector(model, DEFAULT_SCORE, normalize=False, seed=seed, batch_size=batch_size).fit(train)
    return float(roc_auc_score(y, det.raw_scores(test)))


def convergence(classes: list[int], epochs: int, limit: int | None, test_limit: int | None, seed: int,
                runs: Path, models: list[str] | None = None, paper_schedule: bool = False) -> list[dict]:
    from vaelab.config import deep_merge
    from vaelab.data import load_data
    from vaelab.train import RunConfig, fit

    rows = []
    for c in classes:
        data = None
        for label, (name, model_opts) in CONV_MODELS.items():
            if models is not None and label not in models:
                continue
            # the paper's schedule as a fixed milestone (train.schedule=paper would move it with the
            # growing train.epochs of the epoch-by-epoch runs)
            sched = {"schedule": "step", "step_milestones": [epochs // 2], "step_gamma": 0.01} if paper_schedule else {}
            base = {"data": {"name": DATASET, "classes": [c], "limit": limit, "test_limit": test_limit},
                    "model": model_opts, "train": {"progress_bar": False, **sched}, "seed": seed}
            run_dir = runs / "convergence" / f"class{c}-{label}"
            if run_dir.exists():
                import shutil

                shutil.rmtree(run_dir)
            if data is None:
                data = load_data(RunConfig.build(name, base).data, seed)
            train, _, test = data
            seconds = 0.0
            for e in range(1, epochs + 1):
                cfg = RunConfig.build(name, deep_merge(base, {"train": {"epochs": e}}))
                t0 = time.perf_counter()
                model, _ = fit(cfg, run_dir, resume=e > 1, data=data)
                seconds += time.perf_counter() - t0
                auc = _auroc(model, train, test, c, seed, cfg.train.eval_batch_size)
                rows.append({"part": "b", "class": c, "model": label, "epoch": e, "auroc": auc, "train_seconds": seconds,
                             "parameters": model.num_parameters(), "epochs": epochs, "limit": limit,
                             "schedule": "paper" if paper_schedule else "constant"})
                print(f"  class {c} {label:<15} epoch {e:>2}: ROC-AUC {auc:.4f} ({seconds:.0f} s)", flush=True)
    return rows


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
              runs: Path, figures: Path | None) -> list[dict]:
    import torch

    from vaelab.api.explain import explain_run
    from vaelab.config import deep_merge
    from vaelab.data import load_data
    from vaelab.models import build, make_config
    from vaelab.train import RunConfig, fit

    rows = []
    for c in classes:
        data = None
        for label, opts in ARTEFACT_VARIANTS.items():
            base = {"data": {"name": DATASET, "classes": [c], "limit": limit, "test_limit": test_limit},
                    "model": opts, "train": {"progress_bar": False, "epochs": epochs}, "seed": seed}
            cfg = RunConfig.build("grad2vae", deep_merge(base, {}))
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
            fresh = build(make_config("grad2vae", opts), tuple(x.shape[1:]))
            t0 = time.perf_counter()
            checkpoint = run_dir / "checkpoints" / "last.ckpt"
            done = (run_dir / "model.safetensors").is_file() and not checkpoint.is_file()
            reused = run_dir.exists()  # an earlier call trained it (wholly or in part): its time is not this call's
            if done:
                from vaelab import load

                model = load(run_dir)
            else:
                model, _ = fit(cfg, run_dir, resume=checkpoint.is_file(), data=data)
            seconds = time.perf_counter() - t0
            row = {"part": "d", "class": c, "variant": label, **opts, "epochs": epochs, "parameters": model.num_parameters(),
                   "train_seconds": None if reused else seconds,
                   "auroc": _auroc(model, train, test, c, seed, cfg.train.eval_batch_size)}
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


def one_class_table(model: str, classes: list[int] | None, epochs: int, seeds: int, limit: int | None,
                    test_limit: int | None, runs: Path) -> dict:
    from vaelab.detect import DEFAULT_SCORE, one_class_protocol

    overrides = {"data": {k: v for k, v in {"limit": limit, "test_limit": test_limit}.items() if v is not None}}
    out = runs / "one-class" if model == "grad2vae" else runs / f"one-class-{model}"
    result = one_class_protocol(DATASET, model, epochs, seeds, classes, DEFAULT_SCORE,
                                overrides if overrides["data"] else None, out, log=print)
    return {k: result[k] for k in ("auroc", "classes", "seeds", "class_names", "scores", "epochs", "seconds", "table", "runs")}


PAPER_TABLE1_MEAN = {"mnist": 0.9823, "fashion-mnist": 0.9639}  # Grad2VAE's Table 1 means, as the issue quotes them
PROTOCOL_SCORES = ("nelbo", "mse", "combo")


def _entry_key(model: str, limit: int | None) -> str:
    """The results key of a protocol entry: the model, with the training images' cut when there is one."""
    return model if limit is None else f"{model}-limit{limit}"


def _locked_update(path: Path, benchmark: str, update) -> None:
    """Read ``path``'s results, let ``update(results)`` change them in place, and write the file back
    atomically under an exclusive lock, so that several processes (one per dataset or class, say)
    can write into one file."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.is_file() else {}
        results = old.get("results", {})
        update(results)
        payload = {"benchmark": benchmark, "date": time.strftime("%Y-%m-%d"),
                   "command": " ".join(["python"] + sys.argv), "results": results}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(path)


def _locked_merge(path: Path, ds: str, key: str, entry: dict) -> None:
    """Put ``entry`` at results[ds][key] of ``path`` (see _locked_update). An entry of an earlier
    version under the bare model name with a cut of the training images moves to its own key."""
    def update(results: dict) -> None:
        per_ds = results.setdefault(ds, {})
        for name, e in list(per_ds.items()):
            if "settings" not in e and e.get("training_images_per_class") is not None and name == e.get("model"):
                per_ds[_entry_key(name, e["training_images_per_class"])] = per_ds.pop(name)
        per_ds[key] = entry

    _locked_update(path, "grad2vae_protocol", update)


def protocol_markdown(path: Path, limit: int | None = None) -> str:
    """The per-class table of part (e) from grad2vae_protocol.json, as the README shows it: one row per
    class, for each dataset grad2vae's and the vae's ROC-AUC by nelbo / mse / combo ('-' where a class
    is not finished), the means over the finished classes and the paper's Table 1 mean."""
    results = json.loads(path.read_text())["results"]
    cols, names = [], {}
    for ds in ("mnist", "fashion-mnist"):
        for model in ("grad2vae", "vae"):
            entry = results.get(ds, {}).get(_entry_key(model, limit))
            cols.append((ds, model, entry))
            if entry:
                names[ds] = entry["class_names"]

    def cell(entry: dict | None, c: int | None) -> str:
        if not entry:
            return "-"
        au = entry["auroc"]
        if c is None:
            done = len(entry.get("classes_done", entry["classes"]))
            return "**" + " / ".join(f"{au[s]['mean']:.3f}" for s in PROTOCOL_SCORES) + "**" + ("" if done == 10 else f" ({done})")
        row = {s: au[s]["per_class"].get(str(c)) for s in PROTOCOL_SCORES}
        return "-" if any(v is None for v in row.values()) else " / ".join(f"{row[s]['mean']:.3f}" for s in PROTOCOL_SCORES)

    head = ["class"] + [f"{'MNIST' if ds == 'mnist' else 'Fashion-MNIST'} {m} " + " / ".join(PROTOCOL_SCORES)
                        for ds, m, _ in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in range(10):
        label = " / ".join(str(names[ds][c]) for ds in ("mnist", "fashion-mnist") if ds in names and c < len(names[ds]))
        lines.append("| " + " | ".join([label or str(c)] + [cell(e, c) for _, _, e in cols]) + " |")
    paper = ", ".join(f"{'MNIST' if ds == 'mnist' else 'F-MNIST'} {v:.3f}" for ds, v in PAPER_TABLE1_MEAN.items())
    lines.append("| " + " | ".join([f"mean (paper, nelbo: {paper})"] + [cell(e, None) for _, _, e in cols]) + " |")
    return "\n".join(lines)


def paper_protocol(datasets: list[str], models: list[str], epochs: int, limit: int | None, test_limit: int | None,
                   runs: Path, dry_run: bool, classes: list[int] | None = None, compile_models: tuple[str, ...] = ()) -> None:
    """(e), one class at a time: every finished class is written to grad2vae_protocol.json at once,
    with the full record of its run, and a later call with the same settings puts those records back
    into --runs before it starts (a run folder that is gone, a new machine), so the protocol goes on
    from the classes it finished, across sittings; an interrupted class resumes from its checkpoint
    while its run folder is there."""
    from vaelab.detect import one_class_protocol
    from vaelab.detect.protocol import format_table, summarise

    path = _common.RESULTS / "grad2vae_protocol.json"
    if dry_run:
        path = Path(tempfile.mkdtemp(prefix="vaelab-dry-run-")) / "grad2vae_protocol.json"
    data = {k: v for k, v in {"limit": limit, "test_limit": test_limit}.items() if v is not None}
    for ds in datasets:
        for model in models:
            train = {"schedule": "paper", "batch_size": 128, "lr": 1e-3, **({"compile": True} if model in compile_models else {})}
            overrides = {"train": train, **({"data": data} if data else {})}
            settings = {"epochs": epochs, "overrides": overrides}
            old = (json.loads(path.read_text()).get("results", {}).get(ds, {}).get(_entry_key(model, limit), {})
                   if path.is_file() else {})
            finished = {int(c): row for c, row in old.get("finished_runs", {}).items()} if old.get("settings") == settings else {}
            out_dir = runs / "protocol" / ds / model
            for c, row in finished.items():  # the records of the classes finished before, where their folders are gone
                done = out_dir / "runs" / f"class{c}-seed0" / "result.json"
                if not done.is_file():
                    done.parent.mkdir(parents=True, exist_ok=True)
                    done.write_text(json.dumps(row, indent=2) + "\n")
            names: list[str] = []
            todo = classes if classes is not None else list(range(10))
            for c in todo:
                t0 = time.perf_counter()
                r = one_class_protocol(ds, model, epochs, 1, [c], list(PROTOCOL_SCORES), overrides, out_dir, log=print)
                names = r["class_names"]
                finished[c] = json.loads((out_dir / "runs" / f"class{c}-seed0" / "result.json").read_text())
                done_classes = sorted(finished)
                summary = summarise(list(finished.values()), list(PROTOCOL_SCORES), done_classes, [0], names)
                entry = {"dataset": ds, "model": model, "epochs": epochs, "schedule": "paper", "settings": settings,
                         "training_images_per_class": limit, "test_images": test_limit,
                         "complete": len(done_classes) == 10, "classes_done": done_classes,
                         "paper_table1_mean": PAPER_TABLE1_MEAN.get(ds),
                         "train_seconds": sum(row["train_seconds"] for row in finished.values()),
                         **{k: summary[k] for k in ("auroc", "classes", "class_names", "scores")},
                         "table": format_table({**summary, "dataset": ds, "model": model, "epochs": epochs}),
                         "finished_runs": {str(k): v for k, v in sorted(finished.items())}}
                _locked_merge(path, ds, _entry_key(model, limit), entry)
                means = ", ".join(f"{sc} {summary['auroc'][sc]['mean']:.4f}" for sc in PROTOCOL_SCORES)
                print(f"(e) {ds} {model}: class {c} done in {time.perf_counter() - t0:.0f} s; classes {done_classes}: "
                      f"mean ROC-AUC {means}; wrote {path}", flush=True)


CURVE_SCORES = ("nelbo", "mse")  # (f) scored after every epoch; the default combo every --curve-combo-every


def paper_curve(classes: list[int], models: list[str], epochs: int, combo_every: int, limit: int | None,
                test_limit: int | None, seed: int, runs: Path, dry_run: bool) -> None:
    """(f) the paper's convergence figure: each of ``classes`` of Fashion-MNIST as the normal class,
    every training image, ``epochs`` epochs at the paper's settings (batch 128, learning rate 1e-3
    divided by 100 after half the epochs, as a fixed milestone), the test ROC-AUC and average precision
    after every epoch by nelbo and mse, and by the default combo after every ``combo_every``-th epoch
    (and the first and last); --limit / --test-limit cut the images (a smoke test). Each epoch resumes the run (exact resume), and its scores go at once
    into the run folder's curve.json and into benchmarks/results/grad2vae_curve.json, so a killed
    call continues from the last scored epoch while its run folder is there."""
    import shutil

    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    from vaelab.config import deep_merge
    from vaelab.data import load_data
    from vaelab.detect import DEFAULT_SCORE, AutoencoderDetector
    from vaelab.train import RunConfig, fit

    path = (Path(tempfile.mkdtemp(prefix="vaelab-dry-run-")) if dry_run else _common.RESULTS) / "grad2vae_curve.json"
    train_opts = {"schedule": "step", "step_milestones": [epochs // 2], "step_gamma": 0.01, "batch_size": 128, "lr": 1e-3,
                  "progress_bar": False}
    for c in classes:
        data = None
        for label in models:
            name, model_opts = CONV_MODELS[label]
            cut = {k: v for k, v in {"limit": limit, "test_limit": test_limit}.items() if v is not None}
            base = {"data": {"name": DATASET, "classes": [c], **cut}, "model": model_opts, "train": train_opts, "seed": seed}
            settings = {"epochs": epochs, "combo_every": combo_every, "config": base}
            run_dir = runs / "curve" / f"class{c}-{label}"
            saved = run_dir / "curve.json"
            rows: list[dict] = []
            if saved.is_file():
                old = json.loads(saved.read_text())
                if old["settings"] != settings:
                    raise SystemExit(f"{run_dir} holds a curve of other settings; give another --runs")
                rows = old["rows"]
            elif run_dir.exists():
                shutil.rmtree(run_dir)  # killed before its first epoch was scored: start it again
            if data is None:
                data = load_data(RunConfig.build(name, base).data, seed)
            train, _, test = data
            y = (test.labels != c).numpy().astype(np.int64)
            seconds = rows[-1]["train_seconds"] if rows else 0.0
            for e in range(len(rows) + 1, epochs + 1):
                cfg = RunConfig.build(name, deep_merge(base, {"train": {"epochs": e}}))
                t0 = time.perf_counter()
                model, _ = fit(cfg, run_dir, resume=e > 1, data=data)
                seconds += time.perf_counter() - t0
                scores = list(CURVE_SCORES) + ([DEFAULT_SCORE] if e in (1, epochs) or e % combo_every == 0 else [])
                row = {"epoch": e, "lr": cfg.train.lr * (0.01 if e > epochs // 2 else 1.0), "train_seconds": seconds,
                       "auroc": {}, "average_precision": {}}
                for sc in scores:
                    # nelbo's and mse's raw scores of the test images do not depend on the images the
                    # detector is fitted on (the combo's z-scores do): a few spare their training scores
                    det = AutoencoderDetector(model, sc, normalize=False, seed=seed,
                                              batch_size=cfg.train.eval_batch_size).fit(train if sc == DEFAULT_SCORE
                                                                                        else train.subset(range(256)))
                    raw = det.raw_scores(test)
                    row["auroc"][sc] = float(roc_auc_score(y, raw))
                    row["average_precision"][sc] = float(average_precision_score(y, raw))
                rows.append(row)
                saved.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
                entry = {"dataset": DATASET, "class": c, "class_name": test.class_names[c], "model": label,
                         "parameters": model.num_parameters(), "settings": settings, "complete": e == epochs,
                         "rows": rows}

                def update(results: dict, entry=entry) -> None:
                    results.setdefault(DATASET, {}).setdefault(entry["model"], {})[str(entry["class"])] = entry

                _locked_update(path, "grad2vae_curve", update)
                print(f"(f) class {c} {label:<8} epoch {e:>3}: ROC-AUC " +
                      ", ".join(f"{sc} {v:.4f}" for sc, v in row["auroc"].items()) + f" ({seconds:.0f} s)", flush=True)
    print(f"(f) wrote {path}")


def curve_figure(path: Path, out: Path) -> None:
    """The figure of part (f) from grad2vae_curve.json: one panel per class, test ROC-AUC per epoch of
    each model by nelbo (dashed), mse (dotted) and the combo (markers, where scored)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaelab.detect import DEFAULT_SCORE
    from vaelab.fileio import atomic_write_figure

    per_model = json.loads(path.read_text())["results"][DATASET]
    classes = sorted({int(c) for entries in per_model.values() for c in entries})
    fig, axes = plt.subplots(1, len(classes), figsize=(5.2 * len(classes), 3.8), squeeze=False)
    colours = {"grad2vae": "tab:red", "vae": "tab:blue", "grad2vae-noatt": "tab:green"}
    for ax, c in zip(axes[0], classes):
        name = ""
        for model, entries in per_model.items():
            entry = entries.get(str(c))
            if not entry:
                continue
            name = entry["class_name"]
            rows = entry["rows"]
            colour = colours.get(model, "black")
            for sc, style in (("nelbo", "--"), ("mse", ":")):
                ax.plot([r["epoch"] for r in rows], [r["auroc"][sc] for r in rows], style, color=colour,
                        label=f"{model} {sc}")
            combo = [r for r in rows if DEFAULT_SCORE in r["auroc"]]
            ax.plot([r["epoch"] for r in combo], [r["auroc"][DEFAULT_SCORE] for r in combo], "o-", ms=3,
                    color=colour, label=f"{model} {DEFAULT_SCORE}")
            half = entry["settings"]["epochs"] // 2
        ax.axvline(half + 0.5, color="grey", lw=0.8)
        ax.set_title(f"Fashion-MNIST, normal class {c} ({name}); lr / 100 after epoch {half}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test ROC-AUC")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    atomic_write_figure(fig, out, dpi=110)
    plt.close(fig)
    print(f"(f) figure: {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="a,b,c", help="which parts to run (default a,b,c)")
    ap.add_argument("--batch", type=int, default=128, help="(a) images per batch (default 128)")
    ap.add_argument("--repeats", type=int, default=5, help="(a) timed repeats, median reported (default 5)")
    ap.add_argument("--latent-dim", type=int, default=16, help="(a) latent units (default 16, the models' default)")
    ap.add_argument("--step-path", choices=["trainer", "plain"], default="trainer",
                    help="(a) time each step as the trainer runs it with train.fast=true (channels_last on the CPU, "
                         "the fused Adam, the kept allocator; default) or the plain fp32 NCHW step (train.fast=false)")
    ap.add_argument("--device", default=None, help="(a) cpu or cuda (default: cuda when available)")
    ap.add_argument("--conv-classes", default="0,4,8", help="(b) normal classes (default 0,4,8)")
    ap.add_argument("--conv-epochs", type=int, default=10, help="(b) epochs, scored after each (default 10)")
    ap.add_argument("--conv-models", default=None, help=f"(b) which of {','.join(CONV_MODELS)} (default all)")
    ap.add_argument("--conv-paper-schedule", action="store_true", help="(b) lr / 100 after half of --conv-epochs")
    ap.add_argument("--curve-classes", default="6,2", help="(f) normal classes (default 6,2: shirt, pullover)")
    ap.add_argument("--curve-models", default="grad2vae,vae", help=f"(f) which of {','.join(CONV_MODELS)} (default grad2vae,vae)")
    ap.add_argument("--curve-epochs", type=int, default=100, help="(f) epochs, lr / 100 after half (default 100)")
    ap.add_argument("--curve-combo-every", type=int, default=5, help="(f) the default combo scored every N epochs (default 5)")
    ap.add_argument("--curve-figure", default=None, help="(f) draw grad2vae_curve.json's curves into this PNG and stop")
    ap.add_argument("--table-classes", default=None, help="(c) normal classes (default: all 10)")
    ap.add_argument("--table-epochs", type=int, default=10, help="(c) epochs per run (default 10)")
    ap.add_argument("--seeds", type=int, default=1, help="(c) seeds per class (default 1)")
    ap.add_argument("--table-baselines", default="vae", help="(c) models run through the same protocol beside grad2vae "
                                                             "(comma list; default vae; '' for none)")
    ap.add_argument("--art-classes", default="0,6", help="(d) normal classes (default 0,6)")
    ap.add_argument("--art-epochs", type=int, default=10, help="(d) epochs (default 10)")
    ap.add_argument("--art-images", type=int, default=200, help="(d) normal and anomalous test images measured (default 200 each)")
    ap.add_argument("--art-figures", default=None, help="(d) write each variant's attention figure into this folder")
    ap.add_argument("--protocol-datasets", default="fashion-mnist,mnist", help="(e) datasets (default fashion-mnist,mnist)")
    ap.add_argument("--protocol-models", default="grad2vae,vae", help="(e) models (default grad2vae,vae)")
    ap.add_argument("--protocol-epochs", type=int, default=30, help="(e) epochs, lr / 100 after half (default 30)")
    ap.add_argument("--protocol-classes", default=None, help="(e) which normal classes this call runs (default all 10)")
    ap.add_argument("--protocol-compile", default="grad2vae", help="(e) models trained with train.compile=true (torch.compile "
                                                                    "of the loss; default grad2vae, '' for none)")
    ap.add_argument("--protocol-table", action="store_true", help="(e) print the per-class table of "
                    "grad2vae_protocol.json as markdown (with --limit: the entries of that cut) and stop")
    ap.add_argument("--limit", type=int, default=None, help="(b, c, d, e) at most this many training images (default: all)")
    ap.add_argument("--test-limit", type=int, default=None, help="(b, c) at most this many test images (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default=None, help="keep the run directories here (default: a temporary directory)")
    ap.add_argument("--dry-run", action="store_true", help="smoke test: write the JSON to a temporary directory")
    a = ap.parse_args()

    import warnings

    import torch

    # resuming a run epoch by epoch (part b): Lightning's CSV logger warns that the logs folder exists
    warnings.filterwarnings("ignore", ".*exists and is not empty.*")
    from vaelab.detect import DEFAULT_SCORE

    if a.curve_figure:
        curve_figure(_common.RESULTS / "grad2vae_curve.json", Path(a.curve_figure))
        return
    if a.protocol_table:
        print(protocol_markdown(_common.RESULTS / "grad2vae_protocol.json", a.limit))
        return
    parts = {p.strip() for p in a.parts.split(",") if p.strip()}
    runs = Path(a.runs or tempfile.mkdtemp(prefix="vaelab-grad2vae-"))
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out: dict = {}
    seconds: dict = {}
    if "a" in parts:
        t0 = time.perf_counter()
        out["attention_cost"] = attention_cost(a.batch, a.repeats, a.latent_dim, device, a.seed, a.step_path)
        out["step_ratio_vs_vae"] = out["attention_cost"][-1]["step_ratio_vs_vae"]
        seconds["a"] = time.perf_counter() - t0
        print("\n(a) attention cost, median seconds per batch")
        print_table(out["attention_cost"], ["what", "batch", "units", "chain_s", "fast_s", "vmap_s", "loop_s", "vmap_over_chain",
                                            "chain_equals_vmap", "fast_equals_vmap", "loop_equals_vmap", "grad2vae_s", "vae_s",
                                            "grad2vae_over_vae"])
        print("training step / vae step: " + ", ".join(f"{k} {v:.2f}" for k, v in out["step_ratio_vs_vae"].items()))
        last = out["attention_cost"][-1]
        print(f"compiled conv step's gradients against the eager step's: max relative error "
              f"{last['conv_compiled_max_relative_gradient_error']:.2e} (equal to 1e-4: {last['conv_compiled_equals_eager']})")
        for k, c in last["compile_cost"].items():
            print(f"compiling {k}: first step {c['train_step_s']:.1f} s, first no-grad call {c['no_grad_call_s']:.1f} s, "
                  f"{c['saved_per_step_s'] * 1e3:.0f} ms saved per step: pays after {c['break_even_steps']:.0f} steps")
    if "b" in parts:
        t0 = time.perf_counter()
        classes = [int(c) for c in a.conv_classes.split(",") if c.strip()]
        models = [m for m in a.conv_models.split(",") if m] if a.conv_models else None
        out["convergence"] = convergence(classes, a.conv_epochs, a.limit, a.test_limit, a.seed, runs, models,
                                         a.conv_paper_schedule)
        seconds["b"] = time.perf_counter() - t0
        print("\n(b) test ROC-AUC after each epoch")
        table = []
        for c in classes:
            for e in range(1, a.conv_epochs + 1):
                row = {"class": c, "epoch": e}
                for r in out["convergence"]:
                    if r["class"] == c and r["epoch"] == e:
                        row[r["model"]] = r["auroc"]
                table.append(row)
        print_table(table, ["class", "epoch", *CONV_MODELS])
    if "d" in parts:
        t0 = time.perf_counter()
        classes = [int(c) for c in a.art_classes.split(",") if c.strip()]
        out["artefacts"] = artefacts(classes, a.art_epochs, a.limit, a.test_limit, a.art_images, a.seed, runs,
                                     Path(a.art_figures) if a.art_figures else None)
        seconds["d"] = time.perf_counter() - t0
        print("\n(d) attention artefacts (trained; normal test images)")
        print_table(out["artefacts"], ["class", "variant", "auroc", "trained_normal_checkerboard", "trained_anomalous_checkerboard",
                                       "trained_normal_checkerboard_inputs", "untrained_normal_checkerboard",
                                       "trained_normal_corner", "trained_anomalous_corner", "trained_normal_corner_inputs",
                                       "untrained_normal_corner", "trained_normal_border"])
    if "f" in parts:
        paper_curve([int(c) for c in a.curve_classes.split(",") if c.strip()],
                    [m for m in a.curve_models.split(",") if m], a.curve_epochs, a.curve_combo_every, a.limit, a.test_limit, a.seed, runs,
                    a.dry_run)
        if parts == {"f"}:
            return
    if "e" in parts:
        paper_protocol([d for d in a.protocol_datasets.split(",") if d], [m for m in a.protocol_models.split(",") if m],
                       a.protocol_epochs, a.limit, a.test_limit, runs, a.dry_run,
                       [int(c) for c in a.protocol_classes.split(",")] if a.protocol_classes else None,
                       tuple(m for m in a.protocol_compile.split(",") if m))
        if parts <= {"e", "f"}:
            return
    if "c" in parts:
        t0 = time.perf_counter()
        classes = [int(c) for c in a.table_classes.split(",")] if a.table_classes else None
        out["one_class"] = one_class_table("grad2vae", classes, a.table_epochs, a.seeds, a.limit, a.test_limit, runs)
        out["one_class_baselines"] = {m: one_class_table(m, classes, a.table_epochs, a.seeds, a.limit, a.test_limit, runs)
                                      for m in a.table_baselines.split(",") if m.strip()}
        seconds["c"] = time.perf_counter() - t0
        means = {"grad2vae": out["one_class"]["auroc"][DEFAULT_SCORE]["mean"],
                 **{m: r["auroc"][DEFAULT_SCORE]["mean"] for m, r in out["one_class_baselines"].items()}}
        print("(c) mean ROC-AUC: " + ", ".join(f"{m} {v:.4f}" for m, v in means.items()))
    print(f"\nseconds per part: {', '.join(f'{k} {v:.0f}' for k, v in seconds.items())}")
    if a.dry_run:
        _common.RESULTS = Path(tempfile.mkdtemp(prefix="vaelab-dry-run-"))
    settings = {k: v for k, v in vars(a).items() if k not in ("dry_run", "runs")}
    command = " ".join(["python"] + sys.argv)
    per_part = {p: {"command": command, "settings": settings, "seconds": seconds[p], "date": time.strftime("%Y-%m-%d")}
                for p in seconds}
    previous = _common.RESULTS / "grad2vae.json"
    if previous.is_file():  # keep the parts this call did not run
        old = json.loads(previous.read_text())
        for key, part in PART_OF.items():
            if part not in seconds and key in old.get("results", {}):
                out[key] = old["results"][key]
        if "b" in seconds:  # part (b) on some classes and models keeps the curves of the others
            ran = {(r["class"], r["model"]) for r in out["convergence"]}
            out["convergence"] = [r for r in old.get("results", {}).get("convergence", [])
                                  if (r["class"], r["model"]) not in ran] + out["convergence"]
        for part, info in old.get("parts", {}).items():
            per_part.setdefault(part, info)
    write_result("grad2vae", out, dataset=DATASET, device=device, parts=dict(sorted(per_part.items())), dry_run=a.dry_run)


if __name__ == "__main__":
    main()
