"""The zoo's model resolver, registered with the core under ``tiledseg.model_resolvers``.

``tiledseg`` (the CLI, :func:`tiledseg.loading.load_model`, a served model's metadata) knows
only paths; this resolver adds every form the zoo accepts (:data:`model_zoo.ACCEPTED_FORMS`:
bundled and registry ids, ``ORG/NAME``, ``hf://ORG/NAME[@REV]``, zoo folders and training run
directories). It is registered in tiledseg's ``pyproject.toml``::

    [project.entry-points."tiledseg.model_resolvers"]
    zoo = "model_zoo.plugin:RESOLVER"
"""

from __future__ import annotations

from typing import Any

from model_zoo.layout import META_FILE
from model_zoo.loader import load
from model_zoo.resolve import resolve
from tiledseg.contract import ModelMeta, load_meta

__all__ = ["RESOLVER", "ZooResolver"]


class ZooResolver:
    """Resolves zoo references for the core (see :mod:`tiledseg.loading`)."""

    name = "zoo"

    def load(self, ref: str, revision: str | None) -> Any:
        """The :class:`model_zoo.ZooModel` for ``ref``, loaded once per process."""
        return load(ref, revision=revision)

    def read_meta(self, ref: str, revision: str | None) -> ModelMeta:
        """``ref``'s ``tiledseg.json``; a checkpoint without one is loaded for its defaults."""
        resolved = resolve(ref, revision)  # ModelNotFoundError lists the accepted forms
        folder = resolved.path if resolved.path.is_dir() else resolved.path.parent
        if (folder / META_FILE).is_file():
            return load_meta(folder / META_FILE)
        # The zoo derives defaults (and the downsampling factor) from the model itself.
        return load(ref, revision=revision).meta

    def __repr__(self) -> str:
        return "ZooResolver()"


RESOLVER = ZooResolver()
