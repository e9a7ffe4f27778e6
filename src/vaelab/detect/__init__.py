"""Anomaly and out-of-distribution detection with any autoencoder of the family.

``AutoencoderDetector`` follows scikit-learn's estimator API with PyOD's conventions
(``fit`` / ``decision_function`` / ``predict``, ``decision_scores_``, ``threshold_``,
``contamination``); ``evaluate_detection`` and ``detection_figures`` measure and draw it;
``one_class_protocol`` runs the one-class benchmark; ``build_ood_study`` / ``load_ood_study``
make and read the OOD study's data layout."""
from .detector import DEFAULT_SCORE, AutoencoderDetector, as_images
from .evaluation import evaluate_detection
from .figures import detection_figures
from .protocol import format_table, one_class_protocol
from .scores import (DEFAULT_CLASSIFIER_COMBO, DEFAULT_COMBO, DEFAULT_HEAD_NET_COMBO, SCORE_NAMES, SCORES, Score, get_score, make_score, register_score,
                     score_images)
from .study import OODStudy, build_ood_study, load_detection_set, load_ood_study

__all__ = ["DEFAULT_CLASSIFIER_COMBO", "DEFAULT_COMBO", "DEFAULT_HEAD_NET_COMBO", "DEFAULT_SCORE", "SCORES", "SCORE_NAMES", "AutoencoderDetector", "OODStudy", "Score", "as_images",
           "build_ood_study", "detection_figures", "evaluate_detection", "format_table", "get_score", "load_detection_set",
           "load_ood_study", "make_score", "register_score", "one_class_protocol", "score_images"]
