"""What a new user hit (issue #23), each reproduced as they met it: their own folders of images,
mistakes on the command line, Ctrl-C. Every test here failed on the code before the fix."""
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vaelab.data import DataConfig, load_split
from vaelab.data.folder import FolderOptions, read_folder
from vaelab.data.parsers import decode_image
from vaelab.errors import DataError, ModelError

from tests.conftest import vaelab_here

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The same main() the command runs, in this process (no interpreter start-up per call); an
    exception other than the CLI's own exits fails the test as the traceback would have. The tests
    that need a real process (Ctrl-C) start one; tests/cli/test_cli.py runs the console script."""
    return vaelab_here(*args, cwd=cwd)


def one_line_error(p: subprocess.CompletedProcess, *needles: str) -> str:
    """The CLI refused with exit 2 and one 'vaelab: error:' line naming the problem, no traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("vaelab: error:")]
    assert len(errors) == 1, p.stderr
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def save_png(path: Path, arr: np.ndarray, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, **kw).save(path)


QUICK = ["--set", "train.progress_bar=false", "--set", "model.arch=mlp", "--set", "model.mlp_hidden=[32]",
         "--latent-dim", "4", "--batch-size", "64"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """A finished 2-epoch run on scikit-learn's digits, for the command-line mistakes."""
    out = tmp_path_factory.mktemp("nu") / "run"
    p = cli("train", "vae", "--data", "digits", "--epochs", "2", *QUICK, "--out", str(out))
    assert p.returncode == 0, p.stderr
    return out


# ---- 1. degenerate data: a folder of identical images --------------------------------------------
def test_folder_of_identical_images_trains_evaluates_and_resumes_with_a_note(tmp_path, figures):
    # before: t-SNE on identical codes crashed the process (SIGSEGV, exit 139) or raised a traceback
    img = (np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)
    for i in range(60):
        save_png(tmp_path / "same" / f"{i:02d}.png", img)
    run = tmp_path / "run"
    args = ["--data", "folder", "--set", f"data.path={tmp_path / 'same'}", *QUICK]
    p = cli("train", "vae", "--epochs", "1", *args, "--out", str(run))
    assert p.returncode == 0, p.stderr
    html = (run / "report.html").read_text()
    assert "No latent map" in html and "distinct latent mean" in html
    assert cli("evaluate", str(run)).returncode == 0
    p = cli("train", "--resume", str(run), "--epochs", "2")
    assert p.returncode == 0, p.stderr


def test_report_figures_of_one_image_and_one_class_give_notes_not_crashes(tmp_path):
    from vaelab.api import make_figures
    from vaelab.data import ImageSet
    from vaelab.models import build, make_config

    model = build(make_config("vae", {"arch": "mlp", "mlp_hidden": [16], "latent_dim": 3}), (1, 8, 8)).eval()
    one = ImageSet(torch.randint(0, 255, (1, 1, 8, 8), dtype=torch.uint8), torch.zeros(1, dtype=torch.long))
    notes: list[str] = []
    figs = make_figures(tmp_path, model, one, notes=notes)
    assert any("interpolation" in n for n in notes) and any("latent map" in n for n in notes)
    assert all(p.is_file() for _, p in figs) and len(figs) >= 3  # reconstructions, samples, traversal
    const = ImageSet(torch.full((20, 1, 8, 8), 7, dtype=torch.uint8), torch.zeros(20, dtype=torch.long))
    notes = []
    make_figures(tmp_path / "c", model, const, notes=notes)
    assert any("1 distinct latent mean" in n for n in notes)


# ---- 2. --out naming the user's own directory -----------------------------------------------------
def test_out_refuses_a_non_empty_directory_that_is_not_a_run(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "report.html").write_text("mine")
    one_line_error(cli("train", "vae", "--data", "digits", "--epochs", "1", *QUICK, "--out", str(d)),
                   "not empty", "not a vaelab run", "report.html")
    assert (d / "report.html").read_text() == "mine" and sorted(p.name for p in d.iterdir()) == ["report.html"]
    f = tmp_path / "file.txt"
    f.write_text("mine")
    one_line_error(cli("train", "vae", "--data", "digits", "--epochs", "1", *QUICK, "--out", str(f)), "is an existing file")
    assert f.read_text() == "mine"


# ---- 3. one-line errors instead of tracebacks ----------------------------------------------------
@pytest.mark.parametrize("args,needle", [
    (["sample", "RUN", "-n", "0", "--out", "OUT/s.png"], "-n"),
    (["sample", "RUN", "-n", "-5", "--out", "OUT/s.png"], "-n"),
    (["sample", "RUN", "--out", "OUT"], "is a directory"),
    (["traverse", "RUN", "--units", "99", "--out", "OUT/t.png"], "latent units"),
    (["traverse", "RUN", "--index", "999999", "--out", "OUT/t.png"], "--index 999999"),
    (["interpolate", "RUN", "--pairs", "0", "--out", "OUT/i.png"], "--pairs"),
    (["train", "--resume", "RUN", "--epochs", "1"], "already trained 2 epochs"),
    (["sample", "RUN", "--out", "OUT/s.gif"], "cannot tell the image format"),
])
def test_command_line_mistakes_are_one_line_errors(digits_run, tmp_path, args, needle):
    args = [a.replace("RUN", str(digits_run)).replace("OUT", str(tmp_path)) for a in args]
    before = (digits_run / "metrics.json").read_bytes()
    one_line_error(cli(*args), needle)
    assert (digits_run / "metrics.json").read_bytes() == before


# ---- 4. 16-bit PNGs are scaled, not clipped ------------------------------------------------------
def test_16_bit_png_is_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257, 32896], [65535, 12850, 514]], dtype=np.uint16)  # 0, 1, 128, 255, 50, 2 in 8 bits
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, format="PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")  # really a 16-bit file
    arr = decode_image(buf.getvalue(), "x.png")
    assert arr.dtype == np.uint8 and arr[:, :, 0].tolist() == [[0, 1, 128], [255, 50, 2]]


