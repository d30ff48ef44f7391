"""bdbench: a benchmark of backdoor defenses for language-model text classifiers.

The public API for plugin authors (``docs/adding-a-defense.md``): :class:`Attack`,
:class:`Defense` and the other two kinds of defense (:class:`InputDetector`,
:class:`InputCorrector`, :class:`DataFilter`), their contexts and outputs, :class:`Example`,
:class:`DatasetSpec`, ``hookimpl`` and ``hparam``; and the toolkit the built-in plugins use:

* model internals, for every supported encoder family (:mod:`benchmark.architecture`):
  :func:`encoder_layers`, :func:`ffn_projections`, :func:`ffn_activation`, :func:`word_embeddings`,
  :func:`task_head`, :func:`pooler`, :func:`head_on_hidden`, :func:`reinit_head`, :func:`redraw`,
  :func:`resolve_layers`, :func:`forward_internals`, :func:`eager_attention`; and
  :func:`clone_model`;
* distillation losses (:mod:`benchmark.distill`): :func:`forward_pair`,
  :func:`attention_map_loss`, :func:`hidden_state_loss`, :func:`activation_attention`,
  :func:`activation_attention_loss`;
* trigger helpers (:mod:`benchmark.triggers`): :func:`insert_words`, :func:`insert_each`,
  :func:`window_words`, :func:`check_single_pieces`, :func:`poison_by_mode`,
  :class:`PoisoningAttack`.

Plugins import from ``benchmark`` only; their tests may also use :mod:`benchmark.testing`.
"""

__version__ = "0.1.0"

import pluggy

hookimpl = pluggy.HookimplMarker("bdbench")

from .architecture import (  # noqa: E402
    eager_attention,
    encoder_layers,
    ffn_activation,
    ffn_projections,
    forward_internals,
    head_on_hidden,
    pooler,
    redraw,
    reinit_head,
    resolve_layers,
    task_head,
    word_embeddings,
)
from .data import Dataset, DatasetSpec, Example  # noqa: E402
from .distill import (  # noqa: E402
    activation_attention,
    activation_attention_loss,
    attention_map_loss,
    forward_pair,
    hidden_state_loss,
)
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
from .triggers import (  # noqa: E402
    PoisoningAttack,
    check_single_pieces,
    insert_each,
    insert_words,
    poison_by_mode,
    window_words,
)
from .victims import clone_model  # noqa: E402

__all__ = [
    "Attack", "AttackContext", "AttackOutput", "BdbenchError", "Calibration", "DataFilter", "Dataset",
    "DatasetSpec", "Defense", "DefenseContext", "DefenseOutput", "Example", "InputCorrector", "InputDetector",
    "PluginError", "PoisoningAttack", "TrainConfig", "ThreatModelError", "UsageError", "activation_attention",
    "activation_attention_loss", "attention_map_loss", "check_single_pieces", "clone_model", "cross_entropy_loss",
    "eager_attention", "encoder_layers", "ffn_activation", "ffn_projections", "forward_internals", "forward_pair",
    "head_on_hidden", "hidden_state_loss", "hookimpl", "hparam", "insert_each", "insert_words", "poison_by_mode",
    "pooler", "redraw", "reinit_head", "resolve_layers", "task_head", "threshold_for_frr", "window_words",
    "word_embeddings", "__version__",
]
