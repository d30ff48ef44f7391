"""bdbench: a benchmark of backdoor defenses for language-model text classifiers.

The public API for plugin authors: :class:`Attack`, :class:`Defense` and the other two kinds
of defense (:class:`InputDetector`, :class:`InputCorrector`, :class:`DataFilter`), their contexts and
outputs, :class:`Example`, :class:`DatasetSpec`, the trigger helpers and ``hookimpl``.
"""

__version__ = "0.1.0"

import pluggy

hookimpl = pluggy.HookimplMarker("bdbench")

from .data import Dataset, DatasetSpec, Example  # noqa: E402
from .errors import BdbenchError, PluginError, ThreatModelError, UsageError  # noqa: E402
from .params import hparam  # noqa: E402
from .plugin import (  # noqa: E402
    Attack,
    AttackContext,
    AttackOutput,
    Calibration,
    DataFilter,
    Defense,
    DefenseContext,
    DefenseOutput,
    InputCorrector,
    InputDetector,
    threshold_for_frr,
)
from .training import TrainConfig, cross_entropy_loss  # noqa: E402

__all__ = [
    "Attack", "AttackContext", "AttackOutput", "BdbenchError", "Calibration", "DataFilter", "Dataset",
    "DatasetSpec", "Defense", "DefenseContext", "DefenseOutput", "Example", "InputCorrector", "InputDetector",
    "PluginError", "TrainConfig", "ThreatModelError", "UsageError", "cross_entropy_loss", "hookimpl", "hparam",
    "threshold_for_frr", "__version__",
]
