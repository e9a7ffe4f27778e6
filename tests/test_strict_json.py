"""Strict JSON everywhere vaelab writes: no NaN or Infinity literals (a strict parser reads every
file), null with the reason beside it; a threshold rule that fell back is recorded as the rule used."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch


def _strict_load(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null_with_a_reason(tmp_path):
    from vaelab.fileio import NULL_REASONS, atomic_write_json

    atomic_write_json(tmp_path / "m.json", {"f1": math.nan, "scores": torch.tensor([1.0, math.inf]),
                                            "info": {"precision": np.float64("nan"), "ok": 0.5}, "n": 3})
    got = _strict_load((tmp_path / "m.json").read_text())
    assert got["f1"] is None and got["scores"] == [1.0, None] and got["info"] == {"precision": None, "ok": 0.5}
    assert set(got[NULL_REASONS]) == {"f1", "scores[1]", "info.precision"} and "nan" in got[NULL_REASONS]["f1"]
    atomic_write_json(tmp_path / "fine.json", {"a": 1.0})
    assert NULL_REASONS not in _strict_load((tmp_path / "fine.json").read_text())


@pytest.mark.parametrize("labels", ["no anomalies", "only anomalies"])
def test_an_f1_rule_that_falls_back_is_recorded_as_the_rule_used(tmp_path, labels):
    """f1 on a validation set of one class falls back to contamination: metrics.json says
    contamination, with f1 as the rule asked for and the reason, and holds no NaN literal."""
    from vaelab.api.detect import threshold_record
    from vaelab.detect import AutoencoderDetector
    from vaelab.fileio import atomic_write_json
    from vaelab.models import build, make_config

    torch.manual_seed(0)
    model = build(make_config("ae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), (1, 8, 8)).eval()
    x = torch.randint(0, 256, (60, 1, 8, 8), dtype=torch.uint8)
    y = np.zeros(20, dtype=np.int64) if labels == "no anomalies" else np.ones(20, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        det = AutoencoderDetector(model, "mse", threshold_rule="f1", contamination=0.1).fit(x[:40], val=x[40:],
                                                                                            val_labels=y)
    record = threshold_record(det, None)
    assert record["threshold_from"] == "contamination 0.1" and record["threshold_rule_asked"] == "f1"
    assert "F1 is undefined" in record["threshold_fallback_reason"]
    atomic_write_json(tmp_path / "metrics.json", {"threshold": det.threshold_, **record})
    got = _strict_load((tmp_path / "metrics.json").read_text())
    assert got["threshold_info"]["f1"] is None and "threshold_info.f1" in got["null_reasons"]
    assert threshold_record(det, 0.5)["threshold_from"] == "threshold"
