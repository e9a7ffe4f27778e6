"""The speed settings of training and evaluation on the CPU, each measured in
benchmarks/throughput.py: glibc's allocator told to keep freed memory, the channels_last layout for
conv networks, and the bf16 probe."""
from __future__ import annotations

import ctypes
import sys
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


_allocator_tuned = False


def tune_cpu_allocator() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the system
    after every training step (it unmaps blocks over 128 KiB and trims the heap top): each step
    then page-faults fresh memory for its activations and gradients. Measured 1.1-1.2x faster
    steps on the conv VAE (benchmarks/throughput.py). The process keeps up to its peak heap, as it
    would with jemalloc or tcmalloc. Once per process; False where the C library is not glibc."""
    global _allocator_tuned
    if not _allocator_tuned and sys.platform.startswith("linux"):
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):
            return False
        # blocks up to 32 MiB (glibc's documented maximum) come from the heap, and up to 1 GiB of
        # free heap top is kept
        _allocator_tuned = mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1 and mallopt(_M_TRIM_THRESHOLD, 1 << 30) == 1
    return _allocator_tuned


def has_conv_layers(model: torch.nn.Module) -> bool:
    return any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in model.modules())


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (avx512_bf16 or AMX), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((ln for ln in fh if ln.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextmanager
def cpu_channels_last(model: nn.Module, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """On the CPU, run a conv model in the channels_last layout (oneDNN's faster kernels for these
    layers; ~1.3x for the conv VAE's decoder) and give its 4-d weights their layout back after."""
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    if x.device.type != "cpu" or not convs or x.ndim != 4:
        yield x
        return
    w = convs[0].weight
    was = torch.channels_last if (w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()) else torch.contiguous_format
    model.to(memory_format=torch.channels_last)
    try:
        yield x.contiguous(memory_format=torch.channels_last)
    finally:
        model.to(memory_format=was)


# train.compile=auto compiles the loss of a model that declares compile_pays when the run has at least
# this many optimisation steps. benchmarks/grad2vae.py part (a) measures both sides on grad2vae: the
# compile (the first step and the first no-grad validation call, from a cold cache) against the
# seconds each compiled step saves ("compile_break_even_steps": 351 to 676 steps on 2026-12-06). The
# threshold is 1.5 to 3 times that, so that even a first, cold compile is repaid; later runs on the same
# machine find most of the compiled code in inductor's cache and pay sooner.
COMPILE_AUTO_MIN_STEPS = 1000


def cpp_compiler_available() -> bool:
    """Whether torch.compile's CPU backend (inductor) finds the C++ compiler it builds its kernels with."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception:  # noqa: BLE001 - inductor raises its own error types when no compiler is found
        return False
    return True


def resolve_compile(setting: bool | str, compile_pays: bool, device_type: str, total_steps: int) -> tuple[bool, str]:
    """Whether to torch.compile the loss, and why (for the run's log). ``setting`` is train.compile:
    true and false are obeyed; auto compiles only a model that declares ``compile_pays``, on the CPU
    (where the gain was measured), for a run of at least COMPILE_AUTO_MIN_STEPS steps, when a C++
    compiler is there for inductor."""
    if setting is True or setting is False:
        return bool(setting), f"train.compile={str(setting).lower()}"
    if not compile_pays:
        return False, "auto: this model does not declare that compiling pays"
    if device_type != "cpu":
        return False, f"auto: the gain is measured on the CPU, not on {device_type}"
    if total_steps < COMPILE_AUTO_MIN_STEPS:
        return False, f"auto: {total_steps} steps are fewer than the {COMPILE_AUTO_MIN_STEPS} that pay for the compile"
    if not cpp_compiler_available():
        return False, "auto: no C++ compiler for torch.compile's CPU backend (install g++ or set CXX)"
    return True, f"auto: {total_steps} steps pay for the compile; the first step waits for it"
