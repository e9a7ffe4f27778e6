"""zuko, the normalising-flow library, imported without its process-wide switch: importing zuko
sets ``torch.distributions.Distribution._validate_args = False``, turning off argument checks for
every distribution in the process. vaelab puts back the value it found, so that importing vaelab
changes no torch default; zuko's own distributions work either way (it also gives torch's base
Distribution an empty ``arg_constraints``, which only silences a warning). Import zuko from here."""
from torch.distributions import Distribution

_validate = Distribution._validate_args
import zuko  # noqa: E402
import zuko.distributions  # noqa: E402,F401
import zuko.flows  # noqa: E402,F401

Distribution._validate_args = _validate

__all__ = ["zuko"]
