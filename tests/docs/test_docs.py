"""The documentation a newcomer reads: the README stays short, every code block in it runs as
printed, and the docs site builds with warnings as errors."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import vaelab_here

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_is_a_short_tour():
    n = len(README.splitlines())
    assert n <= 250, f"README.md has {n} lines; guides and results belong in docs/"
    assert "bash scripts/demo.sh" in README and "bash scripts/test.sh" in README


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The docs site, built once for the tests that read it: warnings are errors."""
    out = tmp_path_factory.mktemp("docs") / "site"
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def test_docs_site_builds_with_warnings_as_errors(site):
    assert (site / "reference" / "models" / "index.html").is_file()
    page = (site / "reference" / "models" / "index.html").read_text()
    assert "register_model" in page and "Autoencoder" in page  # the API reference is generated from the docstrings


def test_the_docs_index_links_every_page_of_the_site():
    """The front page's "Where to read" list names every guide and page of the navigation."""
    import yaml

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for v in node.values():
                yield from pages(v)
        elif isinstance(node, list):
            for v in node:
                yield from pages(v)

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    index = (ROOT / "docs" / "index.md").read_text()
    missing = [p for p in pages(nav) if p != "index.md" and not p.startswith("reference/") and f"]({p})" not in index]
    assert not missing, f"docs/index.md does not link {missing}"


def test_code_is_highlighted_without_a_cdn(site):
    """Code blocks are highlighted when the site is built (Pygments) and styled by a stylesheet the site
    serves itself: no page loads a script or a stylesheet from another host."""
    page = (site / "guide" / "training" / "index.html").read_text()
    assert '<div class="highlight">' in page and '<span class="s2">' in page  # tokens coloured at build time
    assert (site / "css" / "pygments.css").is_file()
    for html in site.rglob("*.html"):
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//[^"]+"', html.read_text())
        assert not remote, f"{html.relative_to(site.parent)} loads {remote}"


# a word that bash passes on as it is (no quoting, expansion or operator in it): KEY=VALUE, paths, and
# list values such as model.mlp_hidden=[32], a glob that matches no file and so stays as printed
PLAIN_WORD = re.compile(r"[\w./:,=+@%\[\]-]+")


