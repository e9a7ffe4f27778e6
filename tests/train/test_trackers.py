"""train.loggers: MLflow and W&B (offline) get every loss term every step, the validation terms, the
final metrics and the config, read back with each tracker's own client or file format; a resumed
run continues the same tracker runs."""
import csv
import importlib.util
import json
import struct
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from vaelab.api.train import train_run
from vaelab.config import dump_yaml, load_yaml, parse_set
from vaelab.errors import ConfigError
from vaelab.train import EpochBatchSampler, RunConfig, TrainConfig, fit
from vaelab.train.trackers import TRACKERS_FILE, make_loggers

TERMS = ("loss", "rec", "kl", "nelbo")  # every term of the VAE's loss, and the total


def small(*extra: str) -> RunConfig:
    return RunConfig.build("vae", parse_set([
        "data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=2", "train.epochs=2",
        "data.limit=200", "train.batch_size=32", "train.progress_bar=false", *extra]))


@pytest.fixture(autouse=True)
def tracker_env(tmp_path, monkeypatch, one_thread):
    """No network and nothing outside tmp_path: W&B offline with its folders here, no MLflow server."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for var, sub in (("WANDB_DIR", "wandb"), ("WANDB_CACHE_DIR", "wandb-cache"), ("WANDB_CONFIG_DIR", "wandb-config"),
                     ("WANDB_DATA_DIR", "wandb-data")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def csv_steps(run_dir: Path) -> dict[int, dict[str, float]]:
    """The per-step training rows of logs/metrics.csv, the run directory's own log, by step."""
    rows = csv.DictReader(open(run_dir / "logs" / "metrics.csv"))
    return {int(r["step"]): {k: float(v) for k, v in r.items() if k.startswith("train/") and v} for r in rows if r["train/loss"]}


def numbers(metrics: dict) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def n_steps(metrics: dict, epochs: int) -> int:
    return epochs * len(EpochBatchSampler(metrics["n_train"], 32, 0))


def mlflow_run(run_dir: Path):
    from mlflow.tracking import MlflowClient

    rec = json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"]
    client = MlflowClient(rec["tracking_uri"])
    runs = client.search_runs([client.get_experiment_by_name("vaelab").experiment_id])
    assert [r.info.run_id for r in runs] == [rec["run_id"]]  # one run in the store, the recorded one
    return client, runs[0]


# -- reading W&B's offline transaction log (run-ID.wandb): a LevelDB-style log of protobuf Records ----
def wandb_records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf = path.read_bytes(), 32768, 7, b""
    assert data[:4] == b":W&B", "not a W&B transaction log"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and n == 0:
            pos += block - pos % block
            continue
        buf += data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # FULL or LAST: a whole Record
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def wandb_run_contents(path: Path) -> tuple[list[dict], dict, dict, list[str]]:
    """(history rows, summary, config, run ids) of an offline run's transaction log. W&B's service
    writes the log on its own after wandb.finish() returns: this waits for the run's exit record."""
    def items(entries):
        return {(e.key or "/".join(e.nested_key)): json.loads(e.value_json) for e in entries}

    for _ in range(300):
        records = list(wandb_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.1)
    history, summary, config, ids = [], {}, {}, []
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "history":
            history.append(items(r.history.item))
        elif kind == "summary":
            summary.update(items(r.summary.update))
        elif kind == "config":
            config.update(items(r.config.update))
        elif kind == "run":
            ids.append(r.run.run_id)
    return history, summary, config, ids


# -- the tests ---------------------------------------------------------------------------------------
def test_mlflow_gets_every_term_every_step_the_final_metrics_and_the_config(tmp_path):
    run_dir, metrics = train_run(small("train.loggers=csv,mlflow"), tmp_path / "r")
    client, run = mlflow_run(run_dir)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri  # a store in the run directory, no server:
    assert json.loads((run_dir / TRACKERS_FILE).read_text())["mlflow"]["tracking_uri"] == \
        f"sqlite:///{(run_dir / 'logs' / 'mlflow.db').resolve()}"
    steps = csv_steps(run_dir)
    assert sorted(steps) == list(range(n_steps(metrics, 2)))
    for term in TERMS:  # one value per optimisation step, the value the run directory's CSV log holds
        history = client.get_metric_history(run.info.run_id, f"train/{term}")
        assert sorted(m.step for m in history) == sorted(steps)
        assert all(m.value == pytest.approx(steps[m.step][f"train/{term}"], rel=1e-6) for m in history)
    assert len(client.get_metric_history(run.info.run_id, "val/nelbo")) == 2  # one per epoch
    final = numbers(json.loads((run_dir / "metrics.json").read_text()))
    assert final and all(run.data.metrics[k] == pytest.approx(v) for k, v in final.items())
    p = run.data.params
    assert p["model.latent_dim"] == "2" and p["model.name"] == "vae" and p["model.mlp_hidden"] == "[16]"
    assert p["data.limit"] == "200" and p["train.loggers"] == '["csv", "mlflow"]' and p["seed"] == "0"
    assert (run_dir / "logs" / "metrics.csv").is_file() and not (run_dir / "logs" / "tensorboard").exists()


