"""The layout docs/architecture.md states: stages import only the stages below them, the command line
goes through vaelab.api (import-linter's contracts in pyproject.toml), and no module is over 450 lines."""
from pathlib import Path

from tests.conftest import require_module

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 450


def test_import_contracts_hold(monkeypatch):
    require_module("importlinter")
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)  # the contracts are in pyproject.toml
    assert lint_imports(no_cache=True) == 0  # its report (printed) names each broken import and its line


def test_no_module_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "src" / "vaelab").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules (lines): {long}"


def test_a_job_imports_only_what_it_runs():
    """vaelab.api imports each job when it is first used: the generation job (`vaelab sample`) leaves out
    the detector, the metrics and scikit-learn, which cost a command seconds of start-up."""
    import subprocess
    import sys

    code = ("import sys, vaelab.api, vaelab.cli.commands; vaelab.api.sample_run; vaelab.api.load_run; "
            "print(sorted(m for m in ('sklearn', 'vaelab.detect', 'vaelab.evaluate', 'vaelab.report') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"importing the generation job also imported {out}"
    bad = subprocess.run([sys.executable, "-c", "import vaelab.api; vaelab.api.no_such_job"], capture_output=True, text=True)
    assert bad.returncode != 0 and "has no attribute 'no_such_job'" in bad.stderr


def test_every_lazy_job_is_exported_and_resolves():
    """vaelab.api's written-out __all__ names exactly the jobs it imports lazily, and each one resolves."""
    import vaelab.api as api

    assert sorted(api.__all__) == sorted(api._HOME)
    for name in api.__all__:
        assert callable(getattr(api, name)), name