def commands(block: str) -> list[list[str]] | None:
    """The arguments of each command of a shell block, split as bash splits them (comments, line
    continuations), when every command is ``vaelab`` with plain words; None when the block needs more
    of the shell (quotes, pipes, redirections, variables, other programs)."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] != "vaelab" or not all(PLAIN_WORD.fullmatch(w) for w in words):
            return None
        out.append(words[1:])
    return out


def test_readme_shell_blocks_run_as_printed(tmp_path):
    """Every ```bash block but the set-up one (CI runs scripts/test.sh itself; scripts/demo.sh is
    the main job, ten minutes of training) runs in a fresh directory, in order, after the Python
    blocks that write a file (a block starting '# NAME.py') have been saved under that name. Each
    `vaelab` line runs, with the words bash would give it, through the main() the command runs, in
    this process (a dozen interpreter start-ups and torch imports were most of this test's time);
    tests/cli/test_cli.py runs the console script itself. A block that needs more of the shell than
    plain commands runs in bash."""
    for code in blocks("python"):
        first = code.splitlines()[0]
        m = re.fullmatch(r"# (\w+\.py)", first.strip())
        if m:
            (tmp_path / m.group(1)).write_text(code)
    shell = [b for b in blocks("bash") if "scripts/demo.sh" not in b]
    assert shell, "the README has no shell example"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    for code in shell:
        argvs = commands(code)
        if argvs is None:
            p = subprocess.run(["bash", "-euo", "pipefail", "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                               timeout=900)
            assert p.returncode == 0, f"README block failed:\n{code}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
            continue
        for argv in argvs:
            p = vaelab_here(*argv, cwd=tmp_path)
            assert p.returncode == 0, f"README command failed: vaelab {' '.join(argv)}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    assert (tmp_path / "runs" / "tour-compare.html").is_file()
    assert "vaelab compare" in (tmp_path / "runs" / "tour-compare.html").read_text()[:2000]


def test_the_readme_commands_are_split_as_bash_splits_them():
    """The splitting above against bash itself, line by line of the README's blocks, and None for what
    needs the shell."""
    lines = [ln for b in blocks("bash") if "scripts/demo.sh" not in b for ln in b.splitlines() if ln.strip()]
    script = "".join(f"printf '%s\\n' {ln}\necho ---\n" for ln in lines)  # each word on a line of its own
    p = subprocess.run(["bash", "-euc", script], capture_output=True, text=True, timeout=60)
    by_bash = [chunk.split() for chunk in p.stdout.split("---\n")[:-1]]
    assert [["vaelab", *commands(ln)[0]] for ln in lines] == by_bash
    for needs_the_shell in ("vaelab models | head", "ls runs", "vaelab sample $RUN", "vaelab sample 'my run'", "vaelab models > x"):
        assert commands(needs_the_shell) is None
    assert commands("vaelab train vae \\\n  --epochs 2  # two\n\nvaelab models") == [["train", "vae", "--epochs", "2"], ["models"]]


# -- every figure in the result tables comes from the JSON its benchmark wrote ------------------------
RESULTS = ROOT / "benchmarks" / "results"
NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?%?")
RANGE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)%?-(\d+(?:\.\d+)?)%")  # 8.4-15.1% or 8.4%-15.1%: two percentages
# text in a cell that quotes someone else's figure, not a measurement of ours
QUOTED = re.compile(r"`[^`]*`|\([^()]*(?:paper|plain PyTorch)[^()]*\)")


def _result_files(text: str) -> list[Path]:
    """The results files a paragraph or row names: NAME.json, benchmarks/NAME.py, `python -m benchmarks NAME`
    and `--name NAME` (a benchmark's results go to NAME.json, and its variants to NAME_*.json)."""
    names = (set(re.findall(r"(\w+)\.json", text)) | set(re.findall(r"benchmarks/(\w+)\.py", text))
             | set(re.findall(r"python -m benchmarks (\w+)", text)) | set(re.findall(r"--name (\w+)", text)))
    return sorted({p for n in names for p in [*RESULTS.glob(f"{n}.json"), *RESULTS.glob(f"{n}_*.json")]})


def _numbers_in(path: Path) -> list[float]:
    out: list[float] = []

    def walk(o):
        if isinstance(o, bool):
            return
        if isinstance(o, (int, float)):
            out.append(float(o))
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(json.loads(path.read_text()))
    return out


def _tables(text: str) -> list[tuple[int, str, list[str]]]:
    """(line of the header, the text since the previous table or heading, the rows) of each Markdown table."""
    lines, out, i, last = text.splitlines(), [], 0, 0
    while i < len(lines):
        if lines[i].lstrip().startswith("|") and i + 1 < len(lines) and lines[i + 1].lstrip().startswith("|---"):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            k = i - 1
            while k > last and not lines[k].startswith("#"):
                k -= 1
            out.append((i + 1, "\n".join(lines[k:i]), [r.strip() for r in lines[i:j]]))
            last, i = j, j
        else:
            i += 1
    return out


def _figures(cell: str) -> list[tuple[str, bool]]:
    """The decimal figures of a table cell, each with whether it is a percentage; integers (counts, epochs,
    seeds) are left out."""
    cell = QUOTED.sub("", cell)
    found = [(m.group(1), True) for m in RANGE.finditer(cell)] + [(m.group(2), True) for m in RANGE.finditer(cell)]
    for m in NUMBER.finditer(RANGE.sub("", cell)):
        found.append((m.group().rstrip("%"), m.group().endswith("%")))
    return [(s, pct) for s, pct in found if "." in s]


def unmatched_figures(doc: Path) -> list[str]:
    """Every decimal figure in the doc's result tables that no number in the results files named for that
    table (or row) rounds to at the figure's precision. A table's files are named in the text before it,
    or in the row (the README's summary table names each row's benchmark); a table whose text names none
    takes the previous table's. A signed figure (+0.178) may instead be the difference of two figures of its row."""
    bad, previous = [], []
    for line, before, rows in _tables(doc.read_text()):
        files = _result_files(before) or previous
        previous, row_files = files, files
        for n, row in enumerate(rows[2:], start=line + 2):
            cells = row.strip("|").split("|")[1:]  # the first column names the row
            figures = [f for c in cells for f in _figures(c)]
            if not figures:
                continue
            row_files = _result_files(row) or (row_files if "same" in row else files)
            if not row_files:
                bad.append(f"{doc.name}:{n}: no results file named for this table")
                continue
            values = [v for f in row_files for v in _numbers_in(f)]
            plain = [float(s.replace(",", "")) for s, pct in figures if not pct]
            for s, pct in figures:
                x, digits = float(s.replace(",", "").lstrip("+")), len(s.split(".")[1])
                tol = 0.5 * 10 ** -digits + 1e-9  # the figure is the value rounded (half up or half even)
                scale = 100.0 if pct else 1.0
                if any(abs(abs(v * scale) - abs(x)) <= tol for v in values):
                    continue
                if s.startswith("+") and any(abs((a - b) - x) <= 2 * tol for a in plain for b in plain):
                    continue
                bad.append(f"{doc.name}:{n}: {s}{'%' if pct else ''} not in {', '.join(f.name for f in row_files)}")
    return bad


def test_every_figure_in_the_result_tables_is_in_its_results_file():
    """The README's and docs/results.md's result tables quote what benchmarks/results/*.json hold: a figure
    changed by hand, or left behind when its benchmark ran again, fails here with its line."""
    bad = unmatched_figures(ROOT / "README.md") + unmatched_figures(ROOT / "docs" / "results.md")
    assert not bad, "figures not found in their results files:\n" + "\n".join(bad)


def test_the_figures_check_catches_a_figure_changed_by_hand(tmp_path):
    """The check above is not vacuous: one figure of docs/results.md changed in its last digit is found."""
    text = (ROOT / "docs" / "results.md").read_text()
    assert "| Fashion-MNIST | 240.12 |" in text
    changed = tmp_path / "results.md"
    changed.write_text(text.replace("| Fashion-MNIST | 240.12 |", "| Fashion-MNIST | 240.13 |"))
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("| Fashion-MNIST | 240.12 |"))
    assert unmatched_figures(changed) == [f"results.md:{line}: 240.13 not in vae_baseline.json"]
