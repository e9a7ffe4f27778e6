"""Every model of the registry trains, saves, reloads and evaluates through the same API."""
import pytest
import torch

import vaelab
from vaelab.api import evaluate_run, reconstruct_run, train_run
from vaelab.config import parse_set
from vaelab.models import MODELS
from vaelab.train import RunConfig

EXPECTED_TERMS = {
    "ae": {"rec"}, "linear-ae": {"rec"}, "sparse-ae": {"rec", "sparsity"}, "denoising-ae": {"rec"},
    "contractive-ae": {"rec", "contractive"}, "vae": {"rec", "kl", "nelbo", "active_units"},
    "beta-vae": {"rec", "kl", "nelbo"}, "beta-tcvae": {"mi", "tc", "dwkl", "kl", "nelbo"}, "iwae": {"iwae", "nelbo", "kl"},
    "bvae": {"rec", "kl", "nelbo", "active_units"}, "beta-bvae": {"rec", "kl", "nelbo"},
    "beta-tcbvae": {"mi", "tc", "dwkl", "kl", "nelbo"}, "biwae": {"iwae", "nelbo", "kl"},
    "ssvae": {"rec", "kl", "nelbo", "active_units", "accuracy"},
    "grad2vae": {"rec", "kl", "nelbo", "att", "active_units"},
}
# the architecture each model is trained with here: small MLPs, except where the model needs its own
ARCH = {"linear-ae": "seed=0", "grad2vae": "model.conv_channels=[4,8]",  # grad2vae and vq-vae are convolutional by construction
        "vq-vae": "model.conv_channels=[8]"}


@pytest.mark.parametrize("name", sorted(n for n, s in MODELS.items() if s.module.startswith("vaelab.")))  # the package's own
def test_model_trains_and_reports_its_terms(name, tmp_path, request):
    if name == "denoising-ae":  # its report's denoising figure is checked below
        request.getfixturevalue("figures")
    cfg = RunConfig.build(name, parse_set(["data.name=digits", ARCH.get(name, "model.arch=mlp"),
                                           "model.mlp_hidden=[32]", "model.latent_dim=3", "train.epochs=1", "data.limit=600",
                                           "train.batch_size=128", "train.progress_bar=false", "data.test_limit=100"]))
    run_dir, metrics = train_run(cfg, tmp_path / name)
    model = vaelab.load(run_dir)
    assert type(model) is MODELS[name].cls
    # every term the model's loss logs reaches the metrics (a new model needs no entry here), and the listed extras
    own = set(model.loss(torch.rand(8, *model.image_shape)).terms)
    assert own | EXPECTED_TERMS.get(name, set()) <= set(metrics), set(metrics)
    assert all(v == v for v in metrics.values())  # no NaN
    again = evaluate_run(run_dir, update_report=False)
    assert again["mse"] == pytest.approx(metrics["mse"], rel=1e-6)
    assert (run_dir / "report.html").is_file()
    if name == "denoising-ae":
        assert (run_dir / "figures" / "denoising.png").is_file()
        reconstruct_run(run_dir, tmp_path / "d.png", n=8, noisy=True)
        assert (tmp_path / "d.png").is_file()
    if name == "beta-tcvae":
        assert model.config.dataset_size == metrics["n_train"]
