"""Running a guide of docs/ as printed: its one-file example saved under its name, then each line of
its first shell block through the same main() the `vaelab` command runs, in this process."""
from __future__ import annotations

import contextlib
import re
import shlex
from pathlib import Path
from typing import Iterator

DOCS = Path(__file__).resolve().parents[1] / "docs"


def guide_blocks(guide: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / "guide" / guide).read_text(), flags=re.S)


def run_guide(guide: str, example: str, where: Path, monkeypatch, capsys) -> list[str]:
    """Save the guide's Python block that starts with ``# EXAMPLE`` as ``where/EXAMPLE``, run each
    command of its first bash block from ``where`` (quietly: no progress lines), and return what each
    printed on stdout; a command that fails fails the test with its stderr."""
    from vaelab.cli import main
    from vaelab.progress import set_quiet

    (code,) = [b for b in guide_blocks(guide, "python") if b.startswith(f"# {example}")]
    (where / example).write_text(code)
    monkeypatch.chdir(where)
    outputs = []
    try:
        for line in filter(None, (ln.split("#")[0].strip() for ln in guide_blocks(guide, "bash")[0].splitlines())):
            argv = shlex.split(line)
            assert argv[0] == "vaelab", line
            assert main([*argv[1:], "--quiet"]) == 0, f"{line}\n{capsys.readouterr().err}"
            outputs.append(capsys.readouterr().out)
    finally:
        set_quiet(False)  # --quiet outlives the command in this process: the tests after it see progress
    return outputs


@contextlib.contextmanager
def restored(registry: dict) -> Iterator[dict]:
    """The registry as it was before: what the block registers is gone after it."""
    before = dict(registry)
    try:
        yield registry
    finally:
        registry.clear()
        registry.update(before)
