"""A fitted AutoencoderDetector as a folder of data: ``detector.json`` (its settings, its learned numbers and
the layout of its arrays), ``arrays.safetensors`` (calibration scores, the scores' fitted state) and one
``model-I.safetensors`` per member (weights, with the model's config in the header). Nothing is pickled:
loading parses JSON and raw tensors, rebuilds each score from the detector's settings and refuses a
folder whose parts do not fit together, a symlink among them, or a file larger than a detector can be."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError

FORMAT = "vaelab-detector"
VERSION = 1
MAX_JSON_BYTES = 1 << 20
_SKIP = ("fit_images_",)  # an identity marker of the images fit() saw, not state


def _state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The fitted state of a score (attributes ending in '_', and its members' for a combo) as JSON
    entries, with its arrays put in ``tensors`` under ``prefix``."""
    from sklearn.mixture import GaussianMixture

    from .scores import Whitener

    meta: dict[str, Any] = {}
    for k, v in vars(obj).items():
        if k.startswith("_") or k in _SKIP or not (k.endswith("_") or (k == "members" and isinstance(v, list))):
            continue
        key = prefix + k
        if isinstance(v, torch.Tensor):
            tensors[key] = v.detach().cpu().contiguous()
            meta[k] = {"tensor": key}
        elif isinstance(v, np.ndarray):
            tensors[key] = torch.from_numpy(np.ascontiguousarray(v))
            meta[k] = {"array": key}
        elif isinstance(v, Whitener):
            meta[k] = {"whitener": _state(v, key + ".", tensors), "dims": v.dims}
        elif isinstance(v, GaussianMixture):
            for a in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
                tensors[f"{key}.{a}"] = torch.from_numpy(np.ascontiguousarray(getattr(v, a)))
            meta[k] = {"gmm": key, "n_components": int(v.n_components), "covariance_type": v.covariance_type}
        elif k == "members":
            meta[k] = [_state(m, f"{key}.{j}.", tensors) for j, m in enumerate(v)]
        elif v is None or isinstance(v, (bool, int, float, str)):
            meta[k] = {"value": v}
        else:
            raise ConfigError(f"the {getattr(obj, 'name', type(obj).__name__)} score holds {k} of type {type(v).__name__}, "
                              "which a saved detector cannot store")
    return meta


def _restore(obj: Any, meta: dict[str, Any], tensors: dict[str, torch.Tensor], where: str) -> None:
    from sklearn.mixture import GaussianMixture

    from .scores import Whitener

    def tensor(key: Any) -> torch.Tensor:
        if not isinstance(key, str) or key not in tensors:
            raise CheckpointError(f"{where}: arrays.safetensors has no array {key!r}; the detector folder is damaged or edited")
        return tensors[key]

    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: detector.json's score state is not a mapping")
    for k, entry in meta.items():
        if not isinstance(k, str) or not (k.endswith("_") or k == "members") or k.startswith("_"):
            raise CheckpointError(f"{where}: detector.json names an unknown score attribute {k!r}")
        if k == "members":
            members = getattr(obj, "members", None)
            if not isinstance(entry, list) or not isinstance(members, list) or len(entry) != len(members):
                raise CheckpointError(f"{where}: the combo's saved members do not match its settings")
            for m, e in zip(members, entry):
                _restore(m, e, tensors, where)
        elif not isinstance(entry, dict):
            raise CheckpointError(f"{where}: detector.json's entry for {k} is not a mapping")
        elif "tensor" in entry:
            setattr(obj, k, tensor(entry["tensor"]))
        elif "array" in entry:
            setattr(obj, k, tensor(entry["array"]).numpy())
        elif "whitener" in entry:
            w = Whitener(entry.get("dims"))
            _restore(w, entry["whitener"], tensors, where)
            setattr(obj, k, w)
        elif "gmm" in entry:
            if entry.get("covariance_type") not in ("full", "tied", "diag", "spherical"):
                raise CheckpointError(f"{where}: unknown mixture covariance type {entry.get('covariance_type')!r}")
            g = GaussianMixture(int(entry["n_components"]), covariance_type=entry["covariance_type"])
            for a in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
                setattr(g, a, tensor(f"{entry['gmm']}.{a}").numpy())
            if len(g.weights_) != g.n_components or g.means_.shape[0] != g.n_components:
                raise CheckpointError(f"{where}: the saved mixture's arrays do not fit its {g.n_components} components")
            g.converged_, g.n_iter_, g.lower_bound_ = True, 0, 0.0
            setattr(obj, k, g)
        elif "value" in entry and (entry["value"] is None or isinstance(entry["value"], (bool, int, float, str))):
            setattr(obj, k, entry["value"])
        else:
            raise CheckpointError(f"{where}: detector.json's entry for {k} is not one a saved detector writes")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v


