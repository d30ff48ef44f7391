"""The error hierarchy. Every user-facing failure is one of these, with a message that says
what was wrong, where (file, line, field, plugin) and what was expected."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BdbenchError(Exception):
    """Base class of every error bdbench raises on purpose."""


class UsageError(BdbenchError):
    """A mistake in the command line, a suite or a parameter."""


class DataError(BdbenchError):
    """A data set that cannot be found or read: the message names the file and line."""


class CheckpointError(BdbenchError):
    """A model folder that cannot be loaded safely (pickle weights, missing files)."""


class PluginError(BdbenchError):
    """A plugin that is unknown, failed to import, or broke its contract."""


class ThreatModelError(PluginError):
    """A defense asked for something its declared requirements do not grant."""


class TrainingError(BdbenchError):
    """The training loop hit a non-finite loss or another unrecoverable state."""


class EvaluationError(BdbenchError):
    """A model that cannot be scored (non-finite logits): its cell fails with this message."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A suffix for error messages: the closest known names, then all of them."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Known: {', '.join(choices) or '(none)'}."


class StoreError(BdbenchError):
    """The artifact store cannot be read or written (a full disk, a store that is a file)."""
