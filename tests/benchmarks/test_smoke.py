"""The benchmarks under one harness: every benchmark in the registry that `python -m benchmarks` runs
passes its --smoke test in this process (tiny data, one epoch: the same code path) and writes its results
file with the harness's stamp, never into benchmarks/results; --list names every benchmark file. A new
benchmark is covered by being in the registry."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from benchmarks._harness import PACKAGE, RESULTS, ROOT, cifar10_exact, registry, run
from tests.conftest import missing, require_source

NAMES = sorted(registry(), key=lambda n: (registry()[n], n))
STAMP = ("benchmark", "command", "commit", "date", "machine", "versions", "smoke", "results")


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """One runs folder for the module (VAELAB_BENCH_RUNS): the benchmarks that share runs (the zoo's, the
    one-class protocol's) reuse them as they do outside the tests."""
    old = os.environ.get("VAELAB_BENCH_RUNS")
    os.environ["VAELAB_BENCH_RUNS"] = str(tmp_path_factory.mktemp("bench-runs"))
    yield
    if old is None:
        del os.environ["VAELAB_BENCH_RUNS"]
    else:
        os.environ["VAELAB_BENCH_RUNS"] = old


@pytest.fixture
def one_thread():
    """Smoke tests run on one thread (their tensors are tiny: a second thread only waits, many times slower on
    a busy machine); a benchmark may set the count itself (the timing ones do): the next test gets the suite's back."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", NAMES)
def test_smoke(name, runs_root, one_thread, tmp_path):
    import importlib

    module = importlib.import_module(f"benchmarks.{registry()[name]}.{name}")
    for source in getattr(module, "NEEDS", ()):  # what its smoke test reads besides scikit-learn's data
        if source == "cifar10-exact":
            try:
                cifar10_exact()
            except SystemExit as e:
                missing(str(e))
        else:
            require_source(source)
    before = {p: p.stat().st_mtime_ns for p in RESULTS.rglob("*") if p.is_file()}
    b = run(name, ["--smoke", "--results", str(tmp_path)])
    assert b.written, f"{name} --smoke wrote no results file"
    for path in b.written:
        assert path.parent == tmp_path, f"{name} --smoke wrote {path}, not into --results"
        payload = json.loads(path.read_text())
        assert all(k in payload for k in STAMP), f"{path.name} lacks {[k for k in STAMP if k not in payload]}"
        assert payload["command"].startswith(f"python -m benchmarks {name} --smoke") and payload["smoke"] is True
        assert payload["commit"] and payload["machine"]["cpu"] and payload["versions"]["torch"] and payload["versions"]["vaelab"]
    assert {p: p.stat().st_mtime_ns for p in RESULTS.rglob("*") if p.is_file()} == before, "benchmarks/results changed"


def test_smoke_results_go_to_a_temporary_folder_never_to_benchmarks_results(runs_root, one_thread):
    b = run("tc_bias", ["--smoke"])
    try:
        assert b.written and all(RESULTS not in p.parents for p in b.written)
    finally:
        shutil.rmtree(b.results)
    with pytest.raises(SystemExit):
        run("tc_bias", ["--smoke", "--results", str(RESULTS)])


def test_list_names_every_benchmark_file_with_its_description():
    p = subprocess.run([sys.executable, "-m", "benchmarks", "--list"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    assert p.returncode == 0, p.stderr
    listed = {line.split()[0]: line.split(None, 1)[1] for line in p.stdout.splitlines() if line.startswith("  ")}
    files = {f.stem for f in PACKAGE.glob("*/*.py") if not f.name.startswith("_") and (f.parent / "__init__.py").is_file()}
    assert files and set(listed) == files
    assert all(d.strip() for d in listed.values()), "a benchmark without a one-line description"
    # every benchmark is in a topic: the package's own top level holds only the harness
    assert {f.name for f in PACKAGE.glob("*.py")} == {"__init__.py", "__main__.py", "_harness.py"}


def test_no_benchmark_changes_sys_path():
    """`python -m benchmarks` from the repository root makes the package importable; vaelab is installed."""
    hacks = [f.relative_to(ROOT) for f in PACKAGE.rglob("*.py") if "sys.path" in f.read_text()]
    assert not hacks, f"sys.path changed in {hacks}"
