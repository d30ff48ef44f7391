"""bdbench: a benchmark of backdoor defenses for language-model text classifiers.

**Layers.** Inside, the package is grouped into subpackages by job, each importing only from the
layers below it (``tests/test_layers.py`` fails on an import that climbs, and on any import
circle):

1. :mod:`benchmark.base` — errors, content hashing, metric definitions, cost measurement, the
   record schema, the records file, provenance, the table of requirements;
2. :mod:`benchmark.data` — typed examples, where a data set comes from, seeded subsets, the
   built-in generated data sets;
3. :mod:`benchmark.model` — runtime, kernels, encoding, the one training loop, victims, model
   families' internals, distillation losses;
4. :mod:`benchmark.plugins` — hook specs, typed parameters, the plugin base classes and their
   contexts, trigger helpers, the registry, plugin resolution;
5. :mod:`benchmark.harness` — suites and budgets, cells, scenarios and the store, one call of a
   defense of any kind (in this process or an isolated child), each kind's cell, executors, the
   runner;
6. the face — this module, :mod:`benchmark.testing` and :mod:`benchmark.cli` (the command,
   ``bdbench list``, ``bdbench new-defense``): they may import any layer.

:mod:`benchmark.reporting` (leaderboard tables, summary, page, plots, the files written) stands
apart: it imports the base only, never torch, so that records render without the model stack.
Besides ``hookimpl`` and ``__version__``, nothing here is imported before it is asked for:
``from benchmark import X`` loads X's module on first use, so importing a subpackage
(``benchmark.reporting``) does not load the rest.

The public API for plugin authors (``docs/adding-a-defense.md``): :class:`Attack`,
:class:`Defense` and the other kinds of defense (:class:`InputDetector`,
:class:`InputCorrector`, :class:`DataFilter`, :class:`RobustTrainer`), their contexts and outputs, :class:`Example`,
:class:`DatasetSpec`, ``hookimpl`` and ``hparam``; and the toolkit the built-in plugins use:

* model internals, for every supported encoder and decoder family
  (:mod:`benchmark.model.architecture`): :func:`encoder_layers`, :func:`ffn_units`,
  :func:`ffn_projections`, :func:`ffn_activation`, :func:`word_embeddings`, :func:`task_head`,
  :func:`pooler`, :func:`pooled_positions`, :func:`pooled_hidden`, :func:`is_decoder`,
  :func:`head_on_hidden`, :func:`reinit_head`, :func:`redraw`,
  :func:`resolve_layers`, :func:`forward_internals`, :func:`eager_attention`; and
  :func:`clone_model`;
* weight updates computed at every forward pass and merged at the end
  (:mod:`benchmark.model.lowrank`): :class:`LowRank`, :class:`MultiScale`, :class:`ParamGenerator`,
  :class:`Generated`, :func:`parametrize_tensor`, :func:`update_factors`, :func:`trainable_factors`,
  :func:`merge_updates`, :func:`modules_named`, :func:`linear_shape`, :func:`kaiming_uniform`, :func:`spectral_ratios`; and
  :func:`target_modules` (LoRA's per-family targets, :mod:`benchmark.model.lora`);
* a plugin's declared cost (:mod:`benchmark.base.workload`): :class:`Sizes`, :class:`Workload`,
  :func:`train_work`, :func:`eval_work`;
* distillation losses (:mod:`benchmark.model.distill`): :func:`forward_pair`,
  :func:`attention_map_loss`, :func:`hidden_state_loss`, :func:`activation_attention`,
  :func:`activation_attention_loss`;
* trigger helpers (:mod:`benchmark.plugins.triggers`): :func:`insert_words`, :func:`insert_each`,
  :func:`window_words`, :func:`check_single_pieces`, :func:`check_known_pieces`, :func:`trigger_pieces`,
  :func:`poison_by_mode`,
  :class:`PoisoningAttack`, :class:`AdapterParams` and :func:`adapter_recipe` (injection through LoRA).

Plugins import from ``benchmark`` only; their tests may also use :mod:`benchmark.testing`.
"""

from importlib import import_module

from .base.version import __version__  # noqa: F401 (public)
from .plugins.hookspecs import hookimpl  # noqa: F401 (public)

# public name -> the module that defines it (loaded on first use: PEP 562)
_PUBLIC = {
    **dict.fromkeys(("eager_attention", "encoder_layers", "ffn_activation", "ffn_projections", "ffn_units",
                     "forward_internals", "head_on_hidden", "is_decoder", "pooled_hidden", "pooled_positions",
                     "pooler", "redraw", "reinit_head", "resolve_layers", "task_head", "word_embeddings"),
                    "benchmark.model.architecture"),
    **dict.fromkeys(("Dataset", "DatasetSpec", "Example"), "benchmark.data.examples"),
    **dict.fromkeys(("RewriteFolder", "RewriteRow", "read_rewrite_rows"), "benchmark.data.rewrites"),
    **dict.fromkeys(("activation_attention", "activation_attention_loss", "attention_map_loss", "forward_pair",
                     "hidden_state_loss"), "benchmark.model.distill"),
    **dict.fromkeys(("BdbenchError", "DataError", "PluginError", "ThreatModelError", "UsageError"),
                    "benchmark.base.errors"),
    "folder_fingerprint": "benchmark.base.hashing",
    **dict.fromkeys(("load_classifier", "load_tokenizer"), "benchmark.model.victims"),
    "hparam": "benchmark.plugins.params",
    **dict.fromkeys(("CausalLM", "load_causal_lm"), "benchmark.model.perplexity"),
    **dict.fromkeys(("Attack", "AttackOutput"), "benchmark.plugins.attack"),
    **dict.fromkeys(("AttackContext", "DefenseContext"), "benchmark.plugins.contexts"),
    **dict.fromkeys(("Calibration", "DataFilter", "Defense", "DefenseOutput", "InputCorrector", "InputDetector",
                     "RobustTrainer", "threshold_for_frr"), "benchmark.plugins.defense"),
    **dict.fromkeys(("TrainConfig", "cross_entropy_loss"), "benchmark.model.training"),
    **dict.fromkeys(("AdapterParams", "PoisoningAttack", "adapter_recipe", "check_known_pieces", "check_single_pieces",
                     "insert_each", "insert_words", "poison_by_mode", "trigger_pieces", "window_words"),
                    "benchmark.plugins.triggers"),
    "clone_model": "benchmark.model.victims",
    "target_modules": "benchmark.model.lora",
    **dict.fromkeys(("Sizes", "Workload", "eval_work", "train_work"), "benchmark.base.workload"),
    **dict.fromkeys(("Generated", "LowRank", "MultiScale", "ParamGenerator", "kaiming_uniform", "linear_shape", "merge_updates",
                     "modules_named", "parametrize_tensor", "spectral_ratios", "trainable_factors", "update_factors"),
                    "benchmark.model.lowrank"),
}

__all__ = sorted([*_PUBLIC, "hookimpl", "__version__"])


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
