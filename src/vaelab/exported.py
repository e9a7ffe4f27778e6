"""Run an exported detector bundle (``vaelab export`` / ``vaelab.detect.export.export_detector``).

This module sits at the bottom of the package and imports nothing of vaelab's training stack
(no Lightning, no models, no scikit-learn): a deployment that only scores images needs numpy and
either onnxruntime (``format='onnx'``) or torch (``format='torchscript'``)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Callable

from .errors import DataError

OUTPUT_NAMES = ("raw_score", "score", "flag", "error_map", "pvalue")
MODEL_FILES = {"onnx": "scorer.onnx", "torchscript": "scorer.pt"}


# the largest manifest.json a bundle may have (vaelab's is about 2 kB)
MAX_MANIFEST_BYTES = 1 << 20


class BundleError(DataError, ValueError):
    """An export bundle or the images given to its scorer are not what the scorer takes."""


def manifest_digest(manifest: dict[str, Any]) -> str:
    """The sha256 of a manifest's content without its ``integrity`` entry (canonical JSON)."""
    body = {k: v for k, v in manifest.items() if k != "integrity"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ExportedScorer:
    """A callable over images [B, C, H, W] (a numpy array or a torch tensor) that returns a dict of
    numpy arrays: ``raw_score`` [B], ``score`` [B] (normalised, unclipped), ``flag`` [B] (int64,
    score > threshold) and ``error_map`` [B, H, W]. Images are taken as the Python detector takes
    them: uint8 is scaled by 1/255, uint16 as vaelab's image reader takes 16-bit files (to 8 bits), floats must be finite and lie in [0, 1];
    anything else (NaN, inf, another range or dtype, another shape) is refused with a BundleError.
    ``manifest`` holds the bundle's manifest.json."""

    def __init__(self, manifest: dict[str, Any], run: Callable[[Any], tuple]):
        self.manifest, self._run = manifest, run

    def __call__(self, images: Any) -> dict[str, Any]:
        import numpy as np

        x = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
        want = tuple(self.manifest["input_shape"][1:])
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise BundleError(f"the exported scorer takes images of shape (B, {', '.join(map(str, want))}); got "
                              f"{tuple(x.shape)}")
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255
        elif x.dtype == np.uint16:  # as vaelab's image reader takes a 16-bit file: to 8 bits (/ 257, rounded)
            x = np.round(x.astype(np.float32) / 257) / 255
        elif x.dtype.kind == "f":
            if not np.isfinite(x).all():
                raise BundleError(f"{int((~np.isfinite(x)).sum())} pixel value(s) are NaN or infinite; the scorer takes "
                                  "finite values in [0, 1] (or uint8 / uint16 images)")
            if x.size and (x.min() < 0 or x.max() > 1):
                raise BundleError(f"float images must lie in [0, 1], these span [{float(x.min()):g}, {float(x.max()):g}]; "
                                  "rescale them (x / 255 for 8-bit values) or pass uint8 / uint16 arrays")
        else:
            raise BundleError(f"images of dtype {x.dtype} are not taken; pass uint8, uint16 or float in [0, 1]")
        x = np.ascontiguousarray(x, dtype=np.float32)
        return dict(zip(self.manifest["outputs"], (np.asarray(o) for o in self._run(x))))


def _read_manifest(path: Path) -> dict[str, Any]:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise BundleError(f"{path}: cannot be read ({e.strerror}); is this an export bundle (vaelab export)? "
                          "A symlink is not followed") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BundleError(f"{path} is not a regular file")
        data = os.read(fd, MAX_MANIFEST_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} is larger than {MAX_MANIFEST_BYTES:,} bytes; it is not a vaelab manifest")
    try:
        manifest = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}); export the bundle again") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} holds no JSON object; export the bundle again")
    return manifest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_manifest(manifest: dict[str, Any], out_dir: Path) -> Path:
    """Refuse a manifest that was edited, damaged or not written by vaelab, saying what is wrong;
    returns the scorer file it names."""
    where = out_dir / "manifest.json"

    def bad(why: str) -> BundleError:
        return BundleError(f"{where}: {why}. The bundle was edited or damaged; export it again (vaelab export)")

    fmt = manifest.get("format")
    if fmt not in MODEL_FILES:
        raise bad(f"format {fmt!r} is not one this loader runs ({', '.join(MODEL_FILES)}); nothing else is loaded")
    if manifest.get("file", MODEL_FILES[fmt]) != MODEL_FILES[fmt]:
        raise bad(f"file {manifest.get('file')!r} is not the {fmt} scorer's name {MODEL_FILES[fmt]}")
    shape = manifest.get("input_shape")
    if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 1 << 16
                                                               for d in shape[1:])):
        raise bad(f"input_shape {shape!r} is not [batch, C, H, W]")
    if manifest.get("outputs") != list(OUTPUT_NAMES):
        raise bad(f"outputs {manifest.get('outputs')!r} are not {list(OUTPUT_NAMES)}")
    if not _finite(manifest.get("threshold")):
        raise bad(f"threshold {manifest.get('threshold')!r} is not a finite number")
    norm = manifest.get("normalization")
    if not isinstance(norm, dict) or not all(_finite(norm.get(k)) for k in ("raw_min", "raw_max", "span_used")) \
            or not norm["span_used"] > 0:
        raise bad(f"normalization {norm!r} does not hold finite raw_min, raw_max and a positive span_used")
    path = out_dir / MODEL_FILES[fmt]
    if path.is_symlink() or not path.is_file():
        raise bad(f"{path.name} is missing or a symlink")
    integrity = manifest.get("integrity")
    if integrity is not None:  # bundles of vaelab >= this version carry it
        if not isinstance(integrity, dict) or integrity.get("manifest_sha256") != manifest_digest(manifest):
            raise bad("its content does not match the digest written at export (integrity.manifest_sha256)")
        if integrity.get("file_sha256") != file_digest(path):
            raise bad(f"{path.name} does not match the digest written at export (integrity.file_sha256)")
    return path


def load_exported(out_dir: str | Path) -> ExportedScorer:
    """The scorer of an export bundle directory, run with onnxruntime or ``torch.jit.load`` as its
    manifest's ``format`` says; an edited, damaged or foreign manifest is refused (``check_manifest``)."""
    out_dir = Path(out_dir)
    manifest = _read_manifest(out_dir / "manifest.json")
    path = check_manifest(manifest, out_dir)
    fmt = manifest["format"]
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def run(x: Any) -> tuple:
            return tuple(sess.run(list(manifest["outputs"]), {name: x}))
    else:
        import torch

        mod = torch.jit.load(str(path), map_location="cpu").eval()

        def run(x: Any) -> tuple:
            with torch.inference_mode():
                return tuple(o.numpy() for o in mod(torch.from_numpy(x)))
    return ExportedScorer(manifest, run)
