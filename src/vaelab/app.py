"""A local web page to try a trained run's detector on one image (``vaelab app RUN``).

``AppScorer`` is the page's logic without any web code: it fits the run's detector on the run's
training split (as ``vaelab detect`` and ``vaelab export`` do) and, for one image of any size and
mode, returns the raw and normalised score, the flag, the reconstruction and the squared-error
anomaly map in colour. ``build_app`` wraps it in a Gradio page (the optional ``app`` extra:
``pip install "vaelab[app]"``) with an upload box and example images from the run's test split;
``launch_app`` serves it, on 127.0.0.1 unless told otherwise.

The map's colours are on one scale for every image: 0 is black and the 99.9th percentile of the
training images' pixel errors is white-hot, so a normal image looks dark and a defect bright,
instead of every image being stretched to its own maximum."""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError, DataError, VaelabError

log = logging.getLogger("vaelab")

DISPLAY_SIZE = 224  # pixels of the longer side of the images the page shows (nearest-neighbour upscaled)
MAP_QUANTILE = 0.999
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class AppScorer:
    """The run's fitted detector as ``scorer(image) -> dict`` for the page; see the module docstring.

    ``run_dir``: a trained image run. ``score``: the anomaly score (default: the library's combo);
    ``detector_options``: AutoencoderDetector options (threshold, contamination, threshold_rule...)."""

    def __init__(self, run_dir: str | Path, score: str | None = None, max_map_images: int = 1000, **detector_options: Any):
        from .data import load_run_data
        from .detect import DEFAULT_SCORE, AutoencoderDetector
        from .detect.maps import mse_map
        from .train import RunConfig, load_run

        self.run_dir = Path(run_dir)
        if not (self.run_dir / "config.yaml").is_file():
            raise ConfigError(f"{self.run_dir} is not a run directory (no config.yaml); pass the directory `vaelab train` "
                              "wrote")
        self.cfg = RunConfig.load(self.run_dir / "config.yaml")
        self.model = load_run(self.run_dir).eval()
        if self.model.is_vector:
            raise ConfigError(f"{self.run_dir} models vectors (tabular data); the app shows images. Score vectors with "
                              "`vaelab detect` or vaelab.detect.AutoencoderDetector")
        train, held_out, _ = load_run_data(self.cfg.data, self.cfg.seed, self.run_dir)
        opts = {"contamination": 0.1, **detector_options}
        self.score = score or DEFAULT_SCORE
        self.detector = AutoencoderDetector(self.model, self.score, seed=self.cfg.seed,
                                            batch_size=self.cfg.train.eval_batch_size, **opts).fit(
            train, calibration_set=held_out if len(held_out) else None)  # as vaelab detect: the run's validation split
        self.shape = tuple(self.model.image_shape)  # (C, H, W)
        sample = train.images[:max_map_images]
        with torch.no_grad():
            maps = mse_map(self.model, sample.float() / 255)
        self.map_scale = max(float(torch.quantile(maps.flatten().double(), MAP_QUANTILE)), 1e-12)

    @property
    def channels(self) -> int:
        return self.shape[0]

    def prepare(self, image: Any) -> tuple[torch.Tensor, str]:
        """[1, C, H, W] float in [0, 1] from an image array (H x W, H x W x 1/3/4, uint8 or float in
        [0, 1]); resized to the model's size and converted to its channels. Returns a note on what
        was changed ('' when nothing was)."""
        from PIL import Image

        if image is None:
            raise DataError("no image given: upload one or pick an example")
        if isinstance(image, (str, os.PathLike, bytes)):  # a file: vaelab's own reader, as `vaelab detect` reads it
            image = read_image_file(image, "L" if self.channels == 1 else "RGB")
        a = np.asarray(image)
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
            raise DataError(f"an image must be H x W or H x W x 1/3/4 channels, got shape {a.shape}")
        if a.dtype == np.uint16:  # 16-bit values scaled to 8 bits as the image reader does (/ 257), never clipped
            a = np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
        elif a.dtype.kind == "f":
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                raise DataError("a float image must hold values in [0, 1]; pass uint8 (0-255) otherwise")
            a = (a * 255).round().astype(np.uint8)
        elif a.dtype != np.uint8:
            raise DataError(f"images of dtype {a.dtype} are not taken; pass uint8, uint16 or float in [0, 1]")
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        pil = Image.fromarray(a)
        notes = []
        mode = "L" if self.channels == 1 else "RGB"
        if pil.mode != mode:
            notes.append(f"converted {pil.mode} to {mode}")
            pil = pil.convert(mode)
        c, h, w = self.shape
        if pil.size != (w, h):
            notes.append(f"resized {pil.size[0]}x{pil.size[1]} to {w}x{h}")
            pil = pil.resize((w, h), Image.BILINEAR)
        arr = np.asarray(pil, dtype=np.uint8)
        x = torch.from_numpy(arr.copy()).float().div(255)
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)
        return x.unsqueeze(0), "; ".join(notes)

    def _display(self, img: np.ndarray) -> np.ndarray:
        """[H, W] or [H, W, 3] uint8 upscaled (nearest) so its longer side is about DISPLAY_SIZE."""
        k = max(1, DISPLAY_SIZE // max(img.shape[:2]))
        return np.repeat(np.repeat(img, k, axis=0), k, axis=1)

    def __call__(self, image: Any) -> dict[str, Any]:
        """{'raw_score', 'score', 'flag' (0/1), 'pvalue' (conformal, against the run's validation split), 'verdict',
        'note', 'reconstruction' and 'anomaly_map' (uint8 display images), 'map' (the [H, W] squared-error map)}
        for one image."""
        import matplotlib

        from .detect.conformal import conformal_pvalues

        x, note = self.prepare(image)
        u8 = (x * 255).round().to(torch.uint8)
        det = self.detector
        raw = float(det.raw_scores(u8)[0])
        score = float(det.decision_function(u8, clip=False)[0])
        flag = int(score > det.threshold_)
        # the conformal p-value against the run's validation split: the share of normal images scoring at least as high
        pvalue = float(conformal_pvalues(det.calibration_scores_, [score])[0]) if det.held_out_ else None
        with torch.no_grad():
            recon = self.model.reconstruct(x).clamp(0, 1)
        err = (recon - x).pow(2).mean(1)[0].numpy()
        rgb = matplotlib.colormaps["inferno"](np.clip(err / self.map_scale, 0, 1))[..., :3]
        rec = (recon[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        rec = rec[..., 0] if rec.shape[2] == 1 else rec
        verdict = (f"{'ANOMALY' if flag else 'normal'}: score {score:.3f} {'>' if flag else '<='} threshold "
                   f"{det.threshold_:.3f} ({self.score}, raw {raw:.4g})"
                   + (f"; p-value {pvalue:.3g} (the share of {det.n_calibration_} held-out normal images scoring at least "
                      "as high, counting this one)" if pvalue is not None else ""))
        return {"raw_score": raw, "score": score, "flag": flag, "pvalue": pvalue, "verdict": verdict, "note": note, "map": err,
                "reconstruction": self._display(rec), "anomaly_map": self._display((rgb * 255).round().astype(np.uint8))}

    def example_images(self, n: int, directory: str | Path) -> list[Path]:
        """Up to ``n`` images of the run's test split as PNG files in ``directory`` (one per class
        first when the split is labelled), for the page's examples."""
        from PIL import Image

        from .data import load_split

        test = load_split(self.cfg.data, "test", apply_class_filter=False)
        idx = list(range(min(n, len(test))))
        if test.labels is not None:
            labels = test.labels.numpy()
            first = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
            idx = (first + [i for i in range(len(test)) if i not in set(first)])[:n]
        out = []
        for i in idx:
            a = test.images[i].permute(1, 2, 0).numpy()
            a = a[..., 0] if a.shape[2] == 1 else a
            p = Path(directory) / f"test-{i}.png"
            Image.fromarray(a).save(p)
            out.append(p)
        return out


# the largest upload the page reads (the image reader refuses more than 67 M pixels before decoding)
MAX_UPLOAD_BYTES = 256 << 20


def read_image_file(image: str | os.PathLike | bytes, mode: str) -> np.ndarray:
    """An uploaded file decoded by vaelab's image reader (``decode_image``: the pixel limit checked
    before decoding, 16-bit scaled to 8 bits), as H x W (x 3) uint8; anything that is not an image
    is a DataError saying so."""
    from .data.parsers import decode_image

    if isinstance(image, bytes):
        data, name = image, "the uploaded file"
    else:
        name = Path(image).name or "the uploaded file"
        try:
            with open(image, "rb") as fh:
                data = fh.read(MAX_UPLOAD_BYTES + 1)
        except OSError as e:
            raise DataError(f"{name}: cannot be read ({e.strerror or e})") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise DataError(f"{name}: larger than {MAX_UPLOAD_BYTES >> 20} MiB; not an image the page scores")
    arr = decode_image(data, name, mode)
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def _gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the page phones nowhere
    try:
        import gradio as gr
    except ImportError:
        raise ConfigError('vaelab app needs Gradio, an optional extra: pip install "vaelab[app]"') from None
    return gr


def build_app(scorer: AppScorer, examples: int = 8):
    """The Gradio page (a ``gr.Blocks``) around ``scorer``; its endpoint ``/analyse`` takes one
    image and returns (verdict, normalised score, raw score, reconstruction, anomaly map, note)."""
    gr = _gradio()

    def analyse(image):
        try:
            r = scorer(image)
        except VaelabError as e:
            raise gr.Error(str(e)) from None
        return r["verdict"], r["score"], r["raw_score"], r["reconstruction"], r["anomaly_map"], r["note"]

    det = scorer.detector
    title = f"vaelab: {scorer.model.config.name} detector of {scorer.run_dir.name}"
    with gr.Blocks(title=title, analytics_enabled=False) as page:
        gr.Markdown(f"## {title}\nScore `{scorer.score}`, threshold {det.threshold_:.3f} on the normalised score "
                    f"(fitted on {det.n_train_} training images of {scorer.cfg.data.name}). Upload an image or pick "
                    "an example; the anomaly map is the reconstruction's squared error, black = 0, white = the "
                    f"{100 * MAP_QUANTILE:g}th percentile of the training images' errors.")
        with gr.Row():
            # the upload reaches the scorer as the file itself: vaelab's reader decodes it (its size limit, its
            # 16-bit scaling, its message for a file that is not an image), never Gradio's
            image = gr.File(type="filepath", file_types=["image"], label="image", height=DISPLAY_SIZE + 40)
            recon = gr.Image(label="reconstruction", interactive=False, format="png", height=DISPLAY_SIZE + 40)
            amap = gr.Image(label="anomaly map", interactive=False, format="png", height=DISPLAY_SIZE + 40)
        with gr.Row():
            verdict = gr.Textbox(label="verdict")
            score = gr.Number(label="normalised score")
            raw = gr.Number(label="raw score")
        note = gr.Textbox(label="input changes", visible=True)
        button = gr.Button("Score", variant="primary")
        outputs = [verdict, score, raw, recon, amap, note]
        button.click(analyse, inputs=image, outputs=outputs, api_name="analyse")
        if examples:
            folder = tempfile.mkdtemp(prefix="vaelab-app-")
            paths = [str(p) for p in scorer.example_images(examples, folder)]
            gr.Examples([[p] for p in paths], inputs=image, outputs=outputs, fn=analyse,
                        label="examples from the run's test split")

            def first():  # the page opens with the first example scored
                return (paths[0], *analyse(paths[0]))

            page.load(first, outputs=[image, *outputs], api_name=False)
    return page


def launch_app(page, host: str = "127.0.0.1", port: int | None = None, block: bool = True):
    """Serve ``page`` on ``host:port`` (port None: Gradio's first free one from 7860); returns the
    page (serving in a thread when ``block`` is False; ``page.close()`` stops it)."""
    if host not in LOCAL_HOSTS:
        log.warning("serving the app on %s: anyone who can reach this machine on that address can use it", host)
    page.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
                show_error=True, quiet=True)
    return page
