"""The app job: fit a run's detector and serve the page that scores one image (vaelab.app)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def app_run(run_dir: str | Path, host: str = "127.0.0.1", port: int | None = None, score: str | None = None,
            examples: int = 8, block: bool = True, **detector_options: Any):
    """Fit ``run_dir``'s detector on its training split and serve the page on ``host:port``
    (blocking until interrupted unless ``block`` is False); returns the Gradio page."""
    from ..app import AppScorer, _gradio, build_app, launch_app

    _gradio()  # refuse before fitting anything when the extra is missing
    scorer = AppScorer(run_dir, score, **detector_options)
    return launch_app(build_app(scorer, examples), host, port, block)
