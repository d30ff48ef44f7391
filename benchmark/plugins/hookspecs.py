"""Hook specifications of bdbench, in the order they fire.

A plugin is a module (or object) with functions named like the hooks below, marked with
``benchmark.hookimpl``. Built-in plugin classes are listed in ``registry.toml``; third-party
packages expose a module through the entry-point group ``bdbench`` in their own
``pyproject.toml``::

    [project.entry-points.bdbench]
    my_plugin = "my_package.plugin"

Hooks are called with keyword arguments only. To evolve a hook, add an optional keyword;
never rename or reorder.

A run's call sequence:

1. registration: ``bdbench_attacks``, ``bdbench_defenses``, ``bdbench_datasets`` once each,
   when the registry is built; every returned class or spec is registered by name;
2. the runner resolves each cell (scenario × defense), runs the attack (cached), the defense and
   the evaluation;
3. reporting: ``bdbench_record`` once per finished cell (ok or failed), after the record has
   been appended to ``records.jsonl``.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("bdbench")
hookimpl = pluggy.HookimplMarker("bdbench")  # plugins mark their hooks with it (``from benchmark import hookimpl``)


# --------------------------------------------------------------------------- registration

@hookspec
def bdbench_attacks() -> list[type]:
    """Attack classes this plugin provides.

    Called once per registry build. Implemented by attack plugins.

    :return: a list of :class:`benchmark.Attack` subclasses (each with a unique ``name``).
    """


@hookspec
def bdbench_defenses() -> list[type]:
    """Defense classes this plugin provides.

    Called once per registry build. Implemented by defense plugins.

    :return: a list of :class:`benchmark.Defense` subclasses (each with a unique ``name``).
    """


@hookspec
def bdbench_datasets() -> list:
    """Named data sets this plugin provides.

    Called once per registry build. Implemented by data plugins (and the built-in data module).

    :return: a list of :class:`benchmark.DatasetSpec`.
    """


# --------------------------------------------------------------------------- reporting

@hookspec
def bdbench_record(record: dict) -> None:
    """A cell has finished and its record has been written.

    Called once per cell, ok or failed, after the atomic append. Implemented by reporters
    (dashboards, trackers). Exceptions raised here are logged, never fatal.

    :param record: the record as written (see ``benchmark.base.records``); do not mutate it.
    """
