"""One self-contained report.html: figures embedded as data URIs, no network needed."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text
from .glossary import describe

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-variant-numeric:tabular-nums}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.85em}img{max-width:100%;image-rendering:pixelated}
figure{margin:.5em 0}figcaption{color:#555;font-size:.9em}.unit{color:#777;font-weight:normal}
dt{font-weight:600;margin-top:.4em}dd{margin-left:1.5em;color:#444}.diff{background:#fff3b0}"""


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _name(key: str, vectors: bool = False) -> str:
    """A metric's readable name with its key and unit, for a table's first column."""
    d = describe(key, vectors)
    if d is None:
        return f"<code>{html.escape(key)}</code>"
    name, unit, _ = d
    return f"{html.escape(name)} <code>{html.escape(key)}</code>" + (f" <span class='unit'>({html.escape(unit)})</span>" if unit else "")


def metrics_table(metrics: dict[str, Any], vectors: bool = False) -> str:
    rows = "".join(f"<tr><th>{_name(k, vectors)}</th><td>{_fmt(v)}</td></tr>" for k, v in metrics.items() if not isinstance(v, (dict, list)))
    return f"<table>{rows}</table>"


def glossary(keys: list[str], vectors: bool = False) -> str:
    """The meaning of each metric shown, one line each (keys the glossary does not know are left out);
    ``vectors``: in the words of vector data."""
    items = [(k, describe(k, vectors)) for k in dict.fromkeys(keys)]
    rows = "".join(f"<dt>{html.escape(d[0])} <code>{html.escape(k)}</code></dt><dd>{html.escape(d[2])}"
                   + (f" ({html.escape(d[1])})" if d[1] else "") + "</dd>" for k, d in items if d is not None)
    return f"<h2>Glossary</h2><dl>{rows}</dl>" if rows else ""


def write_report(run_dir: Path, title: str, config_yaml: str, metrics: dict[str, Any],
                 figures: list[tuple[str, Path]], notes: list[str] | None = None, command: str | None = None,
                 vectors: bool = False) -> Path:
    """``figures``: (caption, png path) pairs, embedded in order; ``command``: what produced the run;
    ``vectors``: the data are vectors, and the glossary says so in their words."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if command:
        parts.append(f"<p>Produced by <code>{html.escape(command)}</code></p>")
    for n in notes or []:
        parts.append(f"<p>{html.escape(n)}</p>")
    parts.append("<h2>Metrics (test set)</h2>" + metrics_table(metrics, vectors))
    for caption, path in figures:
        if path is not None and Path(path).is_file():
            parts.append(_img(Path(path), caption))
    nested = {k: v for k, v in metrics.items() if isinstance(v, (dict, list))}
    if nested:
        parts.append("<h2>More results</h2><pre>" + html.escape(json.dumps(nested, indent=2)) + "</pre>")
    parts.append("<h2>Configuration</h2><pre>" + html.escape(config_yaml) + "</pre>")
    parts.append(glossary([k for k, v in metrics.items() if not isinstance(v, (dict, list))], vectors) + "</body></html>")
    out = run_dir / "report.html"
    atomic_write_text(out, "\n".join(parts))
    return out
