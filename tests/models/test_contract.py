"""The model contract from outside the package: a VAE with a learned mixture-of-Gaussians prior,
defined in this file only, trained, evaluated, sampled and used by the detector through the API
and the CLI, with no file of vaelab edited for it. Its NLL and nelbo scores are checked against
the same quantities computed here with the mixture's density written out by hand."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

import vaelab
from vaelab.models import VAE, VAEConfig

HERE = Path(__file__).resolve()


@dataclass
class MoGVAEConfig(VAEConfig):
    name: str = "mog-vae"
    n_components: int = 4  # Gaussian components of the learned prior


@vaelab.register_model("mog-vae")
class MoGVAE(VAE):
    """VAE whose prior p(z) is a learned mixture of diagonal Gaussians."""

    config_class = MoGVAEConfig

    def __init__(self, config: MoGVAEConfig, **networks):
        super().__init__(config, **networks)
        g = torch.Generator().manual_seed(0)
        self.prior_logits = nn.Parameter(torch.zeros(config.n_components))
        self.prior_means = nn.Parameter(2.0 * torch.randn(config.n_components, config.latent_dim, generator=g))
        self.prior_log_std = nn.Parameter(torch.full((config.n_components, config.latent_dim), -0.5))

    def prior(self) -> MixtureSameFamily:
        comp = Independent(Normal(self.prior_means, self.prior_log_std.exp()), 1)
        return MixtureSameFamily(Categorical(logits=self.prior_logits), comp)


def mog_log_density(model: MoGVAE, z: torch.Tensor) -> torch.Tensor:
    """log p(z) of the mixture, from its parameters (not through torch.distributions)."""
    log_w = torch.log_softmax(model.prior_logits, 0)  # [K]
    mu, log_s = model.prior_means, model.prior_log_std  # [K, d]
    d = (z.unsqueeze(-2) - mu) / log_s.exp()  # [..., K, d]
    comp = (-0.5 * d.pow(2) - log_s - 0.5 * math.log(2 * math.pi)).sum(-1)
    return torch.logsumexp(log_w + comp, -1)


def std_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    return (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)


def by_hand_log_px(model: MoGVAE, x: torch.Tensor, k: int, log_prior, chunk: int | None = None) -> torch.Tensor:
    """Importance-sampled log p(x) written out here: log mean_k p(x|z_k) p(z_k) / q(z_k|x), the
    samples drawn ``chunk`` at a time (as vaelab draws them, so that a seed gives the same draws)."""
    mu, logvar = model.posterior_params(x)
    std = (0.5 * logvar).exp()
    parts = []
    for c in [min(chunk or k, k - i) for i in range(0, k, chunk or k)]:
        z = mu + std * torch.empty(c, *mu.shape).normal_()  # [c, B, d], the same draws as Normal.rsample
        log_q = (-0.5 * ((z - mu) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        logits = model.decoder(z.reshape(-1, mu.shape[1])).view(c, *x.shape)
        log_px_z = -nn.functional.binary_cross_entropy_with_logits(logits, x.expand(c, *x.shape), reduction="none").flatten(2).sum(-1)
        parts.append(log_px_z + log_prior(z) - log_q)
    return torch.logsumexp(torch.cat(parts), 0) - math.log(k)


QUICK = ["data.name=digits", "model.arch=mlp", "model.mlp_hidden=[32]", "model.latent_dim=3", "train.epochs=2",
         "train.batch_size=64", "train.progress_bar=false"]


@pytest.fixture(scope="module")
def mog_run(tmp_path_factory):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.train import RunConfig

    cfg = RunConfig.build("mog-vae", parse_set(QUICK))
    run_dir, metrics = train_run(cfg, tmp_path_factory.mktemp("mog") / "run")
    return run_dir, metrics


def test_a_model_of_ones_own_trains_and_loads_with_its_learned_prior(mog_run):
    run_dir, metrics = mog_run
    model = vaelab.load(run_dir)
    assert type(model) is MoGVAE and isinstance(model.prior(), MixtureSameFamily)
    # the prior was learned: its parameters moved from their initial values during training
    fresh = MoGVAE(MoGVAEConfig(image_shape=list(model.image_shape), arch="mlp", mlp_hidden=[32], latent_dim=3))
    assert not torch.equal(model.prior_means, fresh.prior_means)
    assert math.isfinite(metrics["nelbo"]) and "kl" in metrics
    # the KL of a mixture prior has no closed form: the ELBO's term is the Monte Carlo one at the same z
    x = torch.rand(5, *model.image_shape).round()
    q = model.encode(x)
    z = q.rsample()
    torch.testing.assert_close(model.kl(q, z), q.log_prob(z) - mog_log_density(model, z))


def test_nll_uses_the_models_prior(mog_run):
    from vaelab.data import load_split
    from vaelab.evaluate.likelihood import log_likelihood
    from vaelab.train import RunConfig

    run_dir, _ = mog_run
    model = vaelab.load(run_dir)
    cfg = RunConfig.load(run_dir / "config.yaml")
    x = load_split(cfg.data, "test").float()[:20]
    k = 20  # one decoder chunk (log_likelihood decodes at most 512 images at once)
    torch.manual_seed(3)
    ours = log_likelihood(model, x, k)
    with torch.no_grad():
        torch.manual_seed(3)
        ref = by_hand_log_px(model, x, k, lambda z: mog_log_density(model, z))
        torch.manual_seed(3)
        wrong = by_hand_log_px(model, x, k, std_normal_log_density)
    torch.testing.assert_close(ours.float(), ref, rtol=1e-4, atol=1e-3)
    assert (ours.float() - wrong).abs().mean() > 0.1  # an N(0, I) prior would have given other values

    # `evaluate`'s NLL metric (seed 0, 500 samples, drawn 25 at a time for 20 images) replayed by hand
    from vaelab.api import evaluate_run

    m = evaluate_run(run_dir, ["nll"], update_report=False, nll_k=500, nll_images=20, seed=0)
    with torch.no_grad():
        torch.manual_seed(0)
        ref_nll = -by_hand_log_px(model, x, 500, lambda z: mog_log_density(model, z), chunk=512 // 20).double().mean()
    assert abs(m["nll"] - float(ref_nll)) < 1e-3 * abs(float(ref_nll)), (m["nll"], float(ref_nll))


def test_samples_come_from_the_learned_prior(mog_run, tmp_path):
    from vaelab.api import sample_run

    run_dir, _ = mog_run
    model = vaelab.load(run_dir)
    z = model.sample_prior(20_000, torch.Generator().manual_seed(0))
    p = model.prior()
    torch.testing.assert_close(z.mean(0), p.mean.detach(), atol=0.1, rtol=0)
    torch.testing.assert_close(z.std(0), p.stddev.detach(), atol=0.1, rtol=0.05)
    a = model.sample_prior(10, torch.Generator().manual_seed(1))
    assert torch.equal(a, model.sample_prior(10, torch.Generator().manual_seed(1)))  # seeded
    out = sample_run(run_dir, 16, tmp_path / "s.png")
    assert out.is_file() and out.stat().st_size > 0


def test_detector_nelbo_score_uses_the_models_prior(mog_run):
    from vaelab.data import load_split
    from vaelab.detect import AutoencoderDetector
    from vaelab.detect.scores import make_score
    from vaelab.train import RunConfig

    run_dir, _ = mog_run
    model = vaelab.load(run_dir)
    cfg = RunConfig.load(run_dir / "config.yaml")
    train = load_split(cfg.data, "train")
    det = AutoencoderDetector(model, score="nelbo").fit(train.images[:300])
    s = det.decision_function(train.images[300:340])
    assert s.shape == (40,) and torch.isfinite(torch.as_tensor(s)).all()
    # one batch of the score, replayed by hand at the score's shared noise eps (common random numbers):
    # z = mu + sigma * eps, -log p(x|z) + log q(z) - log p_mog(z), the KL Monte Carlo at that z
    x = train.images[:8].float() / 255
    score = make_score("nelbo")
    with torch.no_grad():
        got = score.batch(model, x)
        q = model.encode(x)
        z = q.mean + q.stddev * score.noise(model.latent_dim)[0]
        ref = -model.decode(z).log_prob(x) + q.log_prob(z) - mog_log_density(model, z)
    torch.testing.assert_close(got, ref)


# runs each command line given (a JSON list of [directory, argv]) through the CLI's main(), one after the
# other, in a new process started as `python -c`, whose module search starts in the current directory
FRESH = """
import contextlib, io, json, os, sys
from vaelab.cli import main
results = []
for cwd, argv in json.loads(sys.argv[1]):
    os.chdir(cwd)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    results.append([rc, out.getvalue(), err.getvalue()])
