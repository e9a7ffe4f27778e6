"""The `vaelab` command end to end, as a user runs it (real Fashion-MNIST subset): through the main()
the console script calls, in this process, and once through the installed console script itself."""
import json
import subprocess

import pytest
import torch

from tests.conftest import console_script, needs_fmnist, vaelab_here


def cli(*args, check=True):
    p = vaelab_here(*args)
    if check and p.returncode != 0:
        raise AssertionError(f"vaelab {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, figures_module):
    out = tmp_path_factory.mktemp("cli") / "run"
    p = cli("train", "vae", "--data", "fashion-mnist", "--epochs", "2", "--latent-dim", "4", "--batch-size", "64",
               "--seed", "1", "--out", str(out), "--set", "data.limit=1200", "--set", "data.test_limit=300",
               "--set", "train.progress_bar=false")
    assert f"report: {out.resolve() / 'report.html'}" in p.stdout
    return out


@needs_fmnist
def test_train_writes_run_directory(run_dir):
    for f in ("config.yaml", "model.safetensors", "metrics.json", "report.html", "logs/metrics.csv",
              "figures/loss_curves.png", "figures/reconstructions.png", "figures/samples.png", "checkpoints/last.ckpt"):
        assert (run_dir / f).is_file(), f
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "http" not in html.replace("http-equiv", "")
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["n_train"] == 1080 and m["n_test"] == 300 and m["nelbo"] > 0


@needs_fmnist
def test_evaluate_json_matches_metrics_and_load(run_dir):
    p = cli("evaluate", str(run_dir), "--json", "--no-report")
    res = json.loads(p.stdout)
    assert set(res) >= {"nelbo", "rec", "kl", "mse", "psnr"}
    torch.testing.assert_close(res["nelbo"], res["rec"] + res["kl"], rtol=1e-6, atol=1e-4)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert res["nelbo"] == pytest.approx(saved["nelbo"], rel=1e-5)  # same seed, same number
    import vaelab

    model = vaelab.load(run_dir)
    assert model.latent_dim == 4 and not model.training


@needs_fmnist
def test_sample_and_reconstruct(run_dir, tmp_path):
    from PIL import Image

    cli("sample", str(run_dir), "-n", "16", "--out", str(tmp_path / "s.png"))
    cli("reconstruct", str(run_dir), "--out", str(tmp_path / "r.png"))
    assert Image.open(tmp_path / "s.png").size[0] > 28 and Image.open(tmp_path / "r.png").size[1] > 28


@needs_fmnist
def test_resume_extends_training(run_dir, capsys):
    cli("train", "--resume", str(run_dir), "--epochs", "3", "--set", "train.progress_bar=false")
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2
    from vaelab.cli import main  # the refusal in this process: the same main() the command runs

    assert main(["train", "--resume", str(run_dir), "--set", "model.beta=2"]) == 2
    assert "only --epochs" in capsys.readouterr().err


@pytest.mark.parametrize("args,msg", [
    (["train", "transformer"], "unknown model 'transformer'; choose one of: ae, linear-ae"),
    (["train", "vae", "--data", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "vae", "--set", "train.lrr=1"], "valid keys"),
    (["evaluate", "/nonexistent/run"], "not a vaelab run directory"),
])
def test_errors_are_clear_without_traceback(args, msg, capsys):
    if args[0] == "evaluate":  # one refusal as a real process of the installed command: exit status and stderr as the shell sees them
        p = subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=300)
        assert p.returncode == 2
        assert msg in p.stderr and "Traceback" not in p.stderr
        return
    from vaelab.cli import main  # the others in this process: the same main(), no interpreter start-up

    assert main(args) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


@needs_fmnist
def test_existing_run_dir_refused(run_dir):
    p = cli("train", "vae", "--out", str(run_dir), check=False)
    assert p.returncode == 2 and "already holds a run" in p.stderr


def test_parser_copies_no_list_and_imports_no_torch():
    """The command line keeps no copy of the registries' lists (scores, threshold rules): their names
    are checked where they are defined, and building the parser (--help) imports no torch."""
    import subprocess
    import sys

    code = ("import sys; from vaelab.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'vaelab.detect', 'vaelab.models') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
    from vaelab.cli import parser as cli_parser

    assert not [n for n in vars(cli_parser) if n.isupper() or n.startswith("_SCORES")]
    assert "patch_mse" in cli("detect", "--help").stdout


def test_datasets_and_models_listing():
    out = cli("datasets").stdout
    for name in ("mnist", "fashion-mnist", "cifar10", "celeba64", "digits", "folder", "npz"):
        assert name in out
    assert "vae" in cli("models").stdout