LEARNED = ("threshold_", "raw_min_", "raw_max_", "n_train_", "n_calibration_", "held_out_", "calibrated_on_", "model_name_")


def save_detector(det: Any, path: str | Path, with_models: bool = True) -> Path:
    """Write fitted ``det`` to the new folder ``path`` (refused if it exists and is not empty). A grouped
    detector writes its models once and each group's calibration in ``group-K/`` beside them."""
    from ..fileio import atomic_write_text
    from ..models.persist import save_weights
    from safetensors.torch import save_file

    from ..fileio import atomic_path

    det._check_fitted()
    path = Path(path)
    if path.is_symlink() or (path.exists() and (not path.is_dir() or any(path.iterdir()))):
        raise ConfigError(f"{path} already exists and is not an empty folder; a detector is saved into a new one")
    path.mkdir(parents=True, exist_ok=True)
    if getattr(det, "groups_", None):
        for i, (model, std) in enumerate(zip(det.models_, det.standardizers_)):
            save_weights(model, path / f"model-{i}.safetensors")
            if std is not None:
                with atomic_path(path / f"standardizer-{i}.safetensors") as tmp:
                    save_file({"center": std[0].contiguous(), "scale": std[1].contiguous()}, str(tmp))
        names = list(det.groups_)
        for k, n in enumerate(names):
            save_detector(det.groups_[n], path / f"group-{k}", with_models=False)
        doc = {"format": FORMAT, "version": VERSION, "groups": _jsonable(names), "n_models": len(det.models_),
               "params": {k: _jsonable(v) for k, v in det.get_params().items() if k not in ("model", "train_dir")}}
        atomic_write_text(path / "detector.json", json.dumps(doc, indent=1, allow_nan=False) + "\n")
        return path
    tensors: dict[str, torch.Tensor] = {  # raw: the normalisation in detector.json maps them to the detector's scale
        "calibration_raw": torch.from_numpy(np.asarray(det.calibration_raw_, dtype=np.float64)),
        "decision_raw": torch.from_numpy(np.asarray(det.decision_raw_, dtype=np.float64)),
    }
    members = []
    for i, (model, score, std) in enumerate(zip(det.models_, det.scores_, det.standardizers_)):
        if with_models:
            save_weights(model, path / f"model-{i}.safetensors")
        if std is not None:
            tensors[f"member{i}.center"], tensors[f"member{i}.scale"] = (t.contiguous() for t in std)
        members.append({"score": score.spec(), "state": _state(score, f"member{i}.score.", tensors),
                        "standardized": std is not None})
    params = {k: _jsonable(v) for k, v in det.get_params().items() if k not in ("model", "train_dir")}
    doc = {"format": FORMAT, "version": VERSION, "params": params, "members": members,
           "learned": {k: _jsonable(getattr(det, k, None)) for k in LEARNED},
           "norm_quantiles": list(det.norm_quantiles_), "threshold_info": _jsonable(det.threshold_info_)}
    with atomic_path(path / "arrays.safetensors") as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(path / "detector.json", json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return path


MAX_ARRAY_BYTES = 8 << 30


def _check_file(path: Path) -> None:
    if path.is_symlink():
        raise CheckpointError(f"{path} is a symlink; a saved detector's files are read only as plain files")
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; this is not a saved vaelab detector (AutoencoderDetector.save writes it)")


def _read_file(path: Path, limit: int = MAX_ARRAY_BYTES) -> bytes:
    """The bytes of a plain file of the folder, opened without following a symlink, at most ``limit`` of them."""
    from ..runfiles import read_bytes

    _check_file(path)
    return read_bytes(path, limit)


def _load_model(weights: Path) -> Any:
    from ..models import build, make_config
    from ..models.persist import load_weights, read_metadata

    _check_file(weights)  # safetensors reads it by name: no symlink is followed into it
    meta = read_metadata(weights)
    try:
        config = json.loads(meta.get("config", ""))
        model = load_weights(build(make_config(meta["model"], {k: v for k, v in config.items() if k != "name"})), weights)
    except (KeyError, ValueError, TypeError, AttributeError, ConfigError) as e:
        raise CheckpointError(f"{weights}: its header does not describe a vaelab model ({e})") from None
    return model.eval()


def _load_groups(path: Path, doc: dict[str, Any]) -> Any:
    from safetensors.torch import load as load_safetensors

    from .detector import AutoencoderDetector
    from .inputs import group_labels

    names, n_models = doc.get("groups"), doc.get("n_models")
    if not isinstance(names, list) or not names or not isinstance(n_models, int) or not 1 <= n_models <= 64:
        raise CheckpointError(f"{path / 'detector.json'}: its groups or model count are not what a grouped detector writes")
    models, stds = [], []
    for i in range(n_models):
        models.append(_load_model(path / f"model-{i}.safetensors"))
        std_file = path / f"standardizer-{i}.safetensors"
        if std_file.exists() or std_file.is_symlink():
            t = load_safetensors(_read_file(std_file))
            if set(t) != {"center", "scale"}:
                raise CheckpointError(f"{std_file} is not a standardiser (center, scale)")
            stds.append((t["center"], t["scale"]))
        else:
            stds.append(None)
    try:
        det = AutoencoderDetector(**{k: v for k, v in (doc.get("params") or {}).items()})
        det._check_params()
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path / 'detector.json'}: its settings are refused ({e})") from None
    det._set_members(list(zip(models, stds)))
    det.groups_ = {}
    labels = group_labels(names, len(names), "groups")
    for k, n in enumerate(labels.tolist()):
        det.groups_[n] = load_detector(path / f"group-{k}", members=(models, stds))
    first = next(iter(det.groups_.values()))
    det.scores_, det.score_ = first.scores_, first.score_
    det.thresholds_ = {n: sub.threshold_ for n, sub in det.groups_.items()}
    det.threshold_ = None
    det.threshold_info_ = {"rule": "fixed" if det.threshold is not None else det.threshold_rule, "fallback": None,
                           "per_group": len(det.groups_)}
    det.held_out_ = all(sub.held_out_ for sub in det.groups_.values())
    det.n_calibration_ = sum(sub.n_calibration_ for sub in det.groups_.values())
    det.n_train_ = sum(sub.n_train_ for sub in det.groups_.values())
    det.model = det.models_ if len(det.models_) > 1 else det.model_
    return det


