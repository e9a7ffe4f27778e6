"""vaelab: autoencoders and variational autoencoders - train, evaluate, generate, explain, detect."""
from ._version import __version__

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


def register_score(name, description=None, **defaults):
    """Class decorator that makes a score class (a subclass of vaelab.detect.scores.Score) the anomaly
    score ``name`` of the detector and of every command; see vaelab.detect.scores.registry."""
    from .detect.scores import register_score as register

    return register(name, description, **defaults)


def register_source(name, description=None, **declared):
    """Make a data source the dataset ``name`` of every vaelab command (``--data NAME``): a decorator
    on a function ``load(split, path) -> ImageSet`` or a vaelab.data.Source subclass; see
    vaelab.data.sources.base."""
    from .data.sources import register_source as register

    return register(name, description, **declared)


def register_metric(name, description=None, **declared):
    """Function decorator that makes ``metric(model, data, **options) -> dict`` the metric ``name`` of
    ``vaelab evaluate --metrics``, with the options it declares; see vaelab.evaluate.registry."""
    from .evaluate.registry import register_metric as register

    return register(name, description, **declared)


def register_sampler(name):
    """Class decorator that makes a sampler class (a subclass of vaelab.generate.PriorSampler) the
    sampler ``name`` of `vaelab sample --sampler` and FID's samplers; see docs/guide/adding-a-sampler.md."""
    from .generate.samplers import register_sampler as register

    return register(name)


__all__ = ["CheckpointError", "ConfigError", "DataError", "ModelError", "TrainingError", "VaelabError", "load", "register_metric",
           "register_model", "register_sampler", "register_score", "register_source", "trust_imports", "__version__"]
