"""Anomaly scores of an autoencoder: higher = more anomalous. A registry, like vaelab.models.

One module per family, each registering its scores with ``@register_score``: ``reconstruction`` (mse, bce,
patch_mse, ssim), ``likelihood`` (nelbo, nll), ``density`` (mahalanobis, the latent and feature
mixtures and nearest neighbours), ``classifier`` (class_entropy, class_energy) and ``combination``
(combo); ``base`` holds the ``Score`` class and ``score_images``, ``registry`` the registry. A new
score is one new file, here or a user's module given with ``--import``; ``vaelab scores -v`` lists
every registered score with what it needs, whether it exports, and its options with their defaults."""
from __future__ import annotations

from typing import Any, Sequence

from .base import BatchHead, ExportContext, Score, has_classifier, has_head_net, iter_batches, latent_means, model_device, score_images
from .registry import (SCORES, ScoreOption, ScoreSpec, all_options, density_free_scores, discover, export_head_for,
                       export_refusal, exportable_scores, get_score, load_entry_points, register_score, single_scores,
                       vector_scores)

discover()

from .classifier import (ENTROPY_FLOOR, ClassEnergyScore, ClassEntropyScore, class_energy, class_log_probs,  # noqa: E402
                         free_energy, log_entropy)
from .combination import DEFAULT_CLASSIFIER_COMBO, DEFAULT_COMBO, DEFAULT_HEAD_NET_COMBO, ComboScore, vector_combo  # noqa: E402
from .density import (FeatureGMMScore, FeatureKNNScore, GMMScore, KNNScore, LatentGMMScore, LatentKNNScore,  # noqa: E402
                      MahalanobisScore, Whitener, encoder_outputs)
from .likelihood import NELBOScore, NLLScore, gaussian_parts, nelbo_at_noise  # noqa: E402
from .reconstruction import DEFAULT_PATCH_SIZE, BCEScore, MSEScore, PatchMSEScore, SSIMScore  # noqa: E402

VECTOR_COMBO = vector_combo()  # on vectors (tabular data) the default combo keeps its members that are not image-only
SCORE_NAMES = tuple(SCORES)  # the package's own scores (a user's, registered later, are in SCORES)


def make_score(name: str, combo: Sequence[str] | str = DEFAULT_COMBO, combo_method: str = "zscore", **options: Any) -> Score:
    """The unfitted score called ``name`` (any registered score), with ``options`` (each score takes those
    it declares: ``vaelab scores -v``; ``combo`` and ``combo_method`` are the combo's, the rest go to its members)."""
    return get_score(name).make(combo=combo, combo_method=combo_method, **options)


__all__ = ["DEFAULT_CLASSIFIER_COMBO", "DEFAULT_COMBO", "DEFAULT_HEAD_NET_COMBO", "DEFAULT_PATCH_SIZE", "ENTROPY_FLOOR", "SCORES", "SCORE_NAMES",
           "VECTOR_COMBO", "BCEScore", "BatchHead", "ClassEnergyScore", "ClassEntropyScore", "ComboScore", "ExportContext",
           "FeatureGMMScore", "FeatureKNNScore", "GMMScore", "KNNScore", "LatentGMMScore", "LatentKNNScore",
           "MSEScore", "MahalanobisScore", "NELBOScore", "NLLScore", "PatchMSEScore", "SSIMScore", "Score",
           "ScoreOption", "ScoreSpec", "Whitener", "all_options", "class_energy", "class_log_probs",
           "density_free_scores", "discover", "encoder_outputs", "export_head_for", "export_refusal",
           "exportable_scores", "free_energy", "gaussian_parts", "get_score", "has_classifier", "has_head_net", "iter_batches",
           "latent_means", "load_entry_points", "log_entropy", "make_score", "model_device", "nelbo_at_noise",
           "register_score", "score_images", "single_scores", "vector_scores"]
