"""The documentation a newcomer reads: the README stays short, every code block in it runs as
printed, and the docs site builds with warnings as errors."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_is_a_short_tour():
    n = len(README.splitlines())
    assert n <= 250, f"README.md has {n} lines; guides and results belong in docs/"
    assert "bash scripts/demo.sh" in README and "bash scripts/test.sh" in README


def test_docs_site_builds_with_warnings_as_errors(tmp_path):
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(tmp_path / "site")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "site" / "reference" / "models" / "index.html").is_file()
    page = (tmp_path / "site" / "reference" / "models" / "index.html").read_text()
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


def test_code_is_highlighted_without_a_cdn(tmp_path):
    """Code blocks are highlighted when the site is built (Pygments) and styled by a stylesheet the site
    serves itself: no page loads a script or a stylesheet from another host."""
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(tmp_path / "site")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    page = (tmp_path / "site" / "guide" / "training" / "index.html").read_text()
    assert '<div class="highlight">' in page and '<span class="s2">' in page  # tokens coloured at build time
    assert (tmp_path / "site" / "css" / "pygments.css").is_file()
    for html in (tmp_path / "site").rglob("*.html"):
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//[^"]+"', html.read_text())
        assert not remote, f"{html.relative_to(tmp_path)} loads {remote}"


def test_readme_shell_blocks_run_as_printed(tmp_path):
    """Every ```bash block but the set-up one (CI runs scripts/test.sh itself; scripts/demo.sh is
    the main job, ten minutes of training) runs in a fresh directory, in order, after the Python
    blocks that write a file (a block starting '# NAME.py') have been saved under that name."""
    for code in blocks("python"):
        first = code.splitlines()[0]
        m = re.fullmatch(r"# (\w+\.py)", first.strip())
        if m:
            (tmp_path / m.group(1)).write_text(code)
    shell = [b for b in blocks("bash") if "scripts/demo.sh" not in b]
    assert shell, "the README has no shell example"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    for code in shell:
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
        assert p.returncode == 0, f"README block failed:\n{code}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    assert (tmp_path / "runs" / "tour-compare.html").is_file()
    assert "vaelab compare" in (tmp_path / "runs" / "tour-compare.html").read_text()[:2000]
