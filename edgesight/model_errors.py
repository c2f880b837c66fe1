"""The one error that model import, its self-check and quantisation raise for a model file
that cannot become a product model. Its own module so that ``model_import`` and
``model_check`` both import it and not each other (issue 19: no import circles)."""

from __future__ import annotations

__all__ = ["ModelImportError"]


class ModelImportError(ValueError):
    """A model file that cannot be made into a product model; the message says why."""
