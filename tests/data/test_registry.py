"""The data-source registry: a source of one's own is one file (the guide's file, run as printed), and
callers ask a source what it declares instead of checking its name."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.guides import restored, run_guide

import vaelab
from vaelab.data import SOURCES, DataConfig, ImageSet, Source, get_source, load_data, source_for_path
from vaelab.errors import ConfigError, DataError


@pytest.fixture(autouse=True)
def registry():
    with restored(SOURCES) as r:  # what a test registers is gone after it
        yield r


def test_the_guides_source_trains_and_evaluates_from_the_command_line(tmp_path, monkeypatch, capsys):
    """The must-show: a user's file that registers a source works in `vaelab train vae --data NAME
    --import file.py` (and in `vaelab datasets` and `vaelab evaluate`), every command as the guide prints it."""
    outputs = run_guide("adding-a-data-source.md", "stripes.py", tmp_path, monkeypatch, capsys)
    assert "stripes" in outputs[0] and "Horizontal or vertical stripes" in outputs[0]
    run = tmp_path / "runs" / "stripes"
    assert "name: stripes" in (run / "config.yaml").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_val"] == 512 and metrics["n_test"] == 128
    assert "nelbo" in outputs[2]
    assert SOURCES["stripes"].module.startswith("vaelab_user_stripes")


def test_a_function_source_is_named_checked_against_its_declared_shape_and_used_by_load_data():
    @vaelab.register_source("tiny", class_names=["a", "b"], shape=(1, 4, 4))
    def tiny(split, path=None):
        """Four-pixel squares."""
        n = 20 if split == "train" else 10
        return ImageSet(torch.zeros(n, 1, 4, 4, dtype=torch.uint8), torch.arange(n) % 2)

    assert tiny.__name__ == "tiny"  # the decorator gives the function back
    src = get_source("tiny")
    assert src.description == "Four-pixel squares." and src.labelled and not src.needs_path
    train, val, test = load_data(DataConfig(name="tiny", val_fraction=0.2, classes=["b"]))
    assert (len(train), len(val), len(test)) == (8, 2, 10)  # the class filter resolved the declared name "b"
    assert test.name == "tiny" and test.class_names == ["a", "b"]

    @vaelab.register_source("wrong-shape", shape=(3, 4, 4))
    def wrong(split, path=None):
        return ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))

    with pytest.raises(DataError, match=r"declares examples of shape \(3, 4, 4\).*\(1, 4, 4\)"):
        get_source("wrong-shape").load("train")

    @vaelab.register_source("not-a-set")
    def not_a_set(split, path=None):
        return np.zeros((2, 4, 4))

    with pytest.raises(DataError, match="returned ndarray.*vaelab.data.ImageSet"):
        get_source("not-a-set").load("train")
    with pytest.raises(ConfigError, match="decorates a vaelab.data.Source subclass or a function"):
        vaelab.register_source("bad")(42)


def test_a_source_class_that_reads_a_path_is_chosen_for_the_files_it_claims(tmp_path):
    """A Source subclass with needs_path and claims(): `vaelab detect --data FILE` and `--test-data FILE`
    pick it for its files, its config_keys come from the data config, and scored_whole is asked."""

    @vaelab.register_source("lines", "text files of numbers, one vector per line", needs_path=True)
    class LinesSource(Source):
        config_keys = ("label_column",)

        def claims(self, path: Path) -> int:
            return 3 if path.suffix == ".lines" else 0

        def scored_whole(self, path: Path) -> bool:
            return True

        def load(self, split, path=None, label_column=None):
            rows = [[float(v) for v in ln.split()] for ln in self._path(path, "file.lines").read_text().splitlines()]
            return ImageSet(torch.tensor(rows), None, "lines", notes=[f"label_column={label_column}"])

    f = tmp_path / "x.lines"
    f.write_text("1 2 3\n4 5 6\n7 8 9\n")
    assert source_for_path(f).name == "lines" and source_for_path(tmp_path / "y.csv").name == "csv"
    assert source_for_path(tmp_path).name == "folder" and source_for_path(tmp_path / "nothing") is None
    from vaelab.detect.study import load_detection_set

    s, y, desc = load_detection_set(str(f), DataConfig(name="digits", label_column="7"))
    assert s.shape == (3,) and len(s) == 3 and y is None and "every image" in desc  # scored whole: split 'all'
    assert s.notes == ["label_column=7"]  # the key the source declares, as the run has it
    with pytest.raises(DataError, match="the lines source needs a path"):
        get_source("lines").load("train")


def test_builtin_sources_declare_what_callers_ask():
    from vaelab.detect.study import study_sources

    assert study_sources() == ["mnist", "fashion-mnist", "cifar10"]  # labelled, 10 classes, 28 or 32 pixels
    assert get_source("digits").shape == (1, 8, 8) and len(get_source("digits").class_names) == 10
    assert {n for n, s in SOURCES.items() if s.needs_path} >= {"folder", "npz", "csv", "mvtec"}
    assert get_source("csv").config_keys == ("label_column",)
    assert get_source("celeba64").labelled is False and get_source("mnist").labelled
    for name, s in SOURCES.items():
        assert s.name == name and s.description and s.module.startswith("vaelab.data.sources.")
    with pytest.raises(DataError, match="register_source"):
        get_source("imagenet")
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'.*register_source"):
        DataConfig(name="imagenet")
