"""The training fast path and the evaluation speed-ups change how fast, not what is computed:
deterministic, resumable, equal to the plain fp32 path up to float rounding. Speed itself is
measured by benchmarks/throughput.py, never asserted here."""
from __future__ import annotations

import csv
import math
import warnings

import pytest
import torch
from safetensors.torch import load_file

from vaelab.config import parse_set
from vaelab.data import DataConfig, load_data
from vaelab.errors import ConfigError, TrainingError
from vaelab.evaluate.likelihood import log_likelihood
from vaelab.models import build, make_config
from vaelab.train import CHECKPOINT, RunConfig, TrainConfig, fit, make_loader
from vaelab.train import lit as lit_module
from vaelab.train.batches import InMemoryImages
from vaelab.train.lit import LitAutoencoder
from vaelab.train.speed import tune_cpu_allocator
from vaelab.train.run import cpu_has_bf16

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

# a conv VAE with real channel counts on both sides of each conv, so that channels_last is a
# different memory layout from the default one (with one channel the two coincide)
CONV = ["data.name=digits", "model.conv_channels=[8,16]", "model.latent_dim=2", "train.batch_size=64",
        "train.progress_bar=false"]


def conv_cfg(*extra: str) -> RunConfig:
    return RunConfig.build("vae", parse_set([*CONV, "train.epochs=2", *extra]))


@pytest.fixture(scope="module")
def digits():
    return load_data(DataConfig(name="digits"))


def weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def test_fast_path_is_deterministic_and_equals_the_plain_path_up_to_rounding(tmp_path, digits):
    a, _ = fit(conv_cfg(), tmp_path / "a", data=digits)
    fit(conv_cfg(), tmp_path / "b", data=digits)
    fit(conv_cfg("train.fast=false"), tmp_path / "plain", data=digits)
    wa, wb, wp = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "plain")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the same seed gives the same weights
    assert any(not torch.equal(wa[k], wp[k]) for k in wa)  # the fast path did run other kernels ...
    for k in wa:  # ... computing the same thing
        torch.testing.assert_close(wa[k], wp[k], rtol=1e-5, atol=1e-5)
    # the returned model is in the default layout again, whatever the training used
    assert all(p.is_contiguous() for p in a.parameters())


def test_fast_path_resume_equals_uninterrupted(tmp_path, digits):
    fit(conv_cfg("train.epochs=1"), tmp_path / "r", data=digits)
    fit(conv_cfg(), tmp_path / "r", resume=True, data=digits)
    fit(conv_cfg(), tmp_path / "s", data=digits)
    wr, ws = weights(tmp_path / "r"), weights(tmp_path / "s")
    assert all(torch.equal(wr[k], ws[k]) for k in ws)


@pytest.mark.parametrize("first, then", [("true", "false"), ("false", "true")])
def test_resume_with_the_other_layout_keeps_the_optimizer_state_right(tmp_path, digits, first, then):
    """A checkpoint of one path resumed on the other: the fast path keeps conv weights and their
    Adam moments channels_last and steps them with the fused kernel, which works on raw memory.
    The restored moments are given the parameters' layout (and the optimizer the configured
    kernel), so the run continues as an uninterrupted one does, up to rounding."""
    fit(conv_cfg("train.epochs=1", f"train.fast={first}"), tmp_path / "r", data=digits)
    ckpt = torch.load(tmp_path / "r" / CHECKPOINT, weights_only=True)
    moments = [s["exp_avg"] for s in ckpt["optimizer_states"][0]["state"].values() if s["exp_avg"].ndim == 4]
    assert moments and any(not m.is_contiguous() for m in moments) is (first == "true")  # saved in the layout it used
    fit(conv_cfg(f"train.fast={then}"), tmp_path / "r", resume=True, data=digits)
    fit(conv_cfg(f"train.fast={then}"), tmp_path / "ref", data=digits)
    wr, wp = weights(tmp_path / "r"), weights(tmp_path / "ref")
    for k in wp:
        torch.testing.assert_close(wr[k], wp[k], rtol=1e-5, atol=1e-5)


