"""The evaluate job: `vaelab evaluate --json` computes the metrics asked for and draws nothing."""
import json

import pytest

from vaelab.api import train_run
from vaelab.cli import main
from vaelab.config import parse_set
from vaelab.train import RunConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory, figures_module):
    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=2",
                                            "train.epochs=1", "train.batch_size=128", "train.progress_bar=false"]))
    return train_run(cfg, tmp_path_factory.mktemp("eval") / "run")[0]


def drawn(run):
    """Every file of the report and its figures with its modification time and bytes."""
    files = [run / "report.html", *sorted((run / "figures").iterdir())]
    return {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in files}


def test_evaluate_json_draws_no_figures_and_report_redraws(run, monkeypatch, capsys):
    import vaelab.api.evaluate as job

    calls = []
    real = job.make_report
    monkeypatch.setattr(job, "make_report", lambda *a, **k: calls.append(a) or real(*a, **k))
    before = drawn(run)
    metrics_before = json.loads((run / "metrics.json").read_text())
    assert main(["evaluate", str(run), "--metrics", "elbo", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"nelbo", "rec", "kl"}  # a VAE's loss terms, and nothing that was not asked for
    assert calls == [] and drawn(run) == before  # nothing drawn, no file of the report touched
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["nelbo"] == out["nelbo"] and {k: v for k, v in saved.items() if k not in out} == \
        {k: v for k, v in metrics_before.items() if k not in out}
    assert main(["evaluate", str(run), "--metrics", "elbo", "--json", "--report"]) == 0
    assert len(calls) == 1 and drawn(run)["report.html"] != before["report.html"]
    assert main(["evaluate", str(run), "--metrics", "elbo"]) == 0 and len(calls) == 2  # the table, and the report redrawn
    assert main(["evaluate", str(run), "--json", "--report", "--no-report"]) == 2
