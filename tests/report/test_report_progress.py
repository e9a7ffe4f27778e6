"""The end of a run says how far it is: the report's figures are counted as they are drawn, and the
latent map's t-SNE counts its iterations (vaelab.progress); --quiet silences both."""
from __future__ import annotations

import logging
import re

import pytest

import vaelab.progress


@pytest.fixture
def lines(caplog, monkeypatch):
    monkeypatch.setattr(vaelab.progress, "EVERY_S", 0.0)  # a line at every count
    caplog.set_level(logging.INFO, logger="vaelab")
    yield lambda: [r.getMessage() for r in caplog.records if r.name == "vaelab"]
    vaelab.progress.set_quiet(False)


def _train(path):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "data.limit=300", "train.epochs=1", "model.arch=mlp",
                                            "model.mlp_hidden=[16]", "model.latent_dim=3", "train.progress_bar=false"]))
    return train_run(cfg, path)[0]


def test_the_figures_and_the_tsne_are_counted(tmp_path, lines, one_thread, figures):
    run = _train(tmp_path / "run")
    got = lines()
    figures = [m for m in (re.fullmatch(r"drawing the report's figures: (\d+)/(\d+) figures \(\d+%\), \d+ s", s) for s in got) if m]
    total = int(figures[0].group(2))
    assert [int(m.group(1)) for m in figures] == list(range(1, total + 1)) and total >= 8  # curves ... latent map, attention
    assert len(list((run / "figures").glob("*.png"))) == total - 1  # each counted figure drawn; a vae has no attention maps
    tsne = [int(m.group(1)) for m in (re.fullmatch(r"t-SNE of \d+ latent means: (\d+)/500 iterations \(\d+%\), \d+ s", s)
                                      for s in got) if m]
    assert tsne and tsne == sorted(tsne) and tsne[-1] <= 500 and all(n % 50 == 0 for n in tsne)
    assert any(s.startswith("t-SNE of") and ": done, " in s for s in got)


def test_quiet_silences_them(tmp_path, lines, one_thread):
    vaelab.progress.set_quiet(True)
    _train(tmp_path / "run")
    assert not [s for s in lines() if re.search(r"\d+/\d+ (figures|iterations)", s)]


def test_a_run_trained_without_figures_has_a_report_and_draws_them_on_request(tmp_path, monkeypatch, one_thread):
    """train.figures=false (or VAELAB_FIGURES=0): the report keeps the metrics and says how to draw the
    figures; `vaelab evaluate RUN --figures` draws the same set a run with figures has."""
    from tests.conftest import vaelab_here
    from vaelab.errors import ConfigError
    from vaelab.train import RunConfig

    monkeypatch.setenv("VAELAB_FIGURES", "0")
    run = _train(tmp_path / "bare")
    assert RunConfig.load(run / "config.yaml").train.figures is False
    html = (run / "report.html").read_text()
    assert "train.figures=false" in html and "--figures" in html and not list(run.glob("figures/*.png"))
    assert "nelbo" in html  # the metrics are there
    r = vaelab_here("evaluate", run, "--figures")
    assert r.returncode == 0, r.stderr
    monkeypatch.setenv("VAELAB_FIGURES", "1")
    drawn = _train(tmp_path / "drawn")
    assert sorted(p.name for p in run.glob("figures/*.png")) == sorted(p.name for p in drawn.glob("figures/*.png"))
    assert len(list(run.glob("figures/*.png"))) >= 7 and "train.figures=false" not in (run / "report.html").read_text()
    monkeypatch.setenv("VAELAB_FIGURES", "yes")
    with pytest.raises(ConfigError, match="VAELAB_FIGURES must be 1"):
        RunConfig.build("vae", {})
