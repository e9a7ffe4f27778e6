"""Where a run's logs go (train.loggers): the run directory's own logs (csv: logs/metrics.csv,
tensorboard: logs/tensorboard) and experiment trackers (mlflow, wandb), all through Lightning's
loggers. Each name maps to one :class:`LoggerKind` in ``LOGGERS``: how to make Lightning's logger
for a run and, for a tracker, how to start or continue its run and log the final metrics to it.

Every loss term of every step and the validation terms reach every logger through Lightning's
logger API (LitAutoencoder.flush_logs, LightningModule.log). A tracker also gets the run config as
parameters (flattened: ``model.beta``) when its run starts, and the final test metrics
(metrics.json) from :func:`log_final`. The ids of the tracker runs are kept in logs/trackers.json,
so that a resumed run (``--resume``) keeps logging to the same MLflow run and W&B run."""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..errors import ConfigError, TrainingError
from ..fileio import atomic_write_json

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger

    from .config import RunConfig, TrainConfig

log = logging.getLogger("vaelab")

TRACKERS_FILE = "logs/trackers.json"  # the tracker runs of this run directory: {name: {run id, where}}


# -- the config as parameters --------------------------------------------------------------------
def flat_config(cfg: "RunConfig") -> dict[str, Any]:
    """The run config as flat parameters: ``{"model.beta": 4.0, "train.loggers": ["csv", "mlflow"], ...}``."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}{k}.", v)
        else:
            out[prefix[:-1]] = node

    walk("", cfg.to_dict())
    return out


def param_text(value: Any) -> str:
    """A parameter value as MLflow stores it (text): text as it is, anything else as JSON (2, true, null, [16])."""
    return value if isinstance(value, str) else json.dumps(value)


def final_numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics dict (metrics.json), under their own names."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


# -- the run directory's own logs ----------------------------------------------------------------
def _csv(t: "TrainConfig", run_dir: Path, earlier: dict[str, Any] | None) -> "Logger":
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(run_dir, name="logs", version="")  # logs/metrics.csv, which the report reads


def _tensorboard(t: "TrainConfig", run_dir: Path, earlier: dict[str, Any] | None) -> "Logger":
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(run_dir, name="logs", version="tensorboard", default_hp_metric=False)


# -- MLflow --------------------------------------------------------------------------------------
def mlflow_uri(t: "TrainConfig", run_dir: Path) -> str:
    """train.mlflow_tracking_uri, else $MLFLOW_TRACKING_URI, else an SQLite store in the run
    directory (logs/mlflow.db). MLflow's plain-file store (./mlruns) is in maintenance mode and
    refused by default by recent MLflow, so the local default is the database it recommends."""
    return (t.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{(run_dir / 'logs' / 'mlflow.db').resolve()}")


def _mlflow_logger_class() -> type:
    from lightning.pytorch.loggers import MLFlowLogger
    from lightning.pytorch.utilities import rank_zero_only

    class BatchedMLFlowLogger(MLFlowLogger):
        """Lightning's MLFlowLogger, sending the rows of many steps in one request: the rows are
        kept until ``save`` (which Lightning and LitAutoencoder.flush_logs call after every burst
        of rows, before every checkpoint and at the end) instead of one request per step, which
        costs milliseconds a step against a database or a server."""

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self._rows: list[Any] = []

        @rank_zero_only
        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            from mlflow.entities import Metric

            ms = int(time.time() * 1000)
            self._rows += [Metric(key=re.sub(r"[^a-zA-Z0-9_/. -]+", "_", k), value=float(v), timestamp=ms, step=step or 0)
                           for k, v in metrics.items() if not isinstance(v, str)]

        @rank_zero_only
        def save(self) -> None:
            super().save()
            rows, self._rows = self._rows, []
            for i in range(0, len(rows), 1000):  # MLflow takes at most 1000 metrics a request
                self.experiment.log_batch(run_id=self.run_id, metrics=rows[i : i + 1000])

        @rank_zero_only
        def finalize(self, status: str = "success") -> None:
            if self._rows:
                self.save()
            super().finalize(status)

    return BatchedMLFlowLogger


def _mlflow(t: "TrainConfig", run_dir: Path, earlier: dict[str, Any] | None) -> "Logger":
    uri = mlflow_uri(t, run_dir)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)  # the default store's folder; MLflow opens it at once
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    logging.getLogger("alembic").setLevel(logging.WARNING)
    run_id = (earlier or {}).get("run_id")
    try:
        if run_id:  # a resumed run: the MLflow run it logged to, when this store holds it
            from mlflow.tracking import MlflowClient

            try:
                MlflowClient(uri).get_run(run_id)
            except Exception:  # noqa: BLE001 - MLflow raises its own exception types per store
                log.info("MLflow run %s is not in %s; the resumed run logs to a new one", run_id, uri)
                run_id = None
        return _mlflow_logger_class()(experiment_name=t.mlflow_experiment, tracking_uri=uri, run_id=run_id,
                                      run_name=run_dir.name, tags={"vaelab.run_dir": str(run_dir.resolve())})
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - a store MLflow cannot open (bad URI, refused file store, no server)
        raise ConfigError(f"train.mlflow_tracking_uri: MLflow cannot open {uri} ({_first_line(e)}); give a URI it "
                          "can open (sqlite:///PATH/mlflow.db, http://HOST:PORT) or leave it unset for the run "
                          "directory's own store") from None


def _mlflow_start(logger: Any, cfg: "RunConfig", resumed: bool) -> dict[str, Any]:
    from mlflow.entities import Param, RunTag

    client, run_id = logger.experiment, logger.run_id  # creates the run (and the experiment) when new
    params = {k: param_text(v) for k, v in flat_config(cfg).items()}
    existing = client.get_run(run_id).data.params
    new = [Param(k, v) for k, v in params.items() if k not in existing]
    # an MLflow parameter keeps its first value: a resumed run that changes a resumable key
    # (train.epochs, ...) records the new value as a tag of the same name
    changed = [RunTag(k, v) for k, v in params.items() if k in existing and existing[k] != v]
    for i in range(0, max(len(new), len(changed)), 100):  # at most 100 parameters a request
        client.log_batch(run_id, params=new[i : i + 100], tags=changed[i : i + 100])
    if resumed:
        client.update_run(run_id, status="RUNNING")
    return {"run_id": run_id, "tracking_uri": logger._tracking_uri, "experiment": cfg.train.mlflow_experiment}


def _mlflow_final(record: dict[str, Any], numbers: dict[str, float]) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    ms = int(time.time() * 1000)
    MlflowClient(record["tracking_uri"]).log_batch(record["run_id"], metrics=[Metric(k, v, ms, 0) for k, v in numbers.items()])


# -- Weights & Biases ----------------------------------------------------------------------------
def _wandb_logger_class() -> type:
    from lightning.pytorch.loggers import WandbLogger
    from lightning.pytorch.utilities import rank_zero_only

    class ClosingWandbLogger(WandbLogger):
        """Lightning's WandbLogger, closing its W&B run when training fails, so that a later run in
        the same process starts its own instead of reusing this one (after a successful fit the
        run stays open for the final metrics; log_final closes it)."""

        @rank_zero_only
        def finalize(self, status: str = "success") -> None:
            super().finalize(status)
            if status == "failed" and self._experiment is not None:
                self._experiment.finish(exit_code=1)

    return ClosingWandbLogger


def wandb_dir(run_dir: Path) -> str:
    """Where W&B writes its files (in a wandb/ folder there): $WANDB_DIR when set, else the run's
    logs/. Read for every run: W&B itself reads $WANDB_DIR once per process."""
    return os.environ.get("WANDB_DIR") or str(run_dir / "logs")


def _wandb(t: "TrainConfig", run_dir: Path, earlier: dict[str, Any] | None) -> "Logger":
    rid = (earlier or {}).get("id") if (earlier or {}).get("project") == t.wandb_project else None
    # mode= goes to wandb.init: Lightning's offline=True would set WANDB_MODE for the whole process
    logger = _wandb_logger_class()(project=t.wandb_project, save_dir=wandb_dir(run_dir), id=rid, name=run_dir.name,
                                   mode=t.wandb_mode)
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)  # W&B warns that the setting has no effect
    return logger


def _wandb_start(logger: Any, cfg: "RunConfig", resumed: bool) -> dict[str, Any]:
    import wandb

    Path(logger.save_dir).mkdir(parents=True, exist_ok=True)
    want = logger._wandb_init.get("id")
    if wandb.run is not None and wandb.run.id != want:
        # a W&B run left open in this process (a run trained with fit() alone, or the user's):
        # Lightning would log into it; this run gets its own
        log.info("finishing W&B run %s, still open in this process, before starting this run's", wandb.run.id)
        wandb.finish()
    run = logger.experiment
    run.config.update(flat_config(cfg), allow_val_change=True)
    return {"id": run.id, "project": cfg.train.wandb_project, "mode": cfg.train.wandb_mode, "dir": logger._wandb_init.get("dir")}


def _wandb_final(record: dict[str, Any], numbers: dict[str, float]) -> None:
    import wandb

    run = wandb.run
    if run is None or run.id != record["id"]:  # the run was closed: continue it to add the summary
        run = wandb.init(id=record["id"], project=record["project"], dir=record.get("dir"), mode=record["mode"], resume="allow")
    run.summary.update(numbers)
    run.finish()


# -- the table -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoggerKind:
    """One value of train.loggers. ``make(train config, run_dir, record of the tracker run an
    earlier segment of this run used, or None)`` gives Lightning's logger; a tracker also has
    ``start(logger, run config, resumed)`` (opens its run, logs the config as parameters, returns
    the record kept in logs/trackers.json) and ``final(record, numbers)`` (the final metrics)."""

    make: Callable[["TrainConfig", Path, dict[str, Any] | None], "Logger"]
    start: Callable[[Any, "RunConfig", bool], dict[str, Any]] | None = None
    final: Callable[[dict[str, Any], dict[str, float]], None] | None = None
    package: str | None = None  # the module it needs, installed by the extra of the same name as the logger
    hint: str = ""  # what to check when its run cannot be started


LOGGERS: dict[str, LoggerKind] = {
    "csv": LoggerKind(_csv),
    "tensorboard": LoggerKind(_tensorboard),
    "mlflow": LoggerKind(_mlflow, _mlflow_start, _mlflow_final, package="mlflow", hint="check train.mlflow_tracking_uri"),
    "wandb": LoggerKind(_wandb, _wandb_start, _wandb_final, package="wandb",
                        hint="log in with `wandb login` or use train.wandb_mode=offline"),
}


def check_packages(t: "TrainConfig") -> None:
    """Refuse, naming the fix, a logger of ``t.loggers`` whose package is not installed."""
    for name in t.loggers:
        module = LOGGERS[name].package
        if module and importlib.util.find_spec(module) is None:
            raise ConfigError(f"train.loggers={name} needs the {module} package, which is not installed; install it with "
                              f'pip install "vaelab[{name}]" (or leave {name} out of train.loggers)')


def read_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """logs/trackers.json of a run directory ({} when there is none or it cannot be read)."""
    try:
        d = json.loads((Path(run_dir) / TRACKERS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in d.items() if isinstance(v, dict)} if isinstance(d, dict) else {}


def make_loggers(t: "TrainConfig", run_dir: Path, resume: bool, main: bool = True) -> dict[str, "Logger"]:
    """Lightning's logger for each name of ``t.loggers``; a resumed run's trackers continue the
    runs recorded in logs/trackers.json. Made once the run directory has been checked (a tracker
    opens its store at once). Trackers log from the main process (global rank 0) only: the
    others (``main=False``) make none."""
    check_packages(t)
    earlier = read_records(run_dir) if resume else {}
    return {name: LOGGERS[name].make(t, run_dir, earlier.get(name)) for name in t.loggers
            if main or LOGGERS[name].start is None}


def start_trackers(loggers: dict[str, "Logger"], cfg: "RunConfig", run_dir: Path, resumed: bool) -> None:
    """Open (or continue) each tracker's run, log the config as its parameters and record its id
    in logs/trackers.json, before the first step: a run killed at any point resumes into it."""
    records = read_records(run_dir)
    started = False
    for name, logger in loggers.items():
        kind = LOGGERS[name]
        if kind.start is None:
            continue
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            records[name] = kind.start(logger, cfg, resumed)
        except Exception as e:  # noqa: BLE001 - a tracker that cannot start its run (no login, no server)
            raise TrainingError(f"train.loggers={name}: the {name} run could not be started ({_first_line(e)}); "
                                f"{kind.hint}, or leave {name} out of train.loggers") from None
        started = True
    if started:
        atomic_write_json(run_dir / TRACKERS_FILE, records)


def log_final(run_dir: str | Path, metrics: Mapping[str, Any], cfg: "RunConfig") -> None:
    """Log the final metrics of a trained run (what metrics.json holds) to each tracker of
    ``cfg.train.loggers`` and close its run; called by the train job after the evaluation."""
    from lightning.pytorch.utilities import rank_zero_only

    if getattr(rank_zero_only, "rank", 0):
        return
    records = read_records(Path(run_dir))
    numbers = final_numbers(metrics)
    for name in cfg.train.loggers:
        final = LOGGERS[name].final
        if final is not None and name in records:
            try:
                final(records[name], numbers)
            except Exception as e:  # noqa: BLE001 - the run is trained and saved: a tracker that fails now does not undo it
                warnings.warn(f"the final metrics could not be logged to {name} ({_first_line(e)}); "
                              f"they are in {Path(run_dir) / 'metrics.json'}")