def test_wandb_offline_run_holds_every_step_the_final_metrics_and_the_config(tmp_path):
    run_dir, metrics = train_run(small("train.loggers=csv,wandb"), tmp_path / "r")
    rec = json.loads((run_dir / TRACKERS_FILE).read_text())["wandb"]
    assert rec["mode"] == "offline" and rec["project"] == "vaelab"
    [offline] = (tmp_path / "wandb" / "wandb").glob(f"offline-run-*-{rec['id']}")  # under $WANDB_DIR, nothing online
    history, summary, config, ids = wandb_run_contents(offline / f"run-{rec['id']}.wandb")
    assert ids == [rec["id"]]
    steps = csv_steps(run_dir)
    train_rows = [h for h in history if "train/loss" in h]
    assert [h["trainer/global_step"] for h in train_rows] == sorted(steps) == list(range(n_steps(metrics, 2)))
    for h in train_rows:
        assert all(h[f"train/{t}"] == pytest.approx(steps[h["trainer/global_step"]][f"train/{t}"], rel=1e-6) for t in TERMS)
    assert len([h for h in history if "val/nelbo" in h]) == 2
    final = numbers(json.loads((run_dir / "metrics.json").read_text()))
    assert final and all(summary[k] == pytest.approx(v) for k, v in final.items())
    assert config["model.latent_dim"] == 2 and config["model.mlp_hidden"] == [16] and config["train.loggers"] == ["csv", "wandb"]


def test_logger_names_are_checked_and_missing_packages_name_the_extra(tmp_path, monkeypatch):
    assert TrainConfig().loggers == ["csv", "tensorboard"]  # what a run logs by default
    cfg = small("train.loggers=csv, mlflow,csv")
    assert cfg.train.loggers == ["csv", "mlflow"]
    assert RunConfig.from_dict(load_yaml(dump_yaml(cfg.to_dict()), "x")).train.loggers == ["csv", "mlflow"]
    with pytest.raises(ConfigError, match=r"unknown logger\(s\) 'comet'; valid: csv, tensorboard, mlflow, wandb"):
        small("train.loggers=csv,comet")
    with pytest.raises(ConfigError, match="'neptune'.*valid: csv, tensorboard, mlflow, wandb"):
        RunConfig.build("vae", {"train": {"loggers": ["neptune"]}})
    with pytest.raises(ConfigError, match="wandb_mode"):
        small("train.wandb_mode=cloud")
    # W&B files go to the run's logs/ unless $WANDB_DIR says otherwise
    monkeypatch.delenv("WANDB_DIR")
    assert make_loggers(TrainConfig(loggers=["wandb"]), tmp_path, resume=False)["wandb"].save_dir == str(tmp_path / "logs")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("mlflow", "wandb") else real(name, *a))
    for name in ("mlflow", "wandb"):
        with pytest.raises(ConfigError, match=rf'pip install "vaelab\[{name}\]"'):
            make_loggers(TrainConfig(loggers=["csv", name]), tmp_path, resume=False)
        with pytest.raises(ConfigError, match=rf"needs the {name} package"):  # before anything is written
            fit(small(f"train.loggers=csv,{name}"), tmp_path / "run")
        assert not (tmp_path / "run").exists()


def test_resume_continues_the_same_mlflow_and_wandb_runs(tmp_path):
    r = tmp_path / "r"
    train_run(small("train.loggers=csv,mlflow,wandb", "train.epochs=1"), r)
    first = json.loads((r / TRACKERS_FILE).read_text())
    time.sleep(1.05 - time.time() % 1)  # W&B names an offline folder by the second it starts: one per segment
    cfg = RunConfig.load(r / "config.yaml").resumed_with({"train": {"epochs": 2}})
    _, metrics = train_run(cfg, r, resume=True)
    assert json.loads((r / TRACKERS_FILE).read_text()) == first  # the same tracker runs
    client, run = mlflow_run(r)
    steps = list(range(n_steps(metrics, 2)))
    for term in TERMS:  # both segments in the one run, each step once
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, f"train/{term}")) == steps
    assert len(client.get_metric_history(run.info.run_id, "val/nelbo")) == 2 and run.info.status == "FINISHED"
    assert run.data.metrics["nelbo"] == pytest.approx(metrics["nelbo"])  # the final metrics of the resumed run
    # an MLflow parameter keeps its first value; the resumed run's new epochs is a tag of that name
    assert run.data.params["train.epochs"] == "1" and run.data.tags["train.epochs"] == "2"
    wid = first["wandb"]["id"]
    segments = sorted((tmp_path / "wandb" / "wandb").glob(f"offline-run-*-{wid}"))
    assert len(segments) == 2  # W&B cannot resume an offline run: one folder per segment, both under the run id
    logged = []
    for seg in segments:
        history, _, _, ids = wandb_run_contents(seg / f"run-{wid}.wandb")
        assert ids == [wid]
        logged += [h["trainer/global_step"] for h in history if "train/loss" in h]
    assert logged == steps
    # the trackers change nothing in what is trained: bit-identical to an uninterrupted run without them
    fit(small(), tmp_path / "s")
    a, b = load_file(str(r / "model.safetensors")), load_file(str(tmp_path / "s" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
