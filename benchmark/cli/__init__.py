"""The face: the ``bdbench`` command (:mod:`.commands`), ``bdbench list`` and ``bdbench
new-defense``. Imports any layer."""

from .commands import main

__all__ = ["main"]
