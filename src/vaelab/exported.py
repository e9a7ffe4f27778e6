"""Run an exported detector bundle (``vaelab export`` / ``vaelab.detect.export.export_detector``).

This module sits at the bottom of the package and imports nothing of vaelab's training stack
(no Lightning, no models, no scikit-learn): a deployment that only scores images needs numpy and
either onnxruntime (``format='onnx'``) or torch (``format='torchscript'``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

OUTPUT_NAMES = ("raw_score", "score", "flag", "error_map")
MODEL_FILES = {"onnx": "scorer.onnx", "torchscript": "scorer.pt"}


class ExportedScorer:
    """A callable over float images [B, C, H, W] in [0, 1] (a numpy array or a torch tensor) that
    returns a dict of numpy arrays: ``raw_score`` [B], ``score`` [B] (normalised, unclipped),
    ``flag`` [B] (int64, score > threshold) and ``error_map`` [B, H, W]. ``manifest`` holds the
    bundle's manifest.json."""

    def __init__(self, manifest: dict[str, Any], run: Callable[[Any], tuple]):
        self.manifest, self._run = manifest, run

    def __call__(self, images: Any) -> dict[str, Any]:
        import numpy as np

        x = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
        x = np.ascontiguousarray(x, dtype=np.float32)
        want = tuple(self.manifest["input_shape"][1:])
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"the exported scorer takes float images of shape (B, {', '.join(map(str, want))}) in [0, 1]; "
                             f"got {x.shape}")
        return dict(zip(self.manifest["outputs"], (np.asarray(o) for o in self._run(x))))


def load_exported(out_dir: str | Path) -> ExportedScorer:
    """The scorer of an export bundle directory, run with onnxruntime or ``torch.jit.load`` as its
    manifest's ``format`` says."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    fmt = manifest["format"]
    path = out_dir / manifest.get("file", MODEL_FILES[fmt])
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def run(x: Any) -> tuple:
            return tuple(sess.run(list(manifest["outputs"]), {name: x}))
    elif fmt == "torchscript":
        import torch

        mod = torch.jit.load(str(path), map_location="cpu").eval()

        def run(x: Any) -> tuple:
            with torch.inference_mode():
                return tuple(o.numpy() for o in mod(torch.from_numpy(x)))
    else:
        raise ValueError(f"unknown export format {fmt!r} in {out_dir / 'manifest.json'}; expected one of {', '.join(MODEL_FILES)}")
    return ExportedScorer(manifest, run)
