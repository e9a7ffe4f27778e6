"""The layout docs/architecture.md states: stages import only the stages below them, the command line
goes through vaelab.api (import-linter's contracts in pyproject.toml)."""
from pathlib import Path

from tests.conftest import require_module

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold(monkeypatch):
    require_module("importlinter")
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)  # the contracts are in pyproject.toml
    assert lint_imports(no_cache=True) == 0  # its report (printed) names each broken import and its line

