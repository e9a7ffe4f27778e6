"""Readable names, units and one-line meanings of the metrics a run or a comparison shows. A key
that is not listed is shown as it is (a model's own loss terms, a user's metrics)."""
from __future__ import annotations

import re

# key -> (name, unit, meaning)
GLOSSARY: dict[str, tuple[str, str, str]] = {
    "nelbo": ("negative ELBO", "nats", "reconstruction term plus KL: an upper bound on -log p(x), lower is better"),
    "rec": ("reconstruction", "nats", "-log p(x|z) at one posterior sample z, summed over pixels"),
    "kl": ("KL to the prior", "nats", "KL(q(z|x) || p(z)): how far the posterior is from the prior"),
    "iwae": ("IWAE bound", "nats", "negative importance-weighted bound with the model's k samples (tighter than the ELBO)"),
    "mi": ("index-code MI", "nats", "mutual information between the image index and its code (beta-TCVAE)"),
    "tc": ("total correlation", "nats", "dependence between latent units (beta-TCVAE's minibatch estimate; can dip below 0)"),
    "dwkl": ("dimension-wise KL", "nats", "sum over units of KL(q(z_j) || p(z_j))"),
    "sparsity": ("sparsity penalty", "", "the sparse AE's code penalty (KL to the target rate, or L1)"),
    "contractive": ("contractive penalty", "", "squared Frobenius norm of the encoder Jacobian"),
    "att": ("attention reconstruction", "", "squared error of the reconstruction with the attention fused in (Grad2VAE)"),
    "label_nll": ("label NLL", "nats", "cross-entropy of the classifier on the labelled images (semi-supervised VAE)"),
    "mse": ("mean squared error", "per pixel", "of decode(E[z|x]) against x, values in [0, 1] (vectors: of the standardised values)"),
    "psnr": ("PSNR", "dB", "peak signal-to-noise ratio of the reconstructions, higher is better"),
    "ssim": ("SSIM", "", "structural similarity of the reconstructions (1 = identical)"),
    "active_units": ("active units", "units", "latent units whose posterior mean varies across images (Cov > 0.01)"),
    "active_fraction": ("active fraction", "", "active units over latent units"),
    "nll": ("negative log-likelihood", "nats", "importance-sampled -log p(x), lower is better"),
    "bpd": ("bits per dimension", "bits", "the NLL divided by (dimensions x ln 2)"),
    "nll_k": ("NLL importance samples", "", "samples per image of the NLL estimate"),
    "nll_images": ("NLL images", "", "test images the NLL was estimated on"),
    "accuracy": ("accuracy", "", "the model's own classifier on the test set (semi-supervised VAE)"),
    "probe_linear_acc": ("linear probe accuracy", "", "logistic regression on the latent means"),
    "probe_mlp_acc": ("MLP probe accuracy", "", "a one-hidden-layer MLP on the latent means"),
    "mig": ("MIG", "", "mutual information gap against known factors (disentanglement)"),
    "parameters": ("parameters", "", "trainable numbers in the model"),
    "mse_mean_image": ("mean-image error", "per pixel", "MSE of the training set's mean image put in place of every reconstruction: the bar to clear"),
    "train_seconds": ("training time", "s", "wall time of training, data loading included, summed over every session of a resumed run"),
    "n_train": ("training examples", "", "after the validation split"),
    "n_val": ("validation examples", "", "held out of the training split"),
    "n_test": ("test examples", "", "the set the metrics are computed on"),
    "roc_auc": ("ROC-AUC", "", "probability that an anomaly scores above a normal example"),
    "pr_auc": ("PR-AUC", "", "area under the precision-recall curve (average precision)"),
}
PATTERNS: list[tuple[str, tuple[str, str, str]]] = [
    (r"fid_(\w+?)(_gmm)?$", ("FID", "", "Frechet distance of samples to the test images in {0} features (lower is better)")),
    (r"rfid_(\w+)$", ("reconstruction FID", "", "Frechet distance of reconstructions to the test images in {0} features")),
    (r"few_label_(\w+)_acc$", ("few-label accuracy", "", "a small head trained on few labels, on the {0}")),
    (r"few_label_(\w+)_acc_std$", ("few-label accuracy sd", "", "spread over draws of the labelled images, {0}")),
]


# the words of image data and their counterparts for vectors (rows of a table)
_VECTOR_WORDS = ((r"\bper pixel\b", "per entry"), (r"\bpixels\b", "entries"), (r"\bimages\b", "examples"),
                 (r"\bimage\b", "example"))


def for_vectors(text: str) -> str:
    """``text`` in the words of vector data: entries for pixels, examples for images."""
    for pattern, word in _VECTOR_WORDS:
        text = re.sub(pattern, word, text)
    return text


def describe(key: str, vectors: bool = False) -> tuple[str, str, str] | None:
    """(name, unit, meaning) of a metric key, or None for a key the glossary does not know; with
    ``vectors`` in the words of vector data."""
    found = GLOSSARY.get(key)
    if found is None:
        for pattern, (name, unit, meaning) in PATTERNS:
            m = re.match(pattern, key)
            if m:
                extra = " (GMM sampler)" if key.endswith("_gmm") else ""
                found = name + extra, unit, meaning.format(m.group(1))
                break
    if found is None or not vectors:
        return found
    return tuple(for_vectors(part) for part in found)