print("RESULT" + json.dumps(results))
"""


def _cli_fresh(*commands: tuple[Path, list[str]]) -> list[subprocess.CompletedProcess]:
    """Each (directory, argv) run in that directory by one new process; a command that imports nothing
    leaves the process as fresh as it found it for the next."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", FRESH, json.dumps([[str(d), a] for d, a in commands])], capture_output=True,
                       text=True, env=env, cwd=commands[0][0], timeout=300)
    assert p.returncode == 0 and "RESULT" in p.stdout, p.stderr[-3000:]
    return [subprocess.CompletedProcess(["vaelab", *a], rc, out, err)
            for (_, a), (rc, out, err) in zip(commands, json.loads(p.stdout.split("RESULT", 1)[1]))]


def test_the_same_model_through_the_cli(tmp_path, capsys):
    from tests.conftest import vaelab_here  # not at the top: the fresh processes below import this file as a module

    run = tmp_path / "run"
    p = vaelab_here("train", "mog-vae", "--import", str(HERE), "--data", "digits", "--epochs", "1", "--latent-dim", "3",
                    "--set", "model.arch=mlp", "--set", "model.mlp_hidden=[32]", "--set", "train.progress_bar=false",
                    "--out", str(run), cwd=tmp_path)  # in this process: --import loads this file afresh under a name of its own
    assert p.returncode == 0, p.stderr
    assert "imports" in (run / "config.yaml").read_text()
    # later commands import the module the run's config records only when told to (--trust-imports):
    # evaluate and sample are the README's own block (tests/docs/test_docs.py runs it); here the resume
    # in a fresh process, where mog-vae is not registered as it is in this one, refused without it and done with it
    # (one process for both: the refusal imports nothing, so the second command finds the process as fresh)
    refused, trusted = _cli_fresh((tmp_path, ["train", "--resume", str(run), "--epochs", "2"]),
                                  (tmp_path, ["train", "--resume", str(run), "--epochs", "2", "--trust-imports"]))
    assert refused.returncode == 2 and "--trust-imports" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout.splitlines()[0])["n_train"] > 0
    from vaelab.cli import main as cli_main  # in this process: the same main() the command runs

    assert cli_main(["models", "--import", str(HERE)]) == 0
    assert "learned mixture" in capsys.readouterr().out
    assert cli_main(["train", "nope-vae", "--import", "no_such_module_xyz", "--data", "digits"]) == 2
    err = capsys.readouterr().err
    assert "no_such_module_xyz" in err and "Traceback" not in err


