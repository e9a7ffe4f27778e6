"""The one-class benchmark merges into its results file: a call's datasets replace theirs, the file's other
datasets and its study stay, each with the command that measured it."""
from __future__ import annotations

import json

import torch

from benchmarks._harness import run
from tests.conftest import require_source


def test_a_call_keeps_the_other_datasets_and_the_study_it_did_not_measure(tmp_path, monkeypatch):
    require_source("digits")
    monkeypatch.setenv("VAELAB_BENCH_RUNS", str(tmp_path / "runs"))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        earlier = {"benchmark": "one_class", "results": {
            "protocol": {"fashion-mnist": {"mean_auroc": {"combo": 0.9419}, "settings": {"command": "earlier"}}},
            "study": {"epochs": 20, "seed_mean": {"rep1": 0.95}}}}
        (tmp_path / "one_class.json").write_text(json.dumps(earlier))
        b = run("one_class", ["--smoke", "--results", str(tmp_path), "--study-epochs", "0", "--classes", "0"])
    finally:
        torch.set_num_threads(n)
    payload = json.loads((tmp_path / "one_class.json").read_text())
    assert b.written == [tmp_path / "one_class.json"]
    res = payload["results"]
    assert res["protocol"]["fashion-mnist"] == earlier["results"]["protocol"]["fashion-mnist"]
    assert res["study"] == earlier["results"]["study"], "--study-epochs 0 measured no study: the file's is kept"
    digits = res["protocol"]["digits"]
    assert set(digits["mean_auroc"]) == {"combo", "mse", "nelbo"}
    assert 0.0 <= digits["mean_auroc"]["combo"] <= 1.0
    assert digits["settings"]["command"] == payload["command"] and digits["settings"]["classes"] == [0]