def load_detector(path: str | Path, members: tuple[list[Any], list[Any]] | None = None) -> Any:
    """The detector ``save_detector`` wrote to ``path``; a damaged or edited folder is refused, saying what.
    ``members``: the (models, standardisers) of a group's folder, which its grouped parent holds."""
    from safetensors.torch import load as load_safetensors

    from .detector import AutoencoderDetector
    from .scores import all_options

    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        raise CheckpointError(f"{path} is not a folder (a symlink is not followed); give the folder AutoencoderDetector.save wrote")
    try:
        doc = json.loads(_read_file(path / "detector.json", MAX_JSON_BYTES).decode("utf-8"),
                         parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not a number JSON allows")))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path / 'detector.json'} is not valid JSON ({e}); the folder is damaged or edited") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise CheckpointError(f"{path / 'detector.json'} is not a vaelab detector of format version {VERSION}")
    if "groups" in doc and members is None:
        return _load_groups(path, doc)
    given = members
    params, members = doc.get("params"), doc.get("members")
    if not isinstance(params, dict) or not isinstance(members, list) or not members:
        raise CheckpointError(f"{path / 'detector.json'} lacks the detector's settings or members")
    try:
        tensors = load_safetensors(_read_file(path / "arrays.safetensors"))
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise CheckpointError(f"{path / 'arrays.safetensors'} is not a readable safetensors file ({e})") from None
    allowed = (set(AutoencoderDetector._settings()) | set(all_options())) - {"model", "train_dir"}
    if set(params) - allowed:
        raise CheckpointError(f"{path / 'detector.json'} has unknown settings {sorted(set(params) - allowed)}")
    try:
        det = AutoencoderDetector(**params)
        det._check_params()
    except ConfigError as e:
        raise CheckpointError(f"{path / 'detector.json'}: its settings are refused ({e})") from None
    det.models_, det.scores_, det.standardizers_ = [], [], []
    if given is not None and len(given[0]) != len(members):
        raise CheckpointError(f"{path}: {len(members)} members, but the grouped detector holds {len(given[0])} models")
    for i, m in enumerate(members):
        model = given[0][i] if given is not None else _load_model(path / f"model-{i}.safetensors")
        std = None
        if isinstance(m, dict) and m.get("standardized"):
            std = (tensors.get(f"member{i}.center"), tensors.get(f"member{i}.scale"))
            if std[0] is None or std[1] is None:
                raise CheckpointError(f"{path}: member {i}'s standardisation is missing from arrays.safetensors")
        det.models_.append(model)
        det.standardizers_.append(std)
        score = det._make_score(model)
        if not isinstance(m, dict) or m.get("score") != score.spec():
            raise CheckpointError(f"{path}: member {i}'s score was saved as {m.get('score') if isinstance(m, dict) else m!r}, "
                                  f"but the settings make {score.spec()}; the folder was edited or written by another version")
        _restore(score, m.get("state", {}), tensors, str(path))
        det.scores_.append(score)
    det.model_, det.score_ = det.models_[0], det.scores_[0]
    det.model = det.models_ if len(det.models_) > 1 else det.model_
    det.input_center_, det.input_scale_ = det.standardizers_[0] or (None, None)
    learned = doc.get("learned") if isinstance(doc.get("learned"), dict) else {}
    for k in LEARNED:
        setattr(det, k, learned.get(k))
    if not all(isinstance(getattr(det, k), (int, float)) and not isinstance(getattr(det, k), bool)
               and math.isfinite(getattr(det, k)) for k in ("threshold_", "raw_min_", "raw_max_")):
        raise CheckpointError(f"{path / 'detector.json'}: the threshold and normalisation must be finite numbers")
    det.norm_quantiles_ = tuple(float(q) for q in doc.get("norm_quantiles", ()))
    det.threshold_info_ = doc.get("threshold_info") if isinstance(doc.get("threshold_info"), dict) else {}
    for name in ("calibration_raw", "decision_raw"):
        if name not in tensors or tensors[name].ndim != 1 or not torch.isfinite(tensors[name]).all():
            raise CheckpointError(f"{path / 'arrays.safetensors'} has no finite {name} scores; the folder is damaged or edited")
    det.calibration_raw_, det.decision_raw_ = tensors["calibration_raw"].numpy(), tensors["decision_raw"].numpy()
    if len(det.calibration_raw_) != det.n_calibration_:
        raise CheckpointError(f"{path}: {len(det.calibration_raw_)} calibration scores, but detector.json says "
                              f"{det.n_calibration_}; the folder was edited")
    det.calibration_scores_ = det._scale(det.calibration_raw_, clip=False)
    det.decision_scores_ = det._scale(det.decision_raw_, clip=True)
    det.labels_ = (det.decision_scores_ > det.threshold_).astype(np.int64)
    return det
