"""vaelab: autoencoders and variational autoencoders - train, evaluate, generate, explain, detect."""
__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DataError, ModelError, TrainingError, VaelabError  # noqa: E402


def load(run_dir):
    """The trained model of a run directory (config.yaml + model.safetensors), in eval mode."""
    from .api import load_run

    return load_run(run_dir)


__all__ = ["CheckpointError", "ConfigError", "DataError", "ModelError", "TrainingError", "VaelabError", "load", "__version__"]
