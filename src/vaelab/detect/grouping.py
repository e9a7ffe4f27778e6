"""A grouped detector: one model for every group of the data (a product category, a camera, a class),
and for each group a score state, normalisation and threshold of its own, fitted and calibrated on its
items. ``fit(X, groups=...)`` builds it; every scoring method then takes ``groups=`` for the items it
scores and sends each item to its group's detector (``groups_``)."""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch
from sklearn.base import clone

from ..errors import ConfigError, DataError
from .inputs import as_images, calibration_images, calibration_split, group_labels, subset
from .members import detector_members

log = logging.getLogger("vaelab")


class GroupedDetector:
    """The grouping half of AutoencoderDetector (a mixin): fitting per group and sending items to their group."""

    def _fit_groups(self, X: Any, images: torch.Tensor, groups: Any, calibration_set: Any, calibration_groups: Any,
                    val: Any, val_labels: Any) -> Any:
        g = group_labels(groups, len(images), "groups")
        names = list(dict.fromkeys(sorted(g.tolist(), key=str)))
        if calibration_set is not None:
            cal_all = calibration_images(calibration_set, images)
            if calibration_groups is None:
                raise ConfigError("fit(X, groups=..., calibration_set=...) also needs calibration_groups, the group of each "
                                  "calibration item")
            cg = group_labels(calibration_groups, len(cal_all), "calibration_groups")
            missing = [n for n in names if not (cg == n).any()]
            if missing:
                raise DataError(f"groups {missing} have no calibration item; every group needs held-out normal data")
        fit_idx, cal_idx = [], []
        for n in names:  # each group's own held-out part
            idx = np.nonzero(g == n)[0]
            if calibration_set is None:
                f, c = calibration_split(len(idx), self.calibration, self.seed)
                fit_idx.append(idx[f])
                cal_idx.append(idx[c])
            else:
                fit_idx.append(idx)
        all_fit = np.sort(np.concatenate(fit_idx))
        all_cal = np.sort(np.concatenate(cal_idx)) if cal_idx else np.zeros(0, dtype=np.int64)
        held_out = subset(X, images, all_cal) if len(all_cal) else None
        log.info("one model for %d groups (%s)", len(names), ", ".join(map(str, names[:10])) + (" ..." if len(names) > 10 else ""))
        members = detector_members(self, subset(X, images, all_fit), images[torch.as_tensor(all_fit)], held_out)
        self._set_members(members)
        self.groups_ = {}
        raw = np.empty(len(images))
        for k, n in enumerate(names):
            sub = clone(self)
            sub._check_params()
            sub.groups_ = None
            sub._set_members(members)
            if calibration_set is None:
                f_idx, c_idx = fit_idx[k], cal_idx[k]
                cal = images[torch.as_tensor(c_idx)] if len(c_idx) else None
            else:
                f_idx, c_idx = fit_idx[k], np.zeros(0, dtype=np.int64)
                cal = cal_all[torch.as_tensor(np.nonzero(cg == n)[0])]
            log.info("group %s: %d items to fit, %d to calibrate", n, len(f_idx), 0 if cal is None else len(cal))
            local_fit, local_cal = np.arange(len(f_idx)), np.arange(len(f_idx), len(f_idx) + len(c_idx))
            sub._fit_scores(images[torch.as_tensor(f_idx)], cal, local_fit, local_cal, len(f_idx) + len(c_idx), val, val_labels)
            sub.calibrated_on_ = f"group {n}: " + ("calibration_set" if calibration_set is not None else "held-out part of X")
            raw[f_idx] = sub.decision_raw_[local_fit]
            if len(c_idx):
                raw[c_idx] = sub.decision_raw_[local_cal]
            self.groups_[n] = sub
        first = self.groups_[names[0]]
        self.scores_, self.score_ = first.scores_, first.score_
        self.n_train_, self.decision_raw_ = len(images), raw
        self.decision_scores_ = np.empty(len(images))
        for n, sub in self.groups_.items():
            idx = np.nonzero(g == n)[0]
            self.decision_scores_[idx] = sub._scale(raw[idx], clip=True)
        self.labels_ = np.zeros(len(images), dtype=np.int64)
        for n, sub in self.groups_.items():
            idx = np.nonzero(g == n)[0]
            self.labels_[idx] = (self.decision_scores_[idx] > sub.threshold_).astype(np.int64)
        self.thresholds_ = {n: sub.threshold_ for n, sub in self.groups_.items()}
        self.threshold_ = None  # one per group: thresholds_
        self.threshold_info_ = {"rule": "fixed" if self.threshold is not None else self.threshold_rule, "fallback": None,
                                "per_group": len(names)}
        self.held_out_ = all(sub.held_out_ for sub in self.groups_.values())
        self.n_calibration_ = sum(sub.n_calibration_ for sub in self.groups_.values())
        self.calibrated_on_ = f"each of {len(names)} groups on its own held-out part"
        return self

    def _group_items(self, X: Any, groups: Any, name: str = "X") -> tuple[torch.Tensor, list[tuple[Any, np.ndarray]]]:
        """X's items and, per group named in ``groups``, the indices of its items; a group not seen in fit is refused."""
        images = as_images(X, name)
        g = group_labels(groups, len(images), "groups")
        unknown = sorted({v for v in g.tolist() if v not in self.groups_}, key=str)
        if unknown:
            raise DataError(f"groups {unknown[:5]} were not seen in fit; known groups: {list(self.groups_)[:20]}")
        return images, [(n, np.nonzero(g == n)[0]) for n in dict.fromkeys(g.tolist())]

    def _by_group(self, X: Any, groups: Any, fn: Callable[[Any, Any], np.ndarray]) -> np.ndarray:
        """``fn(group's detector, its items)`` of every item of X, in X's order (a grouped detector)."""
        images, parts = self._group_items(X, groups)
        out = np.empty(len(images))
        for n, idx in parts:
            out[idx] = fn(self.groups_[n], images[torch.as_tensor(idx)])
        return out

    def _one_calibration(self, what: str) -> None:
        if getattr(self, "groups_", None):
            raise ConfigError(f"{what} of a grouped detector is each group's own: call it on det.groups_[GROUP] for that group's items")

    def _grouped(self, groups: Any) -> bool:
        if getattr(self, "groups_", None):
            if groups is None:
                raise ConfigError(f"this detector was fitted with groups ({len(self.groups_)}): pass groups= for the items "
                                  "scored, one label per item")
            return True
        if groups is not None:
            raise ConfigError("groups= is for a detector fitted with groups; this one was fitted without")
        return False
