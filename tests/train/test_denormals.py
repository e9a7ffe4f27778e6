"""Training flushes subnormal floats to zero on the CPU (vaelab.train.run.flush_denormals) and
leaves IEEE behaviour as it was afterwards."""
import torch

import vaelab.train.run as run_mod

TINY = 1e-40  # subnormal in float32


def _is_flushed() -> bool:
    return float(torch.tensor([TINY], dtype=torch.float32) * 1.0) == 0.0


def test_flush_denormals_flushes_inside_and_restores_after():
    assert not _is_flushed()
    with run_mod.flush_denormals() as supported:
        assert _is_flushed() == supported
    assert not _is_flushed()


def test_training_runs_with_subnormals_flushed(tmp_path, monkeypatch):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    seen = []
    real = run_mod.flush_denormals

    def spy():
        cm = real()

        class Wrapped:
            def __enter__(self):
                out = cm.__enter__()
                seen.append(_is_flushed())
                return out

            def __exit__(self, *exc):
                return cm.__exit__(*exc)

        return Wrapped()

    monkeypatch.setattr(run_mod, "flush_denormals", spy)
    cfg = RunConfig.build("iwae", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=2",
                                             "train.epochs=1", "train.progress_bar=false"]))
    train_run(cfg, tmp_path / "run")
    supported = torch.set_flush_denormal(True)  # x86 has flush-to-zero; a CPU without it reports False
    torch.set_flush_denormal(False)
    assert seen == [supported] and not _is_flushed()
