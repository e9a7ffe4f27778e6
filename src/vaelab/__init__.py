"""vaelab: autoencoders and variational autoencoders - train, evaluate, generate, explain, detect."""
__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DataError, ModelError, TrainingError, VaelabError  # noqa: E402


def load(run_dir, encoder=None, decoder=None, trust_imports=False):
    """The trained model of a run directory (config.yaml + model.safetensors), in eval mode. A run
    trained with networks of your own takes the same (untrained) ``encoder`` and ``decoder``.

    A run of a model that is not registered names the module that defines it; that module is
    imported only with ``trust_imports=True`` (and never from inside the run directory or beside
    it): import it yourself first, or pass ``trust_imports=True`` for a run you trust."""
    from .models.registry import trust_imports as trusted
    from .train.rundir import load_run

    with trusted(trust_imports):
        return load_run(run_dir, encoder, decoder)


def trust_imports(on=True):
    """A context manager: runs loaded within it may import the modules their configs name (never
    from inside the run directory or beside it). See ``load``."""
    from .models.registry import trust_imports as trusted

    return trusted(on)


def register_model(name, description=None, **defaults):
    """Class decorator that makes a model class (a subclass of vaelab.models.Autoencoder) the
    model ``name`` of every vaelab command; see vaelab.models.registry."""
    from .models.registry import register_model as register

    return register(name, description, **defaults)


def register_sampler(name):
    """Class decorator that makes a sampler class (a subclass of vaelab.generate.PriorSampler) the
    sampler ``name`` of `vaelab sample --sampler` and FID's samplers; see docs/guide/adding-a-sampler.md."""
    from .generate.samplers import register_sampler as register

    return register(name)


__all__ = ["CheckpointError", "ConfigError", "DataError", "ModelError", "TrainingError", "VaelabError", "load", "register_model",
           "register_sampler", "trust_imports", "__version__"]
