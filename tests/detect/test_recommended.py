"""The detection guide's call for the configuration the README reports, run at one epoch on a small study."""
import numpy as np
import torch

from vaelab.data import DataConfig, load_split
from vaelab.detect import AutoencoderDetector, load_ood_study
from vaelab.detect.study import build_ood_study

from tests.conftest import require_source


def test_the_guides_partly_labelled_call_trains_two_ssvae_seeds_with_the_reported_network(tmp_path):
    require_source("mnist")  # a skip here, a failure naming it under CI=true
    mnist = [load_split(DataConfig(name="mnist"), s).limit(n, 0) for s, n in (("train", 800), ("test", 500))]
    build_ood_study(tmp_path / "study.npz", seed=0, n_labeled=50, n_normal=100, mnist=tuple(mnist))
    train = load_split(DataConfig(name="npz", path=str(tmp_path / "study.npz")), "train")
    assert (train.labels == -1).any() and (train.labels >= 0).any()
    det = AutoencoderDetector(n_models=2, epochs=1, overrides={"model": {"conv_channels": [32, 64]}}).fit(train)
    assert det.model_name_ == "ssvae" and len(det.models_) == 2
    assert all(m.config.conv_channels == [32, 64] for m in det.models_)
    assert not torch.equal(next(det.models_[0].parameters()), next(det.models_[1].parameters()))  # two seeds
    assert "class_energy" in det.score_.spec() and "class_entropy" in det.score_.spec()
    flags = det.predict(load_ood_study(tmp_path / "study.npz").get("rep1"))
    assert flags.shape == (len(load_ood_study(tmp_path / "study.npz").get("rep1")),) and set(np.unique(flags)) <= {0, 1}