def test_capabilities_are_declared_and_refusals_name_them():
    from vaelab.errors import ModelError
    from vaelab.models import MODELS, build, make_config, models_with

    assert MODELS["mog-vae"].cls.can_sample and MODELS["mog-vae"].cls.has_density
    assert set(models_with("takes_labels")) == {"ssvae", "cvae"} and set(models_with("denoises")) == {"denoising-ae"}
    assert set(models_with("conditional")) == {"cvae"}
    assert "grad2vae" in models_with("explains") and "ae" not in models_with("has_density")
    ae = build(make_config("ae", {"arch": "mlp", "mlp_hidden": [8], "latent_dim": 2}), (1, 8, 8))
    with pytest.raises(ModelError, match="has_density = False"):
        ae.log_weights(torch.rand(2, 1, 8, 8), 3)
    with pytest.raises(ModelError, match="can_sample = False.*Models that do: .*vae"):
        ae.sample(4)


class MyEncoder(nn.Module):
    """(B, 1, 8, 8) -> (B, 2 * 3): the posterior's mean and log-variance."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.Tanh(), nn.Linear(24, 6))

    def forward(self, x):
        return self.net(x)


class MyDecoder(nn.Module):
    """(B, 3) -> (B, 1, 8, 8) Bernoulli logits."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 24), nn.Tanh(), nn.Linear(24, 64), nn.Unflatten(1, (1, 8, 8)))

    def forward(self, z):
        return self.net(z)


