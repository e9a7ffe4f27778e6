"""head_knn: the k-nearest-neighbour distance in arnet's rotation head network's features, checked against
scikit-learn's PCA whitening and nearest neighbours, exported, and refused where there is no head network."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from vaelab.detect import AutoencoderDetector
from vaelab.detect.export import export_detector
from vaelab.errors import ModelError
from vaelab.exported import load_exported
from vaelab.models import build, make_config
from tests.conftest import require_module


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    m = build(make_config("arnet", {"latent_dim": 4, "head_net": True, "head_width": 4}), (3, 16, 16)).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so the features are the network's
        m.train()
        m.head(torch.rand(64, 3, 16, 16))
        m.eval()
    g = torch.Generator().manual_seed(1)
    return m, (torch.rand(80, 3, 16, 16, generator=g) * 255).to(torch.uint8)


def _features(m, x):
    """The head network's pooled features of the four rotations, from torch.rot90 (not arnet's rotate)."""
    with torch.no_grad():
        return torch.cat([m.head.features(torch.rot90(x.float() / 255, k, (-2, -1))) for k in range(4)], 1).double().numpy()


def test_head_knn_is_pca_whitened_nearest_neighbour_distance(model_and_images):
    m, x = model_and_images
    train, test = x[:60], x[60:]
    det = AutoencoderDetector(m, "head_knn", knn_k=3, feature_dims=8, normalize=False, calibration=0).fit(train)
    f_train, f_test = _features(m, train), _features(m, test)
    assert f_train.shape == (60, 4 * m.head.fc.in_features)
    pca = PCA(n_components=8, whiten=True, svd_solver="full").fit(f_train)
    w_train, w_test = pca.transform(f_train), pca.transform(f_test)
    nn = NearestNeighbors(n_neighbors=3).fit(w_train)
    np.testing.assert_allclose(det.raw_scores(test), nn.kneighbors(w_test)[0].mean(1), rtol=1e-5, atol=1e-6)
    # a training image is scored leave-one-out: its nearest neighbour, itself, left out
    loo = NearestNeighbors(n_neighbors=4).fit(w_train).kneighbors(w_train)[0][:, 1:].mean(1)
    np.testing.assert_allclose(det.decision_scores_, loo, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_head_knn_exports(model_and_images, fmt, tmp_path):
    if fmt == "onnx":
        require_module("onnx")
        require_module("onnxruntime")
    m, x = model_and_images
    det = AutoencoderDetector(m, "head_knn").fit(x[:60])
    scorer = load_exported(export_detector(det, tmp_path / "bundle", fmt))
    got = scorer((x[60:].float() / 255).numpy())["raw_score"]
    np.testing.assert_allclose(got, det.raw_scores(x[60:]), rtol=1e-5, atol=1e-5)  # float32 features in the bundle


def test_head_knn_needs_the_head_network(model_and_images):
    _, x = model_and_images
    code_head = build(make_config("arnet", {"latent_dim": 4, "transform_head": True}), (3, 16, 16)).eval()
    with pytest.raises(ModelError, match="model.head_net=true"):
        AutoencoderDetector(code_head, "head_knn").fit(x)
    vae = build(make_config("vae", {"latent_dim": 4}), (3, 16, 16)).eval()
    with pytest.raises(ModelError, match="head_net"):
        AutoencoderDetector(vae, "head_knn").fit(x)
