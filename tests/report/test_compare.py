"""vaelab compare and the run report's readability: the comparison page and its table agree with
each run's files, differing config keys are marked, nothing of the user's is overwritten, metrics
carry readable names and a glossary, and the report names the command that produced the run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vaelab.errors import CheckpointError, ConfigError

from tests.conftest import vaelab_here


def _cli(*args, cwd):
    return vaelab_here(*args, cwd=cwd)  # the same main() the command runs, in this process


QUICK = ["--data", "digits", "--epochs", "1", "--latent-dim", "2", "--set", "model.arch=mlp", "--set", "model.mlp_hidden=[16]",
         "--set", "train.progress_bar=false", "--set", "data.limit=300"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, figures_module):
    d = tmp_path_factory.mktemp("cmp")
    for name, extra in (("vae", []), ("beta-vae", ["--set", "model.beta=3"])):
        p = _cli("train", name, *QUICK, *extra, "--out", str(d / name), cwd=d)
        assert p.returncode == 0, p.stderr
    return d


def test_compare_page_and_table_agree_with_the_runs(two_runs):
    d = two_runs
    p = _cli("compare", str(d / "vae"), str(d / "beta-vae"), "--out", str(d / "c.html"), "--json", cwd=d)
    assert p.returncode == 0, p.stderr
    table = json.loads(p.stdout[: p.stdout.rindex("}") + 1])
    assert table["runs"] == ["vae", "beta-vae"]
    for i, name in enumerate(("vae", "beta-vae")):
        m = json.loads((d / name / "metrics.json").read_text())
        assert table["metrics"]["nelbo"][i] == m["nelbo"]
    assert table["config_differences"]["model.beta"] == [1.0, 3.0]
    assert table["config_differences"]["model.name"] == ["vae", "beta-vae"]
    assert "seed" not in table["config_differences"]  # equal keys are not differences
    page = (d / "c.html").read_text()
    assert "vaelab compare" in page[:1000] and "Training curves" in page and "Glossary" in page
    assert page.count("data:image/png;base64,") >= 3  # curves + each run's figures, embedded (offline)
    assert "<tr class=diff><th><code>model.beta</code>" in page and "<tr><th><code>seed</code>" in page
    assert "negative ELBO <code>nelbo</code>" in page  # readable names with the key


def test_compare_refuses_what_it_must_not_touch(two_runs, tmp_path):
    from vaelab.api import compare_runs

    d = two_runs
    mine = tmp_path / "mine.html"
    mine.write_text("<html>my own page</html>")
    with pytest.raises(ConfigError, match="not a vaelab comparison"):
        compare_runs([d / "vae", d / "beta-vae"], mine)
    assert mine.read_text() == "<html>my own page</html>"
    out, _ = compare_runs([d / "vae", d / "beta-vae"], tmp_path / "c.html")
    assert compare_runs([d / "vae", d / "beta-vae"], out)[0] == out  # its own page may be written again
    with pytest.raises(CheckpointError, match="not a vaelab run"):
        compare_runs([d / "vae", tmp_path], tmp_path / "x.html")
    with pytest.raises(ConfigError, match="at least two"):
        compare_runs([d / "vae"], tmp_path / "x.html")
    p = _cli("compare", str(d / "vae"), str(d / "beta-vae"), "--out", str(tmp_path / "x.png"), cwd=tmp_path)
    assert p.returncode == 2 and "HTML page" in p.stderr and "Traceback" not in p.stderr


def test_report_names_the_command_and_explains_its_metrics(two_runs):
    d = two_runs
    assert (d / "vae" / "command.txt").read_text().startswith("vaelab train vae --data digits")
    page = (d / "vae" / "report.html").read_text()
    assert "Produced by <code>vaelab train vae --data digits" in page
    assert "Glossary" in page and "KL to the prior <code>kl</code>" in page and "(nats)" in page


def test_smoothing_is_the_bias_corrected_moving_average():
    from vaelab.plotting import smooth

    v = np.array([1.0, 3.0, 2.0, 5.0])
    a = 2 / (3 + 1)
    # by hand: the weighted mean of the values so far with weights a (1 - a)^age
    ref = [sum(a * (1 - a) ** (i - j) * v[j] for j in range(i + 1)) / sum(a * (1 - a) ** (i - j) for j in range(i + 1))
           for i in range(len(v))]
    np.testing.assert_allclose(smooth(v, span=3), ref)
    assert smooth(v, span=3)[0] == 1.0 and np.allclose(smooth(v, span=1), v)
    c = np.full(100, 7.0)
    np.testing.assert_allclose(smooth(c), c)  # a constant stays constant


def test_smoothing_matches_pandas_ewm():
    from vaelab.plotting import smooth

    pd = pytest.importorskip("pandas")  # pandas' own exponentially weighted mean, where it is installed
    x = np.random.default_rng(0).normal(size=300)
    np.testing.assert_allclose(smooth(x, span=7), pd.Series(x).ewm(span=7, adjust=True).mean().to_numpy())
