"""A classifier's classes come from the training labels, never from the test split's."""
import torch

from vaelab.config import parse_set
from vaelab.data import DataConfig, ImageSet, load_data
from vaelab.train import RunConfig, fit


def test_the_class_count_does_not_depend_on_the_test_labels(tmp_path):
    train, val, test = load_data(DataConfig(name="digits", classes=[0, 1, 2], limit=300))
    cfg = RunConfig.build("ssvae", parse_set(["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[16]", "model.latent_dim=2",
                                              "train.epochs=1", "train.batch_size=128", "train.progress_bar=false"]))
    known = test.subset(torch.nonzero(test.labels <= 2).squeeze(1))
    with_anomalies = ImageSet(test.images, test.labels, test.name, test.class_names)  # digits 0-9: seven classes never trained on
    assert set(with_anomalies.labels.tolist()) == set(range(10)) and set(train.labels.tolist()) == {0, 1, 2}
    a, _ = fit(cfg, tmp_path / "a", data=(train, val, known))
    b, _ = fit(cfg, tmp_path / "b", data=(train, val, with_anomalies))
    assert a.config.n_classes == b.config.n_classes == 3
    assert a.predict(torch.rand(4, 1, 8, 8)).max() <= 2 and b.predict(torch.rand(4, 1, 8, 8)).max() <= 2
