"""Feature networks for Frechet distances.

- ``lenet``: a small CNN classifier that vaelab trains on the dataset's own labelled training
  split (2 epochs, seeded) and caches under the user cache; its 128-d penultimate layer gives the
  features. Numbers are reported as ``fid_lenet`` and are comparable only with other fid_lenet
  numbers on the same dataset.
- ``inception``: InceptionV3 pool features as in standard FID, through torchmetrics'
  ``NoTrainInceptionV3`` (needs the optional ``torch-fidelity`` package; its weights are
  downloaded when online or read from the torch hub cache, ``$TORCH_HOME/hub/checkpoints``).
"""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from ..data.imageset import to_unit_float
from ..data import ImageSet
from ..data.download import cache_dir
from ..errors import ConfigError


class FeatureNet(nn.Module):
    name = "feature"

    def features(self, x: torch.Tensor) -> torch.Tensor:  # x: float images in [0, 1]
        raise NotImplementedError


class LeNetFeatures(FeatureNet):
    name = "lenet"

    def __init__(self, channels: int, n_classes: int, dim: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(7), nn.Flatten(),
            nn.Linear(64 * 49, dim), nn.ReLU(),
        )
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _fingerprint(train: ImageSet) -> str:
    h = hashlib.sha256()
    h.update(str((len(train), train.shape)).encode())
    h.update(train.images[:2000].contiguous().numpy().tobytes())
    h.update(train.labels[:2000].numpy().tobytes())
    return h.hexdigest()[:16]


def train_lenet(train: ImageSet, seed: int = 0, epochs: int = 2, batch_size: int = 256) -> LeNetFeatures:
    from safetensors.torch import load_file, save_file

    from ..fileio import atomic_path

    if train is not None and train.labels is not None:
        train = train.labelled()  # images of unknown label (-1) do not train it
    if train is None or train.labels is None or not len(train):
        raise ConfigError("fid_lenet trains its feature network on the labelled training split, and this data set "
                          "has no labels; use fid_features=inception (see vaelab.evaluate.features)")
    n_classes = int(train.labels.max()) + 1
    net = LeNetFeatures(train.shape[0], n_classes)
    path = cache_dir() / "feature_nets" / f"lenet-{train.name}-{_fingerprint(train)}-s{seed}.safetensors"
    if path.is_file():
        try:
            net.load_state_dict(load_file(str(path)))
            return net.eval()
        except Exception:  # a stale or damaged cache entry is retrained, never trusted
            pass
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        net.train()
        for _ in range(epochs):
            perm = torch.randperm(len(train), generator=g)
            for i in range(0, len(train), batch_size):
                idx = perm[i : i + batch_size]
                loss = F.cross_entropy(net(to_unit_float(train.images[idx])), train.labels[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    net.eval()
    try:
        with atomic_path(path) as tmp:
            save_file(net.state_dict(), str(tmp))
    except OSError:
        pass
    return net


class InceptionFeatures(FeatureNet):
    name = "inception"

    def __init__(self):
        super().__init__()
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
        except (ImportError, ModuleNotFoundError, RuntimeError, OSError) as e:
            raise ConfigError(
                f"Inception FID is unavailable here ({type(e).__name__}: {e}). Install torch-fidelity "
                "(pip install torch-fidelity) and be online once so it can fetch its InceptionV3 weights, or put "
                "pt_inception-2015-12-05-6726825d.pth in $TORCH_HOME/hub/checkpoints; or use fid_features=lenet"
            ) from None

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return self.net(x).reshape(x.shape[0], -1)


def feature_net_for(kind: str, data: ImageSet, train: ImageSet | None, seed: int = 0) -> FeatureNet:
    if kind == "lenet":
        return train_lenet(train, seed)
    if kind == "inception":
        return InceptionFeatures()
    raise ConfigError(f"unknown feature network {kind!r}; choose 'lenet' or 'inception'")