def test_your_own_networks_train_resume_and_load(tmp_path):
    from vaelab.api import train_run
    from vaelab.config import parse_set
    from vaelab.errors import ModelError
    from vaelab.train import RunConfig

    enc, dec = MyEncoder(), MyDecoder()
    cfg = RunConfig.build("vae", parse_set(["data.name=digits", "model.latent_dim=3", "train.epochs=1", "train.batch_size=64",
                                            "train.progress_bar=false"]))
    run, m = train_run(cfg, tmp_path / "run", encoder=enc, decoder=dec)
    model = vaelab.load(run, encoder=MyEncoder(), decoder=MyDecoder())
    assert model.num_parameters() == sum(p.numel() for p in [*MyEncoder().parameters(), *MyDecoder().parameters()])
    x = torch.rand(4, 1, 8, 8)
    q = model.encode(x)
    h = enc(x)
    torch.testing.assert_close(q.mean, model.encoder(x)[:, :3])  # the encoder's first half is the mean
    assert torch.equal(model.encoder.net[1].weight, enc.net[1].weight)  # the trained weights were saved and loaded
    assert h.shape == (4, 6) and math.isfinite(m["nelbo"])
    with pytest.raises(ModelError, match="networks of your own"):
        vaelab.load(run)
    cfg2 = RunConfig.load(run / "config.yaml")
    cfg2.train.epochs = 2
    _, m2 = train_run(cfg2, run, resume=True, encoder=MyEncoder(), decoder=MyDecoder())
    assert math.isfinite(m2["nelbo"])
    # shapes are checked up front, with the expected ones in the message
    bad = nn.Sequential(nn.Flatten(), nn.Linear(64, 5))
    with pytest.raises(ModelError, match=r"to \(B, 6\)"):
        train_run(cfg, tmp_path / "bad", encoder=bad, decoder=MyDecoder())
    with pytest.raises(ModelError, match="custom_networks = False"):
        RunConfig.build("bvae", parse_set(["data.name=digits"]))  # config is fine; building with networks is not
        from vaelab.models import build, make_config

        build(make_config("bvae", {"arch": "mlp"}), (1, 8, 8), encoder=MyEncoder(), decoder=MyDecoder())


def test_an_installed_package_registers_models_through_its_entry_point(tmp_path, monkeypatch):
    """A distribution on sys.path that names a module in the `vaelab.models` entry-point group: its
    model is found by name, with no --import and no edit of vaelab."""
    from vaelab.models import MODELS, get_spec, registry

    (tmp_path / "ep_models.py").write_text(
        "import vaelab\nfrom vaelab.models import VAE\n\n\n@vaelab.register_model('ep-vae')\nclass EpVAE(VAE):\n"
        "    \"\"\"A VAE that an installed package provides.\"\"\"\n")
    dist = tmp_path / "ep_models-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-models\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[vaelab.models]\nep = ep_models\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.delitem(MODELS, "ep-vae", raising=False)
    spec = get_spec("ep-vae")
    assert spec.cls.__name__ == "EpVAE" and spec.module == "ep_models"
    MODELS.pop("ep-vae")


def test_a_run_directory_cannot_bring_the_code_it_names(tmp_path):
    """Loading a run imports the module its config names only from outside the run directory: a
    .py file or a module shipped inside it is refused, and its code never runs."""
    import yaml

    from vaelab.errors import ConfigError
    from vaelab.train import RunConfig

    runs = []
    for payload, imports in (("evil.py", ["RUN/evil.py"]), ("payload.py", ["payload"])):
        run = tmp_path / payload.replace(".py", "-run")
        run.mkdir()
        (run / payload).write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w').write('x')\n")
        imports = [i.replace("RUN", str(run)) for i in imports]
        (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "not-a-model"}, "imports": imports}))
        runs.append(run)
    with pytest.raises(ConfigError, match="inside the run directory"):
        RunConfig.load(runs[0] / "config.yaml")
    # a new process, each command run from inside its run directory, where `python -m` and `python -c` search
    # for modules (one process for both: a refused command imports nothing)
    for p in _cli_fresh(*((run, ["evaluate", str(run)]) for run in runs)):
        assert p.returncode == 2 and "inside the run directory" in p.stderr, p.stderr
    assert not (tmp_path / "PWNED").exists()