def test_batches_are_formed_where_the_data_lives():
    """The device-resident path of a GPU run, exercised on the meta device: after ``to`` the
    images stay there, the sampler's CPU indices go there, and the batch is made there."""
    images = (torch.rand(10, 1, 4, 4) * 255).to(torch.uint8)
    labels = torch.arange(10)
    ds = InMemoryImages(images, labels)
    x, y = ds[torch.tensor([3, 1])]
    torch.testing.assert_close(x, images[[3, 1]].float() / 255)
    assert torch.equal(y, labels[[3, 1]])
    ds.to("meta")
    x, y = ds[torch.tensor([3, 1])]
    assert ds.device.type == x.device.type == y.device.type == "meta"
    assert x.shape == (2, 1, 4, 4) and x.dtype == torch.float32
    # the training module moves its loaders' datasets to its own device when training starts
    model = build(make_config("vae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), (1, 4, 4))
    lit = LitAutoencoder(model, TrainConfig(), steps_per_epoch=1)
    loader = make_loader(images, 4, 0, shuffle=True)
    lit._place_data([loader, None])
    assert loader.dataset.device.type == "cpu"  # already where the module is
    lit.to("meta")
    lit._place_data(loader)
    assert loader.dataset.device.type == "meta" and next(iter(loader)).device.type == "meta"


def test_deferred_loss_check_stops_before_the_next_checkpoint(tmp_path, digits, monkeypatch):
    """On an accelerator the non-finite-loss check runs when the step rows are flushed (no host
    sync per step): training still stops, the log keeps every good step, and the checkpoint and
    weights on disk are the last good ones."""
    from vaelab.models import VAE

    steps_per_epoch = math.ceil(len(digits[0]) / 64)
    calls = {"n": 0}
    orig = VAE.loss

    def flaky(self, x, kl_weight=1.0):
        out = orig(self, x, kl_weight)
        if self.training:
            calls["n"] += 1
            if calls["n"] == steps_per_epoch + 4:  # the fifth step of the second epoch
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(VAE, "loss", flaky)
    monkeypatch.setattr(LitAutoencoder, "check_loss_each_step", property(lambda self: False))
    monkeypatch.setattr(lit_module, "LOG_FLUSH_STEPS", 1000)  # the rows wait for the checkpoint
    with pytest.raises(TrainingError, match=f"nan at epoch 1, step {steps_per_epoch + 3}"):
        fit(conv_cfg("train.epochs=3"), tmp_path / "r", data=digits)
    assert torch.load(tmp_path / "r" / CHECKPOINT, weights_only=True)["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "r").values())
    rows = [r for r in csv.DictReader(open(tmp_path / "r" / "logs" / "metrics.csv")) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == list(range(steps_per_epoch + 3))
    assert all(math.isfinite(float(r["train/loss"])) for r in rows)


def test_precision_switch(tmp_path, digits):
    assert RunConfig.build("vae", parse_set(["train.precision=32"])).train.precision == "32"  # YAML reads 32 as a number
    with pytest.raises(ConfigError, match="train.precision must be one of"):
        TrainConfig(precision="fp8")
    with pytest.raises(ConfigError, match="16-mixed .* needs a GPU"):
        fit(conv_cfg("train.precision=16-mixed", "train.accelerator=cpu"), tmp_path / "fp16", data=digits)
    # bf16 autocast runs on any CPU (emulated where there are no bf16 units: slow, hence a warning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(conv_cfg("train.precision=bf16-mixed", "train.epochs=1"), tmp_path / "bf16", data=load_data(DataConfig(name="digits", limit=256)))
    assert any("bf16-mixed on a CPU without bf16 units" in str(w.message) for w in caught) is not cpu_has_bf16()
    rows = [r for r in csv.DictReader(open(tmp_path / "bf16" / "logs" / "metrics.csv")) if r.get("train/loss")]
    assert len(rows) == 4 and all(math.isfinite(float(r["train/loss"])) for r in rows)  # 230 images, batches of 64


def test_compiled_loss_trains_the_same_model(tmp_path, monkeypatch):
    """train.compile=true runs the loss through torch.compile. The graph capture is what this
    test checks (with the aot_eager backend: inductor's C++ build takes a minute, and measured
    slower per step than eager on this CPU anyway, see benchmarks/throughput.py)."""
    compiled = []
    orig = torch.compile

    def aot_eager(fn, **kw):
        compiled.append(fn)
        return orig(fn, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", aot_eager)
    data = load_data(DataConfig(name="digits", limit=256))
    fit(conv_cfg("train.compile=true", "train.epochs=1"), tmp_path / "c", data=data)
    fit(conv_cfg("train.epochs=1"), tmp_path / "e", data=data)
    assert len(compiled) == 1 and compiled[0].__name__ == "loss"
    wc, we = weights(tmp_path / "c"), weights(tmp_path / "e")
    for k in we:
        torch.testing.assert_close(wc[k], we[k], rtol=1e-5, atol=1e-5)


def test_compile_keeps_compiling_when_a_process_trains_many_models(tmp_path, monkeypatch):
    """Every model shares the loss's code, so each one adds entries to dynamo's cache; past its
    recompile limit dynamo runs the frame eager without a word. Each run starts the caches afresh,
    so the third model of one process is still compiled under a limit of two entries."""
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    orig = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: orig(fn, backend=counting))
    data = load_data(DataConfig(name="digits", limit=128))
    seen = []
    # dynamo's own patch() sets and restores the limit; pytest's monkeypatch would delete the entry on
    # undo whenever its getattr missed, hiding the setting from every later compile in the process
    before = torch._dynamo.config.recompile_limit
    with torch._dynamo.config.patch(recompile_limit=2):
        assert torch._dynamo.config.recompile_limit == 2
        for i in range(3):
            fit(conv_cfg("train.compile=true", "train.epochs=1", f"seed={i}"), tmp_path / str(i), data=data)
            seen.append(len(graphs))
    assert torch._dynamo.config.recompile_limit == before
    assert seen[0] > 0 and seen[1] > seen[0] and seen[2] > seen[1], seen


def test_compile_auto_decides_by_model_device_and_run_length(monkeypatch):
    """train.compile=auto compiles only a model that declares compile_pays, on the CPU, for a run of at
    least COMPILE_AUTO_MIN_STEPS steps, when inductor has a C++ compiler; true and false are obeyed."""
    from vaelab.train import speed

    n = speed.COMPILE_AUTO_MIN_STEPS
    assert speed.resolve_compile(True, False, "cuda", 1)[0] is True
    assert speed.resolve_compile(False, True, "cpu", 10 * n)[0] is False
    assert speed.resolve_compile("auto", True, "cpu", n) == (True, f"auto: {n} steps pay for the compile; the first step waits for it")
    off = {"model": speed.resolve_compile("auto", False, "cpu", 10 * n), "device": speed.resolve_compile("auto", True, "cuda", 10 * n),
           "short": speed.resolve_compile("auto", True, "cpu", n - 1)}
    assert all(flag is False for flag, _ in off.values())
    assert "does not declare" in off["model"][1] and "cuda" in off["device"][1] and f"{n - 1} steps" in off["short"][1]
    monkeypatch.setattr(speed, "cpp_compiler_available", lambda: False)
    flag, why = speed.resolve_compile("auto", True, "cpu", 10 * n)
    assert flag is False and "C++ compiler" in why
    from vaelab.models import MODELS

    assert [name for name, spec in sorted(MODELS.items()) if spec.cls.compile_pays] == ["grad2vae"]


def test_compile_auto_compiles_grad2vae_on_a_long_run_only(tmp_path, monkeypatch, caplog):
    """The trainer resolves train.compile=auto (the default) from the model and the run's steps: grad2vae
    is compiled once the run is long enough, a VAE never; the run's log says which and why."""
    import logging

    from vaelab.train import speed

    compiled = []
    orig = torch.compile

    def aot_eager(fn, **kw):
        compiled.append(fn.__self__.config.name)
        return orig(fn, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", aot_eager)
    data = load_data(DataConfig(name="digits", limit=64))
    small = ["data.name=digits", "model.latent_dim=2", "train.batch_size=32", "train.progress_bar=false", "train.epochs=1"]
    assert TrainConfig().compile == "auto"
    minimum = speed.COMPILE_AUTO_MIN_STEPS
    with caplog.at_level(logging.INFO, logger="vaelab"):
        fit(RunConfig.build("grad2vae", parse_set(small)), tmp_path / "short", data=data)  # 2 steps: too short
        monkeypatch.setattr(speed, "COMPILE_AUTO_MIN_STEPS", 2)
        fit(RunConfig.build("grad2vae", parse_set(small)), tmp_path / "long", data=data)
        fit(RunConfig.build("vae", parse_set(small)), tmp_path / "vae", data=data)
        fit(RunConfig.build("grad2vae", parse_set([*small, "train.compile=false"])), tmp_path / "off", data=data)
    assert compiled == ["grad2vae"]
    said = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(said) == 3, said  # the VAE's run says nothing: compiling is not its question
    assert said[0].startswith("torch.compile of the loss: off (auto: ") and f"fewer than the {minimum} " in said[0]
    assert said[1].startswith("torch.compile of the loss: on (auto: ") and said[1].endswith("steps pay for the compile; the first step waits for it)")
    assert said[2] == "torch.compile of the loss: off (train.compile=false)"


def test_compile_setting_is_checked_and_round_trips(tmp_path):
    with pytest.raises(ConfigError, match="train.compile must be true, false or auto"):
        TrainConfig(compile="sometimes")
    with pytest.raises(ConfigError, match="train.compile"):
        RunConfig.build("vae", parse_set(["train.compile=sometimes"]))
    for value in (True, False, "auto"):
        cfg = RunConfig.build("vae", {"train": {"compile": value}})
        cfg.save(tmp_path / f"{value}.yaml")
        assert RunConfig.load(tmp_path / f"{value}.yaml").train.compile == value


def test_allocator_tuning_is_applied_once_on_glibc():
    import platform

    first = tune_cpu_allocator()
    assert tune_cpu_allocator() is first
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert first is True


def test_nll_in_channels_last_equals_the_default_layout_and_restores_it():
    torch.manual_seed(0)
    m = build(make_config("vae", {"conv_channels": [8, 16], "latent_dim": 3}), (1, 8, 8)).eval()
    x = torch.rand(5, 1, 8, 8).round()
    torch.manual_seed(1)
    fast = log_likelihood(m, x, k=12, max_decoded=20)  # 4 samples of 5 images per decoder call
    assert all(p.is_contiguous() for p in m.parameters())  # the layout is given back
    torch.manual_seed(1)
    with torch.no_grad():  # the same draws, chunk by chunk, in the default layout
        q = m.encode(x)
        lw = torch.cat([m.log_weights(x, 4, q)[0] for _ in range(3)]).double()
    ref = torch.logsumexp(lw, 0) - math.log(12)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-4)
