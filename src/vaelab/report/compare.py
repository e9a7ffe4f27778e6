"""One self-contained page comparing runs: their configs (the keys that differ highlighted), a
metrics table, the training curves of every loss term overlaid, and samples and reconstructions
side by side. Figures are embedded as data URIs, so the page opens offline."""
from __future__ import annotations

import html
import json
import tempfile
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_figure, atomic_write_text
from ..plotting import smooth, term_panels
from .figures import read_metrics_csv
from .html import CSS, _fmt, _img, _name, glossary

GENERATOR = "vaelab compare"  # marks a page this command wrote (and may write again)
SIDE_BY_SIDE = (("samples.png", "Samples from the prior"), ("samples_gmm.png", "Samples from a Gaussian mixture fitted to the codes"),
                ("reconstructions.png", "Reconstructions (odd rows: originals)"))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _labels(runs: list[Path]) -> list[str]:
    """Short names: the directory names, with their parents where two are alike."""
    names = [r.name for r in runs]
    if len(set(names)) < len(names):
        names = [f"{r.parent.name}/{r.name}" for r in runs]
    return [n if names.count(n) == 1 else f"{n} ({i + 1})" for i, n in enumerate(names)]


def load_runs(runs: list[str | Path]) -> list[dict[str, Any]]:
    """Each run's flattened config, metrics and training-log rows; a directory that is not a
    finished run is refused with its name."""
    from ..runfiles import check_links, read_text
    from ..train.config import RunConfig

    if len(runs) < 2:
        raise ConfigError(f"compare takes at least two runs, got {len(runs)}")
    out = []
    for r in map(Path, runs):
        if not (r / "config.yaml").is_file():
            raise CheckpointError(f"{r} is not a vaelab run directory (no config.yaml)")
        metrics_path = r / "metrics.json"
        if not metrics_path.is_file():
            raise CheckpointError(f"{r} has no metrics.json yet: finish or resume it (vaelab train --resume {r})")
        check_links(r)  # nothing of a run is read through a symlink
        cfg = RunConfig.load(r / "config.yaml")
        metrics = json.loads(read_text(metrics_path))
        out.append({"dir": r, "config": _flatten(cfg.to_dict()), "metrics": metrics,
                    "log": read_metrics_csv(r / "logs" / "metrics.csv")})
    for run, label in zip(out, _labels([o["dir"] for o in out])):
        run["label"] = label
    return out


def comparison_table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The comparison as plain data (``vaelab compare --json``): run labels and directories, every
    scalar metric per run (None where a run lacks it), and the config keys whose values differ."""
    keys = list(dict.fromkeys(k for r in runs for k, v in r["metrics"].items() if isinstance(v, (int, float, str, bool))))
    ckeys = list(dict.fromkeys(k for r in runs for k in r["config"]))
    differ = {k: [r["config"].get(k) for r in runs] for k in ckeys
              if len({json.dumps(r["config"].get(k), sort_keys=True) for r in runs}) > 1}
    return {"runs": [r["label"] for r in runs], "dirs": [str(r["dir"].resolve()) for r in runs],
            "metrics": {k: [r["metrics"].get(k) for r in runs] for k in keys}, "config_differences": differ}


def overlaid_curves(runs: list[dict[str, Any]], out: Path) -> Path | None:
    """One panel per loss term: each run's training value per step (faint) under its moving average."""
    terms = sorted({c.split("/", 1)[1] for r in runs for row in r["log"][:1] for c in row
                    if c.startswith("train/") and c not in ("train/lr", "train/kl_weight")})
    if not terms:
        return None
    fig, panels = term_panels(terms)
    for term, ax in panels:
        for r in runs:
            pts = [(float(row["step"]), float(row[f"train/{term}"])) for row in r["log"] if row.get(f"train/{term}") not in (None, "")]
            if not pts:
                continue
            s, v = zip(*pts)
            line = ax.plot(s, v, "-", lw=0.5, alpha=0.2)[0]
            ax.plot(s, smooth(v), "-", lw=1.4, color=line.get_color(), label=r["label"])
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    return atomic_write_figure(fig, out)


def write_comparison(runs: list[dict[str, Any]], out: Path) -> Path:
    """Write the comparison page to ``out`` (see the module docstring)."""
    table = comparison_table(runs)
    labels = table["runs"]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in labels)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta name='generator' content='{GENERATOR}'>"
             f"<title>vaelab: {len(runs)} runs compared</title><style>{CSS}</style></head><body>",
             f"<h1>{len(runs)} runs compared</h1><ul>" + "".join(
                 f"<li><b>{html.escape(n)}</b>: <code>{html.escape(d)}</code></li>" for n, d in zip(labels, table["dirs"])) + "</ul>"]
    rows = "".join(f"<tr><th>{_name(k)}</th>" + "".join(f"<td>{'' if v is None else _fmt(v)}</td>" for v in vals) + "</tr>"
                   for k, vals in table["metrics"].items())
    parts.append(f"<h2>Metrics (test set)</h2><table><tr><th></th>{head}</tr>{rows}</table>")
    with tempfile.TemporaryDirectory(prefix="vaelab-compare-") as tmp:
        curves = overlaid_curves(runs, Path(tmp) / "curves.png")
        if curves is not None:
            parts.append("<h2>Training curves</h2>" + _img(curves, "Every loss term per step: each run's values (faint) and their moving average"))
    for fname, caption in SIDE_BY_SIDE:
        cells = [(r["label"], r["dir"] / "figures" / fname) for r in runs]
        if not any(p.is_file() for _, p in cells):
            continue
        parts.append(f"<h2>{html.escape(caption)}</h2><table><tr>{head}</tr><tr>" + "".join(
            f"<td style='vertical-align:top'>{_img(p, n) if p.is_file() else 'not drawn for this run'}</td>" for n, p in cells)
            + "</tr></table>")
    keys = list(dict.fromkeys(k for r in runs for k in r["config"]))
    diff = set(table["config_differences"])
    crow = "".join(f"<tr{' class=diff' if k in diff else ''}><th><code>{html.escape(k)}</code></th>" + "".join(
        f"<td>{html.escape(json.dumps(r['config'].get(k)))}</td>" for r in runs) + "</tr>" for k in keys)
    parts.append(f"<h2>Configurations</h2><p>{len(diff)} keys differ (highlighted).</p>"
                 f"<table><tr><th></th>{head}</tr>{crow}</table>")
    parts.append(glossary(list(table["metrics"])) + "</body></html>")
    atomic_write_text(out, "\n".join(parts))
    return out
