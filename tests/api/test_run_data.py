"""A run records where its data is so that it finds it from any directory, and says so when it is gone."""
import json

import numpy as np
import yaml
from PIL import Image

from vaelab.cli import main


def test_a_run_finds_its_data_from_another_directory_and_names_it_when_it_moved(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    work = tmp_path / "work"
    for i in range(80):  # bright squares on black
        im = np.zeros((12, 12), np.uint8)
        r, c, k = rng.integers(0, 6), rng.integers(0, 6), rng.integers(3, 6)
        im[r:r + k, c:c + k] = 255
        (work / "shapes").mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(work / "shapes" / f"{i:03d}.png")
    monkeypatch.chdir(work)
    assert main(["train", "vae", "--data", "folder", "--set", "data.path=shapes", "--epochs", "1", "--latent-dim", "2",
                 "--set", "model.arch=mlp", "--set", "model.mlp_hidden=[16]", "--set", "train.progress_bar=false",
                 "--out", "runs/shapes-vae"]) == 0
    recorded = yaml.safe_load((work / "runs" / "shapes-vae" / "config.yaml").read_text())["data"]["path"]
    assert recorded == str(work / "shapes")  # absolute, as the run records it
    monkeypatch.chdir(tmp_path)  # another directory: the relative data path would not resolve here
    assert main(["detect", "work/runs/shapes-vae", "--data", "work/shapes", "--out", "d1"]) == 0
    assert json.loads((tmp_path / "d1" / "metrics.json").read_text())["n"] == 80
    (work / "shapes").rename(work / "moved")
    capsys.readouterr()
    assert main(["detect", "work/runs/shapes-vae", "--data", "work/moved", "--out", "d2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and [line.startswith("vaelab: error:") for line in err.splitlines()][-1], err
    err = err.splitlines()[-1]
    assert f"trained on folder data at {str(work / 'shapes')!r}" in err and "--run-data PATH" in err
    assert main(["detect", "work/runs/shapes-vae", "--data", "work/moved", "--run-data", "work/moved", "--out", "d3"]) == 0
    assert main(["evaluate", "work/runs/shapes-vae", "--metrics", "elbo", "--json", "--run-data", "work/moved"]) == 0
    assert main(["evaluate", "work/runs/shapes-vae", "--metrics", "elbo", "--json"]) == 2
    assert "--run-data" in capsys.readouterr().err
