"""Health checks: a collapsed posterior, a non-finite loss and reconstructions no better than the mean
image are flagged in metrics.json and the report, each with its likely fix; a healthy run has none."""
import json
from html import unescape

import pytest

from vaelab.evaluate.health import health_flags


def test_each_flag_appears_on_the_numbers_that_raise_it_and_only_then():
    healthy = {"nelbo": 80.0, "rec": 70.0, "kl": 10.0, "active_units": 6.0, "mse": 0.02, "mse_mean_image": 0.07}
    assert health_flags(healthy) == []
    names = lambda m: [f["flag"] for f in health_flags(m)]  # noqa: E731
    assert names({**healthy, "kl": 0.01, "active_units": 0.0}) == ["posterior_collapse"]
    assert names({**healthy, "active_units": 0.0}) == ["posterior_collapse"]
    assert names({**healthy, "nelbo": float("nan")}) == ["non_finite_loss"]
    assert names({**healthy, "mse": 0.069}) == ["no_better_than_mean_image"]
    assert names({"mse": 0.02, "mse_mean_image": 0.07}) == []  # a deterministic AE: no KL, no collapse check
    assert all(f["fix"] for f in health_flags({**healthy, "kl": 0.0, "mse": 0.1}))


@pytest.mark.parametrize("beta,collapsed", [(50.0, True), (1.0, False)])
def test_a_run_whose_posterior_collapsed_says_so_in_metrics_and_report(tmp_path, beta, collapsed):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("beta-vae", parse_set(["data.name=digits", "model.latent_dim=8", "train.epochs=10", "train.batch_size=64",
                                                 "model.arch=mlp", "model.mlp_hidden=[128]", f"model.beta={beta}",
                                                 "train.progress_bar=false"]))
    run, metrics = train_run(cfg, tmp_path / "run")
    saved = json.loads((run / "metrics.json").read_text())
    flags = [f["flag"] for f in saved["health"]]
    html = unescape((run / "report.html").read_text())
    assert ("posterior_collapse" in flags) == collapsed and ("Warning (posterior collapse)" in html) == collapsed
    if collapsed:
        assert "--set train.kl_warmup_steps" in html and saved["kl"] < 0.1
    else:  # a model that learned: every check passes, and it beats the mean image clearly
        assert flags == [] and metrics["mse"] < 0.8 * metrics["mse_mean_image"]
