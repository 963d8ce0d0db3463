"""One key's health per model: which models it answered, which it was refused, and whether a
refusal (a 401 or 403 for one request's model) shows the key dead or only that model.

Behind a proxy, one key serves several models, each through an upstream of its own: when one
model group's upstream key is dead, the proxy answers 401 for that model and 200 for the others.
Retiring the proxy key on that 401 would end the whole run; not retiring it on a dead key would
waste a request per model. :meth:`ModelHealth.refuse` weighs what the answers show (the
:class:`Scope` the caller read from the error, and the models the key answered or was refused):

* ``Scope.KEY`` (the answer says the key itself is invalid, or out of quota): the key is dead,
  unless it answered another model (then only this model is refused: that other model's answer
  shows the key works);
* ``Scope.MODEL`` (the answer names the model as what failed, as a proxy reporting its
  upstream's error does): only this model is refused, whatever else happened;
* ``Scope.UNSURE`` (a 401/403 that says neither): this model is refused; the key is dead once
  a second model is refused while it has answered none, or when it had answered this very
  model before (its access was revoked during the run).
"""

from __future__ import annotations

import enum

__all__ = ["MAX_MODELS", "ModelHealth", "Scope"]

# Models remembered as answered, per key (a bound: model names come from the input).
MAX_MODELS = 1024


class Scope(enum.Enum):
    """What a refusal (401, 403, exhausted quota) is about, as far as its answer says."""

    KEY = "key"
    MODEL = "model"
    UNSURE = "unsure"


class ModelHealth:
    """The models one key answered (``served``) and was refused (``refused``: model -> why).
    Not thread-safe on its own: the pool holds its lock around it."""

    __slots__ = ("refused", "served")

    def __init__(self) -> None:
        self.served: set[str] = set()
        self.refused: dict[str, str] = {}

    def answered(self, model: str) -> None:
        if len(self.served) < MAX_MODELS:
            self.served.add(model)

    def refuse(self, model: str, reason: str, scope: Scope) -> bool:
        """Record that the key was refused ``model`` and return True; or return False, and
        record nothing, when the answers show the key itself is dead (retire it)."""
        if model in self.refused:
            return True
        if scope is not Scope.MODEL and not self.served - {model}:
            # Nothing shows the key works for another model.
            if scope is Scope.KEY or model in self.served:
                return False
            if any(other != model for other in self.refused):
                return False  # a second model refused, none answered: the key is dead
        if len(self.refused) >= MAX_MODELS:
            return False
        self.refused[model] = reason
        return True

    def proven(self) -> bool:
        """Whether the key answered any model."""
        return bool(self.served)
