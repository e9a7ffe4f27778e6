"""Grad2VAE's attention step and training step against the VAE's: seconds per batch, and what compiling costs.

Part (a) of the grad2vae experiment (results: grad2vae.json, beside the other parts' results) on
Fashion-MNIST (28x28): the attention step (all d units' Hessian-vector products d^2 z_i / dL_e1^2 @ 1
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
sum and mean are compiled (--compile), as train.compile=auto trains grad2vae on a long run; conv_eager,
sum_eager and mean_eager are the same steps uncompiled; the VAE's step is eager (its faster
path; vae_compiled is listed). The compile is timed cold (first step and first no-grad call
with a fresh inductor cache) and set against what each step saves: ``compile_break_even_steps``.

    OMP_NUM_THREADS=<cores> python -m benchmarks grad2vae_cost [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from benchmarks._harness import Bench, print_table
from benchmarks.grad2vae._shared import DATASET, record_part

RESULT = "grad2vae"
SMOKE = ["--batch", "4", "--repeats", "1", "--compile", "", "--latent-dim", "4"]
NEEDS = ("fashion-mnist",)  # the data its smoke test reads (besides scikit-learn's)
COMPILED = ("conv", "sum", "mean")  # the variants train.compile=auto compiles on a long run


def median_seconds(fn, repeats: int) -> float:
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


def attention_cost(batch: int, repeats: int, latent_dim: int, device: str, seed: int, step_path: str = "trainer",
                   compile_: tuple[str, ...] = (*COMPILED, "vae_compiled")) -> list[dict]:
    """The rows of part (a); ``compile_``: the step variants torch.compile compiles (the others run eager)."""
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
        t = {k: median_seconds(attention(fn, backward), repeats) for k, fn in paths.items()}
        rows.append({"part": "a", "what": f"attention {mode}", "batch": len(x), "units": latent_dim,
                     **{f"{k}_s": v for k, v in t.items()}, "vmap_over_chain": t["vmap"] / t["chain"], **same})
    # one optimisation step of each variant, in blocks of --repeats steps after a warm-up step (the
    # steady state of a training run, whose allocator and caches serve one variant), the blocks taken
    # in two rounds so that a slower or faster spell of the machine falls on every variant.
    # conv, sum and mean: the default chain path as the trainer runs a long run (train.compile=auto:
    # torch.compile of the loss, which grad2vae declares pays); *_eager: the same step uncompiled
    # (train.compile=false, and a run too short for auto); the other paths eager
    variants = {"conv": {}, "sum": {"aggregation": "sum"}, "mean": {"aggregation": "mean"},
                "conv_eager": {}, "sum_eager": {"aggregation": "sum"}, "mean_eager": {"aggregation": "mean"},
                "reference_conv": {"attention_impl": "reference"}, "conv_fast": {"attention_impl": "fast"},
                "sum_fast": {"aggregation": "sum", "attention_impl": "fast"}, "no_attention": {"attention_weight": 0.0}}
    models = {"vae": vae}
    for name, opts in variants.items():
        torch.manual_seed(seed)
        models[name] = build(make_config("grad2vae", {"latent_dim": latent_dim, **opts}), (1, 28, 28)).to(device)
    torch.manual_seed(seed)
    models["vae_compiled"] = build(make_config("vae", {"latent_dim": latent_dim}), (1, 28, 28)).to(device)
    compiled = {k for k in models if k in compile_}
    if compiled:
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
                                              else max((c["break_even_steps"] for c in compile_cost.values()), default=None)),
                 "conv_compiled_max_relative_gradient_error": compiled_error,
                 "conv_compiled_equals_eager": bool(compiled_g.keys() == eager_g.keys() and compiled_error <= 1e-4),
                 "grad2vae_parameters": model.num_parameters(), "vae_parameters": vae.num_parameters(),
                 "torch_threads": torch.get_num_threads(), "step_path": step_path})
    return rows



def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--batch", type=int, default=128, help="images per batch (default 128)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats, median reported (default 5)")
    ap.add_argument("--latent-dim", type=int, default=16, help="latent units (default 16, the models' default)")
    ap.add_argument("--step-path", choices=["trainer", "plain"], default="trainer",
                    help="time each step as the trainer runs it with train.fast=true (channels_last on the CPU, "
                         "the fused Adam, the kept allocator; default) or the plain fp32 NCHW step (train.fast=false)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--compile", default=",".join((*COMPILED, "vae_compiled")),
                    help="the step variants compiled with torch.compile (default conv,sum,mean,vae_compiled; '' for none)")
    ap.add_argument("--seed", type=int, default=0)


def main(b: Bench) -> None:
    import torch

    a = b.args
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    rows = attention_cost(a.batch, a.repeats, a.latent_dim, device, a.seed, a.step_path,
                          tuple(v for v in a.compile.split(",") if v))
    out = {"attention_cost": rows, "step_ratio_vs_vae": rows[-1]["step_ratio_vs_vae"]}
    print("\n(a) attention cost, median seconds per batch")
    print_table(rows, ["what", "batch", "units", "chain_s", "fast_s", "vmap_s", "loop_s", "vmap_over_chain", "chain_equals_vmap",
                       "fast_equals_vmap", "loop_equals_vmap", "grad2vae_s", "vae_s", "grad2vae_over_vae"])
    print("training step / vae step: " + ", ".join(f"{k} {v:.2f}" for k, v in out["step_ratio_vs_vae"].items()))
    last = rows[-1]
    print(f"compiled conv step's gradients against the eager step's: max relative error "
          f"{last['conv_compiled_max_relative_gradient_error']:.2e} (equal to 1e-4: {last['conv_compiled_equals_eager']})")
    for k, c in last["compile_cost"].items():
        print(f"compiling {k}: first step {c['train_step_s']:.1f} s, first no-grad call {c['no_grad_call_s']:.1f} s, "
              f"{c['saved_per_step_s'] * 1e3:.0f} ms saved per step: pays after {c['break_even_steps']:.0f} steps")
    record_part(b, "a", out, time.perf_counter() - t0, device=device)
