"""vaelab: autoencoders and variational autoencoders - train, evaluate, generate, explain, detect."""
__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DataError, ModelError, TrainingError, VaelabError  # noqa: E402


def load(run_dir, encoder=None, decoder=None):
    """The trained model of a run directory (config.yaml + model.safetensors), in eval mode. A run
    trained with networks of your own takes the same (untrained) ``encoder`` and ``decoder``."""
    from .train.rundir import load_run

    return load_run(run_dir, encoder, decoder)


def register_model(name, description=None, **defaults):
    """Class decorator that makes a model class (a subclass of vaelab.models.Autoencoder) the
    model ``name`` of every vaelab command; see vaelab.models.registry."""
    from .models.registry import register_model as register

    return register(name, description, **defaults)


__all__ = ["CheckpointError", "ConfigError", "DataError", "ModelError", "TrainingError", "VaelabError", "load", "register_model", "__version__"]
