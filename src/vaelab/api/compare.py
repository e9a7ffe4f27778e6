"""The compare job: one self-contained HTML page (and a table) comparing finished runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..report.compare import GENERATOR, comparison_table, load_runs, write_comparison


def compare_runs(runs: list[str | Path], out: str | Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """Compare ``runs`` (at least two run directories): write ``out`` (an .html file; None: no page)
    and return (its path, the table of ``vaelab compare --json``). A file at ``out`` that this
    command did not write is refused rather than overwritten."""
    loaded = load_runs(list(runs))
    table = comparison_table(loaded)
    if out is None:
        return None, table
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"--out {out}: the comparison is an HTML page; name a .html file")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; name a .html file, e.g. {out / 'compare.html'}")
    if out.exists() and GENERATOR not in out.read_text(encoding="utf-8", errors="replace")[:2000]:
        raise ConfigError(f"--out {out} already exists and is not a vaelab comparison; choose another name")
    return write_comparison(loaded, out), table
