"""Subnormal gradients and the CPU: a decoder layer's backward pass with flush-to-zero off and on.

What vaelab.train.run.flush_denormals is for.

An IWAE's gradient weights each of its k samples by its normalised importance weight; once the model
is sharp, most weights are far below float32's smallest normal number (1.2e-38), and so are the
gradients that reach the decoder. This times the backward pass of a decoder's last layer (a 4x4
transposed convolution, 64 -> 50 channels, 16x16 -> 32x32, a batch of --batch = 64 images x k = 5 samples) on
gradients that are normal, subnormal for 80% of the samples, and all subnormal, with flush-to-zero off
and on, one thread, best of --repeats.

    python -m benchmarks denormals [--repeats 3]

writes benchmarks/results/denormals.json.
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmarks._harness import Bench, print_table

SMOKE = ["--repeats", "1", "--batch", "8"]


def arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=320, help="images x samples in the batch")


def main(b: Bench) -> None:
    a = b.args
    torch.set_num_threads(1)
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(64, 50, 4, 2, 1)
    x = torch.randn(a.batch, 64, 16, 16, requires_grad=True)
    sub = (torch.rand(a.batch, 1, 1, 1) < 0.8).float()
    grads = {"normal": 1.0, "80% subnormal": sub * 1e-40 + (1 - sub), "all subnormal": 1e-40}

    def best(scale) -> float:
        times = []
        for _ in range(a.repeats):
            y = conv(x)
            g = torch.randn_like(y) * scale
            t = time.perf_counter()
            y.backward(g)
            times.append(time.perf_counter() - t)
        return min(times)

    rows = []
    supported = torch.set_flush_denormal(True)
    for name, scale in grads.items():
        torch.set_flush_denormal(False)
        off = best(scale)
        torch.set_flush_denormal(True)
        on = best(scale)
        torch.set_flush_denormal(False)
        rows.append({"gradient": name, "flush_off_s": off, "flush_on_s": on, "speedup": off / on})
    print_table(rows, ["gradient", "flush_off_s", "flush_on_s", "speedup"])
    b.write(rows, flush_to_zero_supported=supported, repeats=a.repeats, batch=a.batch, threads=1)
