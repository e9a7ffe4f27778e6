"""PSNR and SSIM of reconstructions (torchmetrics), and the Frechet distance of generated or
reconstructed images to real ones in the feature space of a pluggable network."""
from __future__ import annotations

from typing import Literal

import torch

from ..data.imageset import to_unit_float
from ..data import ImageSet
from ..errors import ConfigError
from ..models import Autoencoder
from ..progress import Progress
from .features import FeatureNet, feature_net_for
from .registry import register_metric


def _batches(data: ImageSet, batch_size: int, device: torch.device, n: int | None = None):
    n = len(data) if n is None else min(n, len(data))
    for i in range(0, n, batch_size):
        yield to_unit_float(data.images[i : min(i + batch_size, n)].to(device))


def ssim_per_image(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """SSIM per image (Gaussian window, sigma 1.5), averaged over the 'valid' region where the
    window fits inside the image, as in Wang et al.'s reference code and scikit-image.
    torchmetrics computes the map; its reflect-padded border is left out of the mean."""
    from torchmetrics.functional.image import structural_similarity_index_measure  # imported on use: it takes a second

    _, full = structural_similarity_index_measure(a, b, data_range=1.0, kernel_size=window, sigma=sigma,
                                                  reduction="none", return_full_image=True)
    p = (window - 1) // 2
    if full.shape[-1] > 2 * p and full.shape[-2] > 2 * p:
        full = full[..., p:-p, p:-p]
    return full.flatten(1).mean(1)


@register_metric("recon", "reconstruction error: MSE, PSNR and SSIM of decode(E[z|x]) against x", default=True)
@torch.no_grad()
def reconstruction(model: Autoencoder, data: ImageSet, batch_size: int = 1000, train: ImageSet | None = None,
                   **_) -> dict[str, float]:
    """Per-pixel MSE, PSNR (dB) and SSIM (see ssim_per_image) of decode(E[z|x]) against x in
    [0, 1]; PSNR and SSIM are computed per image and averaged over the set. Vectors get the MSE per
    entry (of the standardised values) only: PSNR and SSIM are defined for images. With ``train``,
    also ``mse_mean_image``: the MSE of the training set's mean image put in place of every
    reconstruction, the bar a model that learned anything clears."""
    model.eval()
    dev = next(model.parameters()).device
    se = psnr = ssim = 0.0
    for x in _batches(data, batch_size, dev):
        r = model.reconstruct(x)
        se += float((r - x).pow(2).flatten(1).mean(1).double().sum())
        if data.is_vector:
            continue
        from torchmetrics.functional.image import peak_signal_noise_ratio

        psnr += float(peak_signal_noise_ratio(r, x, data_range=1.0, reduction="none", dim=(1, 2, 3)).double().sum())
        ssim += float(ssim_per_image(r, x).double().sum())
    n = len(data)
    out = {"mse": se / n} if data.is_vector else {"mse": se / n, "psnr": psnr / n, "ssim": ssim / n}
    if train is not None and len(train):
        mean = sum(x.double().sum(0) for x in _batches(train, batch_size, torch.device("cpu"))) / len(train)
        out["mse_mean_image"] = float(sum(float((x.double() - mean).pow(2).flatten(1).mean(1).sum())
                                          for x in _batches(data, batch_size, torch.device("cpu"))) / n)
    return out


def frechet_distance(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two feature sets (rows = samples)."""
    f1, f2 = f1.double(), f2.double()
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = torch.cov(f1.T), torch.cov(f2.T)
    from torchmetrics.image.fid import _compute_fid

    return float(_compute_fid(mu1, s1, mu2, s2))


@torch.no_grad()
def _features(net: FeatureNet, images: torch.Tensor, batch_size: int = 1000, progress: Progress | None = None) -> torch.Tensor:
    parts = []
    for i in range(0, len(images), batch_size):
        parts.append(net.features(images[i : i + batch_size]))
        if progress is not None:
            progress.update(len(parts[-1]))
    return torch.cat(parts)


@register_metric("fid", "FID of each sampler's samples and rFID of reconstructions against the test images",
                 images_only=True, fid_features="the feature network: lenet (trained on the training split) or inception",
                 fid_images="images per side", fid_samplers="the samplers whose samples are scored (comma-separated; "
                 "keys fid_FEATURES for prior, fid_FEATURES_NAME for the others)")
@torch.no_grad()
def fid(model: Autoencoder, data: ImageSet, batch_size: int = 1000, seed: int = 0, train: ImageSet | None = None,
        fid_features: Literal["lenet", "inception"] = "lenet", fid_images: int = 10_000,
        fid_samplers: tuple[str, ...] = ("prior", "gmm"), **_) -> dict[str, float]:
    """FID of samples (each sampler) and rFID of reconstructions against the real test images.

    The feature network is named in the key: ``fid_lenet`` uses a small classifier that vaelab
    trains on the dataset's own training split (never reported as Inception FID);
    ``fid_inception`` uses InceptionV3 (see vaelab.evaluate.features)."""
    from ..generate import SAMPLERS, fit_sampler

    if isinstance(fid_samplers, str):
        fid_samplers = tuple(t.strip() for t in fid_samplers.split(",") if t.strip())
    bad = [s for s in fid_samplers if s not in SAMPLERS]
    if bad or not fid_samplers:
        raise ConfigError(f"fid_samplers: unknown sampler(s) {bad or list(fid_samplers)}; choose from {', '.join(SAMPLERS)}")
    model.eval()
    dev = next(model.parameters()).device
    net = feature_net_for(fid_features, data, train, seed).to(dev)
    n = min(fid_images, len(data))
    # the prior needs a model that samples, the GMM the training codes
    samplers = [s for s in fid_samplers if (model.can_sample or train is not None)
                and not (s == "prior" and not model.can_sample) and not (s == "gmm" and train is None)]
    with Progress(f"fid_{fid_features} features", (2 + len(samplers)) * n, "images") as p:
        real = to_unit_float(data.images[:n].to(dev))
        real_f = _features(net, real, batch_size, p)
        out: dict[str, float] = {}
        rec = torch.cat([model.reconstruct(real[i : i + batch_size]) for i in range(0, n, batch_size)])
        out[f"rfid_{fid_features}"] = frechet_distance(_features(net, rec, batch_size, p), real_f)
        for name in samplers:
            sampler = fit_sampler(name, model, train, seed=seed)  # kept in the run directory under vaelab evaluate
            fake = sampler.sample(n)
            key = f"fid_{fid_features}" + ("" if name == "prior" else f"_{name}")
            out[key] = frechet_distance(_features(net, fake, batch_size, p), real_f)
    return out
