"""The autoencoder anomaly detector, in the scikit-learn / PyOD estimator shape. Its inputs are checked
in ``inputs``, its models trained or loaded in ``members``, its groups handled in ``grouping``; the
scores and their options come from the registry (vaelab.detect.scores), through ``options``."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..errors import ConfigError, DataError, ModelError
from ..models import Autoencoder
from .conformal import benjamini_hochberg, check_rate, conformal_pvalues
from .grouping import GroupedDetector
from .inputs import (DEFAULT_NORM_RANGE, NORM_RANGES, as_images, calibration_images, calibration_split, group_labels,
                     resolve_norm_range, subset)
from .members import detector_members
from .options import ScoreOptions
from .scores import get_score, score_images
from .thresholds import THRESHOLD_RULES, choose_threshold, predict_confidence, predict_proba

log = logging.getLogger("vaelab")

# reconstruction error and latent density, each z-scored against the training set: see the README
DEFAULT_SCORE = "combo"

class AutoencoderDetector(ScoreOptions, GroupedDetector, BaseEstimator):
    """Anomaly / out-of-distribution detector backed by any autoencoder of the family.

    Parameters
    ----------
    model : None, an ``Autoencoder``, a run directory, or a list of them (an ensemble: each member's score
        is fitted on X and the raw score is the mean of the members' raw scores). On vectors (N x D tabular data), a detector that
        trains its model or reads it from a run directory standardises X as the model's training data
        were (the run's ``data.center`` / ``data.scale``); an ``Autoencoder`` object takes X as its model
        sees it.
        None: ``fit`` trains ``model_name`` on X with vaelab's trainer ('auto', the default: on square colour
        images an arnet whose rotation head is a network of its own, scored by that head (members.COLOUR_MODEL);
        else an ssvae when X is an ImageSet whose labels are known for some images of two or more classes and unknown
        (-1) for the others, as in the OOD study's training split; else a vae; ``epochs``, ``overrides`` as
        nested run-config keys, e.g. ``{"model": {"arch": "mlp"}}``; into ``train_dir``, or a
        temporary directory that is removed); ``n_models`` > 1 trains that many with the seeds seed,
        seed + 1, ... (into ``train_dir``/model-0, model-1, ...) and ensembles them. Otherwise ``fit``
        only scores X to set the threshold.
    score : the name of any registered score (``vaelab scores`` lists them, a user's registered with
        ``@vaelab.register_score`` too). Default 'combo' of DEFAULT_COMBO = 'ssim', 'latent_gmm', 'feature_knn'
        and 'patch_mse', each z-scored by its training scores; needs no prior, so any model works; a model
        with a classifier (ssvae) adds 'class_energy' twice and 'class_entropy' once, DEFAULT_CLASSIFIER_COMBO;
        on a model with a rotation head network (arnet, ``model.head_net``) it is that head's 'transform_nll'.
    contamination : fraction of unseen normal data flagged: the threshold is the split-conformal
        (1 - contamination) quantile of ``calibration_scores_``, the scores of normal images that neither
        the model (when the detector trains it) nor the score's state was fitted on, so a new normal image
        is flagged with probability at most ``contamination`` (and within 1 / (n_calibration_ + 1) of it).
        With ``calibration=0``, the linear quantile of the training scores (PyOD's rule). Ignored when
        ``threshold`` is given; the fallback of the other rules.
    calibration : the fraction of X held out from fitting (default 0.1, as data.val_fraction) on which the normalisation and the
        threshold are computed: a model and a score fitted on an image score it lower than an unseen normal
        image, so quantiles of the fitted images' own scores flag more new normal data than
        ``contamination`` says. When the detector trains its model, the held-out part is the trainer's
        validation set. ``fit(X, calibration_set=...)`` gives the held-out images instead (``vaelab detect``
        passes the run's validation split, which its model never fitted); 0 calibrates on X's own scores
        (the earlier behaviour).
    threshold_rule : how ``threshold_`` is chosen when no fixed ``threshold`` is given (see
        vaelab.detect.thresholds): 'contamination' (default), 'f1' (the F1-best point on a labelled
        validation set passed to ``fit(X, val=..., val_labels=...)``; with no anomaly in it, a warning
        and the contamination rule), or a rule on the training scores: 'mad' (median + 3 x 1.4826 MAD),
        'iqr' (Q3 + 1.5 IQR), 'gmm' (where a two-component mixture's upper component takes over).
        'conformal' flags at the false-alarm rate ``fpr``: exactly the images whose conformal p-value
        (``predict_pvalues``) is at most ``fpr``, at most that share of new normal images on average.
    fpr : the false-alarm rate of ``threshold_rule='conformal'``, in (0, 1).
    threshold : an explicit threshold on ``decision_function`` (in [0, 1) when ``normalize``).
    normalize : scale the scores linearly by two quantiles of the training scores (``norm_range``) and
        clip to [0, 1].
    norm_range : the quantiles of the training scores that ``normalize`` maps to 0 and 1: a name,
        'quantile' (default: the median and the 99.9th percentile) or 'minmax' (the min and max), or
        two numbers such as (0.5, 0.99). With 'quantile' a fixed threshold such as 0.3 flags a
        stable share of normal images from one model and seed to the next; with 'minmax' the
        share moves with the one most extreme training image.
    **score_options : options of the scores, each declared once with its default where the score is defined
        (``vaelab scores -v``): e.g. ``combo`` and ``combo_method`` (the members of 'combo' and how they are put
        on one scale), ``patch_size``, ``n_samples``, ``nll_k``, ``gmm_components``, ``knn_k``, ``feature_dims``.
        The score takes those it declares (a combo passes the rest to its members); an option no registered
        score declares is refused. Each given option is an attribute and a parameter (``get_params``).

    Learned state: ``models_`` and ``scores_`` (one per member; ``model_`` and ``score_`` are the first), ``decision_scores_`` (the training set's anomaly scores),
    ``calibration_scores_`` (the held-out normal scores the threshold and normalisation come from; ``n_calibration_`` of them),
    ``threshold_``, ``labels_`` (1 = flagged), ``raw_min_`` / ``raw_max_`` (the normalisation: the raw
    scores that map to 0 and 1, the training scores' ``norm_quantiles_``, the quantiles ``norm_range`` names).
    ``decision_function``: higher = more anomalous (PyOD); ``score_samples`` = -decision_function
    (higher = more normal, scikit-learn); ``predict``: 1 = anomaly, 0 = normal (PyOD).
    """

    def __init__(self, model: Autoencoder | str | Path | None = None, score: str = DEFAULT_SCORE,
                 contamination: float | None = 0.1, threshold: float | None = None, normalize: bool = True, *,
                 norm_range: Sequence[float] | str = DEFAULT_NORM_RANGE, threshold_rule: str = "contamination",
                 model_name: str = "auto", epochs: int = 10, n_models: int = 1, overrides: dict[str, Any] | None = None,
                 train_dir: str | Path | None = None, batch_size: int = 500, seed: int = 0, calibration: float = 0.1,
                 fpr: float | None = None, **score_options: Any):
        self.model = model
        self.score = score
        self.contamination = contamination
        self.threshold = threshold
        self.normalize = normalize
        self.norm_range = norm_range
        self.threshold_rule = threshold_rule
        self.model_name = model_name
        self.epochs = epochs
        self.n_models = n_models
        self.overrides = overrides
        self.train_dir = train_dir
        self.batch_size = batch_size
        self.seed = seed
        self.calibration = calibration
        self.fpr = fpr
        self._score_options: list[str] = []
        self._set_score_options(score_options)

    # -- fitting --------------------------------------------------------------------------------
    def _check_params(self) -> None:
        get_score(self.score)  # an unknown name is refused with the registered ones
        if self.threshold is None:
            if self.threshold_rule not in THRESHOLD_RULES:
                raise ConfigError(f"unknown threshold_rule {self.threshold_rule!r}; choose one of: {', '.join(THRESHOLD_RULES)}")
            if self.contamination is None:
                raise ConfigError("give the detector a contamination (fraction of training data flagged, e.g. 0.1) "
                                  "or an explicit threshold")
            if not 0 < self.contamination <= 0.5:
                raise ConfigError(f"contamination must be in (0, 0.5], got {self.contamination}")
        else:
            if not math.isfinite(self.threshold):
                raise ConfigError(f"threshold must be a finite number, got {self.threshold}")
            if self.normalize and not 0 <= self.threshold < 1:
                raise ConfigError(f"with normalize=True scores lie in [0, 1]: give a threshold in [0, 1) "
                                  f"(e.g. 0.3), not {self.threshold}; or set normalize=False for a raw threshold")
        self.norm_quantiles_ = resolve_norm_range(self.norm_range)
        if self.fpr is not None:
            check_rate(self.fpr, "fpr")
        if self.threshold is None and self.threshold_rule == "conformal" and self.fpr is None:
            raise ConfigError("threshold_rule='conformal' flags at a false-alarm rate: give fpr (e.g. fpr=0.05, at most that "
                              "share of new normal data flagged on average)")
        c = self.calibration
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or not 0 <= c < 1:
            raise ConfigError(f"calibration is the fraction of the training data held out to set the threshold, a number in "
                              f"[0, 1) (default 0.1; 0 calibrates on the fitted data's own scores); got {c!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if isinstance(self.n_models, bool) or not isinstance(self.n_models, int) or self.n_models < 1:
            raise ConfigError(f"n_models is how many models fit trains (seeds seed, seed + 1, ...), an integer >= 1; "
                              f"got {self.n_models!r}")
        if self.n_models > 1 and self.model is not None:
            raise ConfigError(f"n_models={self.n_models} is how many models fit trains when model=None; to ensemble "
                              "models you have, pass them as a list: model=[run_dir_1, run_dir_2]")

    def fit(self, X: Any, y: Any = None, *, val: Any = None, val_labels: Any = None,
            calibration_set: Any = None, groups: Any = None, calibration_groups: Any = None) -> "AutoencoderDetector":
        """Train a model on X (when none was given), fit the score's state on X, and set the normalisation
        and ``threshold_`` (``threshold_info_`` says how) on calibration scores of normal images that
        nothing was fitted on: ``calibration_set`` when given, else the ``calibration`` fraction of X held
        out from fitting (none when 0). ``decision_scores_`` and ``labels_`` are X's scores and flags;
        ``calibration_scores_`` the held-out ones. ``y`` is ignored (unsupervised); ``val`` /
        ``val_labels`` (1 = anomaly) are the labelled validation set of ``threshold_rule='f1'``.

        ``groups``: one label per item of X (a product category, a camera, a class): one model is trained on
        all of X, and each group gets its own score state, normalisation and threshold, fitted and calibrated
        on its own items (``groups_``: group -> a detector of that group); then every scoring method takes
        ``groups=`` for the items it scores. With ``calibration_set``, ``calibration_groups`` labels it."""
        self._check_params()
        if self.threshold is None and self.threshold_rule == "f1" and (val is None or val_labels is None):
            raise ConfigError("threshold_rule='f1' picks the threshold on a labelled validation set: pass "
                              "fit(X, val=images, val_labels=labels) (1 = anomaly), or choose an unsupervised rule "
                              f"({', '.join(r for r in THRESHOLD_RULES if r != 'f1')})")
        images = as_images(X)
        self.groups_ = None
        if groups is not None:
            return self._fit_groups(X, images, groups, calibration_set, calibration_groups, val, val_labels)
        fit_idx, cal_idx = calibration_split(len(images), 0.0 if calibration_set is not None else self.calibration, self.seed)
        fit_X = subset(X, images, fit_idx)
        fit_images = as_images(fit_X)
        if calibration_set is not None:
            cal_images = calibration_images(calibration_set, images)
        else:
            cal_images = images[cal_idx] if len(cal_idx) else None
        held_out = None if cal_images is None or calibration_set is not None else subset(X, images, cal_idx)
        self._set_members(detector_members(self, fit_X, fit_images, held_out))
        self._fit_scores(fit_images, cal_images, fit_idx, cal_idx, len(images), val, val_labels)
        self.calibrated_on_ = ("calibration_set" if calibration_set is not None else
                               "held-out part of X" if len(cal_idx) else "X (the fitted data's own scores)")
        return self

    def _set_members(self, members: list[tuple[Autoencoder, Any]]) -> None:
        self.models_ = [m for m, _ in members]
        self.standardizers_ = [std for _, std in members]
        self.model_ = self.models_[0]
        # the first member's standardiser of vectors (None for images, or a model given as an object)
        self.input_center_, self.input_scale_ = self.standardizers_[0] or (None, None)

    def _fit_scores(self, fit_images: torch.Tensor, cal_images: torch.Tensor | None, fit_idx: np.ndarray,
                    cal_idx: np.ndarray, n: int, val: Any, val_labels: Any) -> None:
        """Each member's score fitted on ``fit_images`` and its scores of them (and of ``cal_images``, held out),
        then the calibration; ``decision_raw_`` puts them in X's order (fit_idx, cal_idx of n items)."""
        self.scores_, fit_raws, cal_raws = [], [], []
        for i, model in enumerate(self.models_):
            x = self._prepare(fit_images, i)
            log.info("fitting the %r score on %d training images%s", self.score, len(x),
                     f" (model {i + 1} of {len(self.models_)})" if len(self.models_) > 1 else "")
            score = self._make_score(model).fit(model, x, self.batch_size, self.seed)
            fit_raws.append(score.training_scores(model, x, self.batch_size, self.seed).numpy())
            if cal_images is not None:
                log.info("calibrating on %d held-out normal images", len(cal_images))
                cal_raws.append(score_images(model, score, self._prepare(cal_images, i), self.batch_size, self.seed).numpy())
            self.scores_.append(score)
        self.score_ = self.scores_[0]
        fit_raw = np.mean(fit_raws, 0)
        cal_raw = np.mean(cal_raws, 0) if cal_raws else fit_raw
        raw = np.empty(n)
        raw[fit_idx] = fit_raw
        if len(cal_idx):
            raw[cal_idx] = cal_raw
        self.decision_raw_ = raw
        self.n_train_ = n
        self._calibrate(cal_raw, held_out=bool(cal_raws), val=val, val_labels=val_labels)

    def _calibrate(self, cal_raw: np.ndarray, held_out: bool, val: Any = None, val_labels: Any = None) -> None:
        """The normalisation and threshold from raw calibration scores (``held_out``: of data nothing was
        fitted on, so the conformal quantile and p-values apply); the training set's scores and flags follow."""
        lo, hi = self.norm_quantiles_
        # (0, 1): exactly the min and max; np.quantile interpolates linearly between calibration scores
        self.raw_min_, self.raw_max_ = (float(v) for v in np.quantile(cal_raw, [lo, hi]))
        self.calibration_raw_ = np.asarray(cal_raw, dtype=np.float64)
        self.calibration_scores_ = self._scale(self.calibration_raw_, clip=False)  # unclipped, as decision_function(clip=False)
        self.decision_scores_ = self._scale(self.decision_raw_, clip=True)
        if self.threshold is not None:
            self.threshold_, self.threshold_info_ = float(self.threshold), {"rule": "fixed", "fallback": None}
        else:
            vs = None
            if self.threshold_rule == "f1":
                vs = self._scale(self._raw(as_images(val, "val")), clip=False)
            rate = self.fpr if self.threshold_rule == "conformal" else self.contamination
            thr, self.threshold_info_ = choose_threshold(self.threshold_rule, self.calibration_scores_, vs, val_labels,
                                                         rate, seed=self.seed, held_out=held_out)
            self.threshold_ = float(thr)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        self.n_calibration_ = len(cal_raw)
        self.held_out_ = held_out  # the calibration scores are of data nothing was fitted on: p-values hold

    def update_calibration(self, X_new: Any, keep: int = 0, val: Any = None, val_labels: Any = None,
                           groups: Any = None) -> "AutoencoderDetector":
        """Calibrate again on new normal data, without refitting the model or the score: the normalisation,
        the threshold and the p-values then describe ``X_new`` (plus the last ``keep`` calibration scores
        before it, a sliding window over a stream). For drift: when what counts as normal moves, a batch of
        recent normal images recalibrates the detector in the time it takes to score them. ``X_new`` must be
        normal data the score was not fitted on, as the first calibration part was. A grouped detector
        recalibrates each group named in ``groups`` on its items, and leaves the others as they are."""
        self._check_fitted()
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ConfigError(f"keep is how many of the latest calibration scores stay beside the new ones, an integer >= 0; got {keep!r}")
        if self._grouped(groups):
            images, parts = self._group_items(X_new, groups, "X_new")
            for n, idx in parts:
                self.groups_[n].update_calibration(images[torch.as_tensor(idx)], keep, val, val_labels)
            self.thresholds_ = {n: sub.threshold_ for n, sub in self.groups_.items()}
            return self
        new = self._raw(as_images(X_new, "X_new"))
        old = self.calibration_raw_[-keep:] if keep and self.held_out_ else np.zeros(0)
        self._calibrate(np.concatenate([old, new]), held_out=True, val=val, val_labels=val_labels)
        self.calibrated_on_ = f"update_calibration ({len(new)} new, {len(old)} kept)"
        return self

    def _prepare(self, images: torch.Tensor, member: int = 0) -> torch.Tensor:
        """Vectors standardised as member ``member``'s model was trained (when the detector trained the
        model or read it from a run directory; a model object takes vectors as they are); images unchanged."""
        std = self.standardizers_[member]
        if std is None or images.ndim != 2:
            return images
        center, scale = std
        if images.shape[1] != len(center):
            raise DataError(f"vectors of {images.shape[1]} columns; the model was trained on {len(center)}")
        return (images - center) / scale

    def _raw(self, images: torch.Tensor) -> np.ndarray:
        """The mean over the members of each one's raw score (one member: its raw score)."""
        return np.mean([score_images(m, s, self._prepare(images, i), self.batch_size, self.seed).numpy()
                        for i, (m, s) in enumerate(zip(self.models_, self.scores_))], 0)

    # -- scoring --------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "score_"):
            raise ModelError("this AutoencoderDetector is not fitted yet; call fit(X) with normal training images first")

    def _scale(self, raw: np.ndarray, clip: bool) -> np.ndarray:
        if not self.normalize:
            return raw
        span = self.raw_max_ - self.raw_min_
        s = (raw - self.raw_min_) / (span if span > 0 else 1.0)
        return np.clip(s, 0.0, 1.0) if clip else s

    def raw_scores(self, X: Any, groups: Any = None) -> np.ndarray:
        """The score before normalisation (higher = more anomalous); ``groups``: of a grouped detector."""
        self._check_fitted()
        if self._grouped(groups):
            return self._by_group(X, groups, lambda d, x: d.raw_scores(x))
        return self._raw(as_images(X))

    def decision_function(self, X: Any, clip: bool = True, groups: Any = None) -> np.ndarray:
        """Anomaly scores, higher = more anomalous; with ``normalize`` min-max scaled by the
        training scores and (``clip``) clipped to [0, 1]. Unclipped scores keep the order of the
        images beyond the training range (use them for ROC-AUC). A grouped detector scales each item by
        its group's calibration."""
        if self._grouped(groups):
            return self._by_group(X, groups, lambda d, x: d.decision_function(x, clip))
        return self._scale(self.raw_scores(X), clip)

    def score_samples(self, X: Any, groups: Any = None) -> np.ndarray:
        """Normality: the opposite of ``decision_function`` (higher = more normal, as scikit-learn)."""
        return -self.decision_function(X, groups=groups)

    def predict(self, X: Any, fdr: float | None = None, groups: Any = None) -> np.ndarray:
        """1 for an anomaly (score above ``threshold_``), 0 for a normal image. Compared before
        clipping, so an image beyond the training range is flagged whatever the threshold.
        ``fdr``: flag instead by the Benjamini-Hochberg procedure on the batch's conformal p-values, so
        that of the images flagged, the expected share of normal ones is at most ``fdr``. A grouped
        detector applies each group's threshold (and p-values) to its items."""
        if fdr is not None:
            return benjamini_hochberg(self.predict_pvalues(X, groups), check_rate(fdr, "fdr"))
        if self._grouped(groups):
            return self._by_group(X, groups, lambda d, x: d.predict(x)).astype(np.int64)
        return (self.decision_function(X, clip=False) > self.threshold_).astype(np.int64)

    def predict_pvalues(self, X: Any, groups: Any = None) -> np.ndarray:
        """Split-conformal p-values: (1 + #{calibration scores >= the image's}) / (n_calibration_ + 1). For a
        new normal image exchangeable with the held-out calibration images, P(p <= alpha) <= alpha for
        every alpha (on average over draws of the calibration part). Small p = anomalous. A grouped
        detector compares each item with its own group's calibration scores."""
        self._check_fitted()
        if self._grouped(groups):
            return self._by_group(X, groups, lambda d, x: d.predict_pvalues(x))
        if not self.held_out_:
            raise ModelError("p-values need calibration scores of held-out normal data, and this detector was calibrated "
                             "on the data it fitted (calibration=0); fit it with calibration > 0 or a calibration_set")
        return conformal_pvalues(self.calibration_scores_, self.decision_function(X, clip=False))

    def predict_proba(self, X: Any, method: str = "linear") -> np.ndarray:
        """[N, 2] probabilities (normal, anomaly) with PyOD's meaning: 'linear' scales the scores by the
        training scores' range, 'unify' maps them through the Gaussian error function fitted to the
        training scores (Kriegel et al. 2011)."""
        self._check_fitted()
        self._one_calibration("predict_proba")
        return predict_proba(self.calibration_scores_, self.decision_function(X, clip=False), method)

    def predict_confidence(self, X: Any) -> np.ndarray:
        """How sure each ``predict`` is, in [0, 1] (PyOD's ExCeeD, Perini et al. 2020): the probability,
        given the training set's size and ``contamination``, that the prediction would stay the same."""
        self._check_fitted()
        self._one_calibration("predict_confidence")
        return predict_confidence(self.calibration_scores_, self.decision_function(X, clip=False),
                                  self.contamination if self.contamination is not None else 0.1, threshold=self.threshold_)

    def explain(self, X: Any, method: str = "auto") -> np.ndarray:
        """(N, D) how much each feature of each row of vectors X contributes to its score: 'reconstruction'
        (each feature's squared reconstruction error, standardised units), 'gradient' (gradient x input of the
        score, from the training mean, by central differences: any score) or 'auto' (reconstruction for the
        mse / bce scores, gradient otherwise). Larger = more of the score. Images: ``vaelab.detect.maps``."""
        from .features import feature_contributions

        self._one_calibration("explain")
        return feature_contributions(self, X, method)

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to the new folder ``path``: its settings and learned numbers as JSON,
        its calibration scores and each score's fitted state as safetensors, each member model's weights.
        ``AutoencoderDetector.load(path)`` gives it back without refitting; nothing is pickled."""
        from .persist import save_detector

        return save_detector(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "AutoencoderDetector":
        """The detector ``save`` wrote to ``path``; a damaged or edited folder is refused, saying what."""
        from .persist import load_detector

        return load_detector(path)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).labels_

    @property
    def raw_threshold_(self) -> float:
        """``threshold_`` in the units of ``raw_scores``."""
        self._check_fitted()
        if not self.normalize:
            return self.threshold_
        span = self.raw_max_ - self.raw_min_
        return self.raw_min_ + self.threshold_ * (span if span > 0 else 1.0)


# what callers imported from here before the inputs' checks got their own module
__all__ = ["DEFAULT_NORM_RANGE", "DEFAULT_SCORE", "NORM_RANGES", "AutoencoderDetector", "as_images", "calibration_split",
           "group_labels", "resolve_norm_range"]