# ---- 5. a stray image beside class folders -------------------------------------------------------
def test_stray_top_level_image_beside_class_folders_is_refused_with_its_name(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        for i in range(3):
            save_png(tmp_path / c / f"{i}.png", (rng.random((8, 8)) * 255).astype(np.uint8))
    save_png(tmp_path / "stray.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"stray\.png.*class sub-folders \(cat, dog\)"):
        read_folder(tmp_path)
    (tmp_path / "stray.png").unlink()
    s = read_folder(tmp_path)
    assert s.labels.tolist() == [0, 0, 0, 1, 1, 1] and s.class_names == ["cat", "dog"]


# ---- 6 and 15. detect scores every file of a folder and names it; the loader says what it did ----
def test_detect_on_a_folder_scores_every_file_and_names_it(digits_run, tmp_path):
    rng = np.random.default_rng(1)
    names = [f"img,{i}.png" if i == 3 else f"img{i}.png" for i in range(23)]  # a comma in one name
    for n in names:
        save_png(tmp_path / "imgs" / n, (rng.random((8, 8)) * 255).astype(np.uint8))
    out = tmp_path / "det"
    p = cli("detect", str(digits_run), "--data", str(tmp_path / "imgs"), "--score", "mse", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "folder" in p.stderr and "23 images" in p.stderr  # what the loader did
    assert "fitting the 'mse' score" in p.stderr and "scoring 23 images" in p.stderr  # progress
    import csv

    rows = list(csv.DictReader(open(out / "scores.csv", newline="")))
    assert sorted(r["file"] for r in rows) == sorted(names)
    assert json.loads((out / "metrics.json").read_text())["n"] == 23


# ---- 7. resuming a finished run changes nothing --------------------------------------------------
def test_resume_of_a_finished_run_says_so_and_changes_nothing(digits_run):
    files = ("metrics.json", "model.safetensors", "report.html", "checkpoints/last.ckpt")
    before = {f: ((digits_run / f).read_bytes(), (digits_run / f).stat().st_mtime_ns) for f in files}
    p = cli("train", "--resume", str(digits_run))
    assert p.returncode == 0, p.stderr
    assert "is finished (2 of 2 epochs); nothing changed" in p.stderr and "--epochs N with N > 2" in p.stderr
    assert {f: ((digits_run / f).read_bytes(), (digits_run / f).stat().st_mtime_ns) for f in files} == before


# ---- 8. written files get the user's umask, weights included --------------------------------------
def test_weights_are_readable_by_others_under_the_usual_umask(digits_run):
    mask = os.umask(0)
    os.umask(mask)
    for f in ("model.safetensors", "config.yaml", "metrics.json", "checkpoints/last.ckpt", "report.html"):
        assert stat.S_IMODE((digits_run / f).stat().st_mode) == 0o666 & ~mask, f


# ---- 9. Ctrl-C: vaelab's message, exit 130, and the resume is bit-exact ----------------------------
SIGINT_ARGS = ["train", "vae", "--data", "digits", "--epochs", "2", "--batch-size", "64", "--latent-dim", "2", "--seed", "3",
               "--set", "model.arch=mlp", "--set", "model.mlp_hidden=[32]", "--set", "train.progress_bar=false",
               "--set", "train.checkpoint_every_n_steps=4"]
STALLING_CHILD = """
import sys, time
from pathlib import Path
from vaelab.train.lit import LitAutoencoder
marker = Path(sys.argv[1])
step = LitAutoencoder.training_step
def stalling(self, batch, i):
    if self.global_step == 10:
        marker.write_text(str(self.global_step))
        time.sleep(600)
    return step(self, batch, i)
LitAutoencoder.training_step = stalling
from vaelab.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_ctrl_c_prints_how_to_resume_exits_130_and_the_resume_is_exact(tmp_path, one_thread):
    """The run Ctrl-C stops is a real process; the uninterrupted reference (trained meanwhile) and the
    resume run in this process, with one thread as the child has."""
    run, ref, marker = tmp_path / "run", tmp_path / "ref", tmp_path / "stalled"
    # the child starts with Ctrl-C's default action: a process inherits an ignored SIGINT, and a library
    # used earlier in this test worker may have left it ignored (the full suite timed out here; alone it passed)
    child = subprocess.Popen([sys.executable, "-c", STALLING_CHILD, str(marker), *SIGINT_ARGS, "--out", str(run)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert cli(*SIGINT_ARGS, "--out", str(ref)).returncode == 0
    deadline = time.monotonic() + 180
    while not marker.exists():
        assert child.poll() is None, child.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert f"vaelab train --resume {run}" in err and "bit-identical" in err and "Traceback" not in err
    p = cli("train", "--resume", str(run))
    assert p.returncode == 0, p.stderr
    assert "Previous log files" not in p.stderr  # Lightning's false warning (14)
    a, b = load_file(str(run / "model.safetensors")), load_file(str(ref / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in b)


# ---- 10. Ctrl-C before the first checkpoint is no dead end -----------------------------------------
def test_a_run_stopped_before_its_first_checkpoint_can_be_resumed_or_retrained(tmp_path):
    from vaelab.train import RunConfig
    from vaelab.train.rundir import mark_run

    cfg = RunConfig.build("vae", {"data": {"name": "digits"}, "train": {"epochs": 1, "progress_bar": False},
                                  "model": {"arch": "mlp", "mlp_hidden": [32], "latent_dim": 4}})
    for how in ("resume", "fresh"):
        run = tmp_path / how
        (run / "logs").mkdir(parents=True)
        mark_run(run)  # vaelab's marker, then the config: what a run killed before its first checkpoint leaves
        cfg.save(run / "config.yaml")
        p = cli("train", "--resume", str(run)) if how == "resume" else \
            cli("train", "vae", "--data", "digits", "--epochs", "1", *QUICK, "--out", str(run))
        assert p.returncode == 0, p.stderr
        assert (run / "model.safetensors").is_file() and (run / "metrics.json").is_file()


# ---- 11. mixed sizes and modes are brought to one, as asked ---------------------------------------
def test_mixed_sizes_and_modes_are_resized_and_converted_when_asked(tmp_path):
    rng = np.random.default_rng(2)
    for i, n in enumerate((16, 28, 40, 28)):
        save_png(tmp_path / f"g{i}.png", (rng.random((n, n)) * 255).astype(np.uint8))
    save_png(tmp_path / "c.png", (rng.random((28, 28, 3)) * 255).astype(np.uint8))
    save_png(tmp_path / "wide.png", (rng.random((20, 30)) * 255).astype(np.uint8))
    with pytest.raises(DataError, match=r"different sizes.*data.size=N --set data.resize_mode=resize"):
        read_folder(tmp_path)
    s = read_folder(tmp_path, FolderOptions(size=32, resize_mode="resize"))
    assert s.images.shape == (6, 3, 32, 32)
    joined = " | ".join(s.notes)
    assert "converted 5 grayscale images to RGB" in joined and "resized 6 images to 32x32" in joined
    assert "1 were not square" in joined
    gray = load_split(DataConfig(name="folder", path=str(tmp_path), size=32, resize_mode="resize", channels=1), "all")
    assert gray.images.shape == (6, 1, 32, 32)
    # a constant gray image keeps its value through the resize
    save_png(tmp_path / "flat" / "a.png", np.full((40, 40), 77, np.uint8))
    save_png(tmp_path / "flat" / "b.png", np.full((16, 16), 77, np.uint8))
    flat = read_folder(tmp_path / "flat", FolderOptions(size=24, resize_mode="resize"))
    assert (flat.images == 77).all()
    padded = read_folder(tmp_path / "flat", FolderOptions(size=40, resize_mode="pad"))
    assert padded.images.shape == (2, 1, 40, 40) and int(padded.images[1, 0, 0, 0]) == 0


# ---- 12. AppleDouble files are skipped; every unreadable file is named at once ----------------------
def test_hidden_files_are_skipped_and_all_unreadable_files_listed(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(4):
        save_png(tmp_path / f"{i}.png", (rng.random((8, 8)) * 255).astype(np.uint8))
    (tmp_path / "._0.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # macOS AppleDouble resource fork
    (tmp_path / ".DS_Store").write_bytes(bytes(20))
    (tmp_path / "notes.txt").write_text("hello")
    s = read_folder(tmp_path)
    assert len(s) == 4 and s.files == ["0.png", "1.png", "2.png", "3.png"]
    assert any("skipped 2 hidden or system files" in n and "1 files that are not images" in n for n in s.notes)
    (tmp_path / "bad1.png").write_bytes(b"not a png")
    (tmp_path / "bad2.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=r"2 of 6 image files cannot be read: bad1\.png .*bad2\.jpg"):
        read_folder(tmp_path)


# ---- 13. the API refuses uint8 and 0..255 inputs; the README's example runs as printed ------------
def test_api_refuses_uint8_and_0_255_images_with_the_fix():
    from vaelab.models import build, make_config

    model = build(make_config("vae", {"arch": "mlp", "mlp_hidden": [16]}), (1, 8, 8))
    x = torch.rand(4, 1, 8, 8)
    model.loss(x)
    with pytest.raises(ModelError, match=r"uint8.*x.float\(\) / 255"):
        model.loss((x * 255).to(torch.uint8))
    with pytest.raises(ModelError, match=r"values in \[0, 1\].*divide 0..255 images by 255"):
        model.encode(x * 255)


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_example_runs_as_printed(tmp_path, monkeypatch, one_thread):
    """Each block runs as a script of its own (a fresh namespace, in a fresh directory), in this process:
    three interpreter start-ups and torch imports were a third of this test's time. The models a block
    registers are given back afterwards."""
    from vaelab.models import registry

    blocks = readme_python_blocks()
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    models = dict(registry.MODELS)
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"<README.md python block {i + 1}>", "exec"), {"__name__": "__main__"})
    finally:
        registry.MODELS.clear()
        registry.MODELS.update(models)


# ---- 14. a damaged weights file says the checkpoint still holds them ------------------------------
def test_truncated_weights_point_to_the_checkpoint_and_resume_restores_them(tmp_path, figures):
    run = tmp_path / "run"
    p = cli("train", "vae", "--data", "digits", "--epochs", "1", *QUICK, "--out", str(run))
    assert p.returncode == 0
    # (16.) progress on stderr after the last epoch
    assert re.search(r"vaelab: trained in [\d.]+ s; evaluating on \d+ test images", p.stderr)
    assert "vaelab: drawing the report's figures" in p.stderr
    good = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(good[: len(good) // 2])
    err = one_line_error(cli("sample", str(run), "--out", str(tmp_path / "s.png")), "checkpoints/last.ckpt",
                         f"vaelab train --resume {run}")
    assert "still holds the weights" in err
    p = cli("train", "--resume", str(run))
    assert p.returncode == 0 and "written again from the checkpoint" in p.stderr, p.stderr
    assert (run / "model.safetensors").read_bytes() != good[: len(good) // 2]
    assert cli("sample", str(run), "--out", str(tmp_path / "s.png")).returncode == 0


# ---- 16. progress on stderr after training: checked by the truncated-weights test's training run above


# ---- 17. the output format follows the suffix -----------------------------------------------------
@pytest.mark.parametrize("name,fmt", [("s.jpg", "JPEG"), ("s.pdf", None), ("s.png", "PNG"), ("s.webp", "WEBP")])
def test_sample_writes_the_format_its_suffix_names(digits_run, tmp_path, name, fmt):
    p = cli("sample", str(digits_run), "-n", "4", "--out", str(tmp_path / name))
    assert p.returncode == 0, p.stderr
    data = (tmp_path / name).read_bytes()
    if fmt is None:
        assert data.startswith(b"%PDF")
    else:
        assert Image.open(io.BytesIO(data)).format == fmt


# ---- 18. every key discoverable from --help ------------------------------------------------------
def test_train_help_lists_every_key_with_its_default_and_meaning():
    import dataclasses

    from vaelab.train.config import TrainConfig

    out = cli("train", "--help").stdout
    for f in dataclasses.fields(TrainConfig):
        assert re.search(rf"^  train\.{f.name} = \S+.*  -- \S", out, flags=re.M), f.name  # default and meaning
    for f in dataclasses.fields(DataConfig):
        assert re.search(rf"^  data\.{f.name} = \S+.*  -- \S", out, flags=re.M), f.name
    assert "train.lr = 0.001" in out and "passes over the training data" in out  # --epochs has help
    models = cli("models", "-v").stdout
    assert re.search(r"^beta-vae .*\n(    .*\n)*    model\.beta = 4\.0 ", models, flags=re.M)
