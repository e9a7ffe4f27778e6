"""Distributions known through their samples and log-density only (an IAF posterior, an hvae's
levels): their variance, standard deviation and entropy have no closed form, and asking for one
raises NotImplementedError with a message that says how to estimate it."""
from __future__ import annotations

import torch


class NoClosedForms:
    """Mixin before ``torch.distributions.Distribution``: ``variance``, ``stddev`` and ``entropy()``
    raise ``self._refuse(what)``, which a subclass words for itself (what it is, how to estimate it)."""

    entropy_hint = ""  # appended to "entropy" in the refusal

    def _refuse(self, what: str) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} has no closed-form {what}; estimate it from samples")

    @property
    def variance(self) -> torch.Tensor:
        raise self._refuse("variance")

    @property
    def stddev(self) -> torch.Tensor:
        raise self._refuse("standard deviation")

    def entropy(self) -> torch.Tensor:
        raise self._refuse("entropy" + self.entropy_hint)
