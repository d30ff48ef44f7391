"""The record schema: every key a line of ``records.jsonl`` may hold, in one typed definition.

Each :class:`RecordKey` below states what the key holds (its ``doc``), its JSON types, the
group it belongs to, which records carry it, and for a metric which direction is better. The
one table serves three readers:

* the harness **builds** records through :func:`record_fields`, which refuses a key that is not
  declared here (a misspelt key fails the cell that wrote it, loudly);
* :func:`validate_record` **checks** a whole record: every key declared, of a declared type,
  every key its record must carry present, and none that belongs to another kind of record;
  :func:`benchmark.harness.runner.run_cells` warns (:class:`RecordSchemaWarning`) about a record that
  fails, and the test suite turns that warning into an error;
* the leaderboard takes each metric's direction (:func:`better`) from here.

Which records carry a key (``carried_by``): ``every`` record; ``ok`` or ``failed`` records; the
ok records of one defense kind (``defense_kind``: ``purification``, ``input_detection``,
``data_filtering``, ``robust_training``; ``docs/defense-kinds.md``); among input-detection records, those of an
``input_detector`` or of an ``input_corrector`` (a corrector's record is the one that carries
``changed_clean``). A key is required in the records it applies to unless it is ``optional``.
Values that were NaN or infinite are written as null (:func:`benchmark.base.records.sanitize`), so
every float metric also admits null.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from .errors import BdbenchError

JSON_TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")
GROUPS = ("identity", "outcome", "configuration", "scenario", "metrics", "costs", "input_detection",
          "input_correction", "data_filtering", "robust_training", "provenance")
SCOPES = ("every", "ok", "failed", "purification", "input_detection", "input_detector", "input_corrector",
          "data_filtering", "robust_training")
ARROWS = {"higher": "↑", "lower": "↓"}  # the directions a metric may declare, and the arrow tables show


class RecordSchemaError(BdbenchError):
    """A record that breaks the schema: an undeclared key, a value of the wrong type, a missing key."""


class RecordSchemaWarning(RuntimeWarning):
    """A finished record that breaks the schema (it is still written; the test suite makes it an error)."""


@dataclasses.dataclass(frozen=True)
class RecordKey:
    """One key of a record. ``name`` is the key itself, or for a family of keys a pattern such as
    ``<extra>_rate`` (``pattern`` is then the regular expression its members match)."""

    name: str
    types: tuple[str, ...]  # JSON types of its value (JSON_TYPES)
    group: str  # GROUPS: what part of the record it belongs to
    carried_by: tuple[str, ...]  # SCOPES: which records carry it (module docstring)
    doc: str  # what it holds, with its unit or source
    better: str | None = None  # metrics: "higher" or "lower" is better; None: no direction
    optional: bool = False  # True: a record it applies to may leave it out
    choices: tuple[str, ...] = ()  # the values a string key may take (empty: any)
    pattern: str | None = None  # a key family: the regular expression of its members

    def __post_init__(self) -> None:
        for value, allowed, what in ((self.types, JSON_TYPES, "type"), (self.carried_by, SCOPES, "scope"),
                                     ((self.group,), GROUPS, "group")):
            unknown = set(value) - set(allowed)
            if unknown:
                raise ValueError(f"record key {self.name!r}: unknown {what} {sorted(unknown)}")
        if self.better not in (None, *ARROWS):
            raise ValueError(f"record key {self.name!r}: better must be 'higher', 'lower' or None")


NUMBER = ("number", "null")  # a float metric (null where it was NaN)
COUNT = ("integer",)
COST = ("number", "null")  # null: not measured here (the GPU fields without CUDA)
OK = ("ok",)
DETECTION = ("input_detection",)


def _key(name, types, group, carried_by, doc, **more) -> RecordKey:
    return RecordKey(name, tuple(types), group, tuple(carried_by), doc, **more)


KEYS: tuple[RecordKey, ...] = (
    # -- identity: what determines the cell (every record, failed ones too)
    _key("cell_id", ["string"], "identity", ["every"], "hash of all that determines the cell "
         "(benchmark.harness.runner.cell_identity); what --resume matches"),
    _key("dataset", ["string"], "identity", ["every"], "the data set: its registered name, its folder's name, "
         "or ID[:CONFIG] of a hub data set"),
    _key("victim", ["string"], "identity", ["every"], "the victim checkpoint as the run named it"),
    _key("attack", ["string"], "identity", ["every"], "the attack plugin's name"),
    _key("attack_label", ["string"], "identity", ["every"], "the attack's configured label (its table on the "
         "leaderboard)"),
    _key("defense", ["string"], "identity", ["every"], "the defense plugin's name"),
    _key("defense_label", ["string"], "identity", ["every"], "the defense's configured label (its row on the "
         "leaderboard)"),
    _key("seed", ["integer"], "identity", ["every"], "the scenario's seed"),
    _key("budget", ["object"], "identity", ["every"], "the budget (benchmark.harness.config.Budget as a dict): subsets, "
         "max_length, clean_fraction, target_label, victim and defense training recipes"),
    # -- outcome
    _key("status", ["string"], "outcome", ["every"], "ok, or failed with error", choices=("ok", "failed")),
    _key("finished_at", ["string"], "outcome", ["every"], "UTC time the cell ended, ISO 8601 (YYYY-MM-DDTHH:MM:SSZ)"),
    _key("error", ["string"], "outcome", ["failed"], "why the cell failed: 'ExceptionType: message'"),
    _key("traceback", ["string"], "outcome", ["failed"], "the last 4000 characters of the traceback, where the "
         "cell failed inside a harness (not when its scenario's build failed or its worker died)", optional=True),
    # -- the configured plugins, resolved
    _key("attack_params", ["object"], "configuration", OK, "the attack's resolved hyperparameters (defaults "
         "with the suite's and --set's values)"),
    _key("attack_version", ["string"], "configuration", OK, "the attack plugin's version"),
    _key("defense_params", ["object"], "configuration", OK, "the defense's resolved hyperparameters"),
    _key("defense_version", ["string"], "configuration", OK, "the defense plugin's version"),
    _key("defense_kind", ["string"], "configuration", OK, "the defense's kind (docs/defense-kinds.md)",
         choices=("purification", "input_detection", "data_filtering", "robust_training")),
    _key("requires", ["array"], "configuration", OK, "the assets the defense declared, sorted"),
    _key("isolation", ["string"], "configuration", OK, "where the defense ran (benchmark.harness.isolation)",
         choices=("process", "sandbox", "none")),
    # -- the scenario's own figures (shared by every defense of it)
    _key("scenario_id", ["string"], "scenario", OK, "content hash of the attacked-model artifact "
         "(benchmark.harness.scenario.scenario_keys)"),
    _key("cacc_before", NUMBER, "scenario", OK, "CACC of the undefended backdoored model", better="higher"),
    _key("asr_before", NUMBER, "scenario", OK, "ASR of the undefended backdoored model", better="lower"),
    _key("cacc_clean", NUMBER, "scenario", OK, "CACC of the scenario's clean reference model", better="higher"),
    _key("asr_clean", NUMBER, "scenario", OK, "ASR of the clean reference model on the same triggered inputs "
         "(the floor a perfect defense reaches)", better="lower"),
    _key("<extra>_rate_before", NUMBER, "scenario", OK, "an attack-specific rate of the undefended backdoored "
         "model (LWP: false_trigger_rate_before)", better="lower", optional=True,
         pattern=r"[a-z0-9_]+_rate_before"),
    _key("poisoned_count", ["integer", "null"], "scenario", OK, "training samples the attack altered"),
    _key("attack_info", ["object"], "scenario", OK, "what the attack reported (AttackOutput.info)"),
    _key("attack_stealth", ["object"], "scenario", OK, "the triggered test texts against their sources "
         "(benchmark.base.stealth): pairs, changed_share, edit_words_mean, edit_share_mean; with --stealth-lm also "
         "lm, ppl_clean_mean, ppl_poisoned_mean, ppl_increase, ppl_texts (benchmark.model.perplexity); absent "
         "from records written before it existed", optional=True),
    _key("attack_cost", ["object"], "scenario", OK, "the attack phase's cost (benchmark.base.costs.PhaseCost)"),
    _key("clean_cost", ["object", "null"], "scenario", OK, "the clean reference model's training cost (null: "
         "the scenario has none, an external attack's with clean_reference false)"),
    _key("scenario_weights", ["object"], "scenario", OK, "SHA-256 of the clean reference model's and the "
         "backdoored model's weights as built (benchmark.harness.store.weights_digest): clean, backdoored; null for "
         "a model stored before the digest existed. Records of one scenario_id naming different digests "
         "come from separate builds that did not reproduce bit for bit (another processor, say)",
         optional=True),
    # -- metrics after the defense (benchmark.base.metrics; detection.py for the kinds)
    _key("cacc", NUMBER, "metrics", OK, "clean test accuracy after the defense (input detection: over the "
         "accepted clean inputs; data filtering: of the retrained victim; robust training: of the defender's "
         "model)", better="higher"),
    _key("asr", NUMBER, "metrics", OK, "attack success rate after the defense: share of triggered non-target "
         "test inputs classified as the target (input detection: of all, a rejection never a success)",
         better="lower"),
    _key("delta_cacc", NUMBER, "metrics", OK, "CACC lost: cacc_before − cacc", better="lower"),
    _key("delta_asr", NUMBER, "metrics", OK, "ASR removed: asr_before − asr", better="higher"),
    _key("der", NUMBER, "metrics", OK, "defense effectiveness rate [max(0, ΔASR) − max(0, ΔCACC) + 1] / 2; 0.5 "
         "is no change", better="higher"),
    _key("<extra>_rate", NUMBER, "metrics", OK, "an attack-specific rate after the defense (LWP: "
         "false_trigger_rate, its ASR on single trigger pieces)", better="lower", optional=True,
         pattern=r"[a-z0-9_]+_rate"),
    _key("aux", ["object"], "metrics", OK, "each auxiliary model the defense returned (e.g. teacher) → its "
         "cacc, asr and extras; empty for the other kinds"),
    _key("defense_info", ["object"], "metrics", OK, "what the defense reported (its info)"),
    # -- costs of the defense phase (benchmark.base.costs)
    _key("wall_s", COST, "costs", OK, "wall-clock seconds of the defense phase", better="lower"),
    _key("cpu_s", COST, "costs", OK, "process CPU seconds of the defense phase, all threads", better="lower"),
    _key("gpu_s", COST, "costs", OK, "CUDA time of the defense phase in seconds; null without CUDA",
         better="lower"),
    _key("peak_gpu_mb", COST, "costs", OK, "peak CUDA memory allocated in the defense phase, MB; null without "
         "CUDA", better="lower"),
    _key("peak_rss_mb", COST, "costs", OK, "peak resident host memory of the defense phase, MB", better="lower"),
    _key("device", ["string", "null"], "costs", OK, "the device the defense ran on"),
    _key("train_samples", ["integer", "null"], "costs", OK, "training samples the defense processed"),
    _key("train_tokens", ["integer", "null"], "costs", OK, "real (non-padding) tokens the defense trained on"),
    _key("eval_cost", ["object"], "costs", OK, "the harness's own evaluation of the defended model"),
    _key("clean_size", COUNT, "costs", OK, "clean training samples granted to the defense (0 without clean_data)"),
    _key("expected_s", ["object"], "costs", ["every"], "the cost model's expected seconds of the cell's phases "
         "before it ran (benchmark.harness.estimate): clean-train, attack, defense, retrain, evaluation, at the "
         "run's calibration; the builds' figures are the scenario's, whichever cell paid them; absent where the run "
         "made no estimate (bdbench run --no-estimate, the testing helpers) or from records written before it "
         "existed", optional=True),
    # -- input detection and correction (benchmark.harness.detection)
    _key("frr", NUMBER, "input_detection", DETECTION, "share of clean test inputs flagged (null for a "
         "corrector)", better="lower"),
    _key("far", NUMBER, "input_detection", DETECTION, "share of triggered test inputs not flagged (null for a "
         "corrector)", better="lower"),
    _key("auroc", NUMBER, "input_detection", DETECTION, "area under the ROC curve of the defense's score, "
         "triggered against clean test inputs (null for a corrector without scores)", better="higher"),
    _key("rejected_clean", ["integer", "null"], "input_detection", DETECTION, "clean test inputs flagged (null "
         "for a corrector)"),
    _key("rejected_poisoned", ["integer", "null"], "input_detection", DETECTION, "triggered test inputs "
         "flagged (null for a corrector)"),
    _key("clean_test_size", COUNT, "input_detection", DETECTION, "clean test inputs screened"),
    _key("poisoned_test_size", COUNT, "input_detection", DETECTION, "triggered test inputs screened"),
    _key("cacc_all", NUMBER, "input_detection", DETECTION, "accuracy over all clean test inputs, each rejection "
         "an error", better="higher"),
    _key("asr_accepted", NUMBER, "input_detection", DETECTION, "ASR over the accepted triggered inputs only",
         better="lower"),
    _key("threshold", NUMBER, "input_detection", ["input_detector"], "the score above which the detector "
         "flags, chosen on its clean calibration inputs"),
    _key("dev_frr", NUMBER, "input_detection", ["input_detector"], "share of the calibration inputs flagged at "
         "the threshold (its target: the frr parameter)"),
    _key("calibration_size", COUNT, "input_detection", ["input_detector"], "clean calibration inputs"),
    _key("changed_clean", COUNT, "input_correction", ["input_corrector"], "clean test inputs the corrector "
         "rewrote"),
    _key("changed_poisoned", COUNT, "input_correction", ["input_corrector"], "triggered test inputs the "
         "corrector rewrote"),
    _key("defense_phases", ["object"], "costs", ["input_detection", "data_filtering"], "each phase's cost "
         "(defense: fit and calibration or filtering; detection: scoring the test inputs)"),
    # -- training-data filtering (benchmark.harness.detection)
    _key("filter_recall", NUMBER, "data_filtering", ["data_filtering"], "share of poisoned training samples "
         "removed", better="higher"),
    _key("filter_fpr", NUMBER, "data_filtering", ["data_filtering"], "share of clean training samples removed",
         better="lower"),
    _key("kept", COUNT, "data_filtering", ["data_filtering"], "training samples kept (the victim is retrained "
         "on them)"),
    _key("train_size", COUNT, "data_filtering", ["data_filtering", "robust_training"], "samples of the poisoned "
         "training set"),
    _key("poisoned_train_size", COUNT, "data_filtering", ["data_filtering", "robust_training"], "poisoned samples "
         "in it"),
    _key("retrain_cost", ["object"], "costs", ["data_filtering"], "the cost of retraining the victim on the "
         "kept samples"),
    # -- robust training (benchmark.harness.robust)
    _key("isolated_poisoned", ["integer", "null"], "robust_training", ["robust_training"], "of the training samples "
         "the defense isolated (defense_info.isolated: ABL's suspected set), how many were poisoned; absent where "
         "it isolates none", optional=True),
    # -- provenance
    _key("provenance", ["object"], "provenance", ["every"], "bdbench_version, git_revision, libraries, platform, "
         "processor (the CPU's model name, where known), processor_kernels (its kernel-choosing features: "
         "amx_bf16, amx_tile, avx512_bf16, avx512f, avx2, where known), config_hash (= cell_id), precision, device_type, "
         "threads; for data sets read by the run: "
         "dataset_source (such as dir:<folder name>), dataset_fingerprint of every text and label, "
         "dataset_dev_carved, and dataset_labels where labels were mapped to indices; victim_weights where the "
         "victim is dequantised from a packaged quantised file (benchmark.model.gguf: which file, its digest)"),
)

SCHEMA: dict[str, RecordKey] = {k.name: k for k in KEYS if k.pattern is None}
PATTERNS: tuple[tuple[re.Pattern, RecordKey], ...] = tuple((re.compile(k.pattern), k) for k in KEYS if k.pattern)


def lookup(key: str) -> RecordKey | None:
    """The declaration of ``key`` (an exact key first, then a key family), or None."""
    if key in SCHEMA:
        return SCHEMA[key]
    return next((declared for regex, declared in PATTERNS if regex.fullmatch(key)), None)


def better(key: str) -> str | None:
    """Which direction of the metric ``key`` is better: ``"higher"``, ``"lower"`` or None."""
    declared = lookup(key)
    if declared is None:
        raise KeyError(f"{key!r} is not a record key (benchmark.base.record_schema)")
    return declared.better


def record_fields(values: Mapping[str, Any] | None = None, /, **named: Any) -> dict[str, Any]:
    """``values`` and ``named`` as one dict of record fields; raises :class:`RecordSchemaError`
    naming any key the schema does not declare. Every part of a record is built through this."""
    fields = {**(values or {}), **named}
    undeclared = sorted(key for key in fields if lookup(key) is None)
    if undeclared:
        raise RecordSchemaError(f"record keys {undeclared} are not declared in benchmark.base.record_schema")
    return fields


def record_scopes(record: Mapping[str, Any]) -> set[str]:
    """The scopes (module docstring) a record belongs to, read from its status and defense kind."""
    scopes = {"every", str(record.get("status"))}
    if record.get("status") == "ok":
        kind = record.get("defense_kind")
        scopes.add(str(kind))
        if kind == "input_detection":
            scopes.add("input_corrector" if "changed_clean" in record else "input_detector")
    return scopes


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def record_problems(record: Mapping[str, Any]) -> list[str]:
    """Every way ``record`` breaks the schema, one sentence each (empty when it conforms)."""
    problems = []
    scopes = record_scopes(record)
    for key, value in record.items():
        declared = lookup(key)
        if declared is None:
            problems.append(f"{key!r} is not a declared record key")
            continue
        if not scopes & set(declared.carried_by):
            problems.append(f"{key!r} belongs to {'/'.join(declared.carried_by)} records only")
        kind = _json_type(value)
        if not (kind in declared.types or (kind == "integer" and "number" in declared.types)):
            problems.append(f"{key!r} is {kind}, expected {' or '.join(declared.types)}")
        elif declared.choices and value not in declared.choices:
            problems.append(f"{key!r} is {value!r}, expected one of {', '.join(declared.choices)}")
    for declared in KEYS:
        if (declared.pattern is None and not declared.optional and scopes & set(declared.carried_by)
                and declared.name not in record):
            problems.append(f"{declared.name!r} is missing")
    return problems


def validate_record(record: Mapping[str, Any], where: str = "record") -> None:
    """Raise :class:`RecordSchemaError` listing every problem of ``record`` (``where`` names it)."""
    problems = record_problems(record)
    if problems:
        raise RecordSchemaError(f"{where}: " + "; ".join(problems))
