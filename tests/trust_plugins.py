"""Hostile and broken defenses for the trust tests (module level, so that the defense's own
process can import them by name)."""

from __future__ import annotations

import gc
import json
import os
import sys

import torch

from attacks.badnets import BadNets
from benchmark import Defense, DefenseContext, DefenseOutput, RobustTrainer

SECRETS_ENV = "TRUST_PROBE_SECRETS"  # a JSON file: {"texts": [...], "paths": [...]}
HARNESS_TYPES = {"Harness", "Scenario", "ArtifactStore", "Splits", "HarnessConfig"}
TRIGGER_WORDS = ("cf", "mn", "bb", "tq")


class Explode(Defense):
    name = "explode"
    requires = frozenset()

    def purify(self, model, ctx: DefenseContext):
        raise RuntimeError("boom")


class Exit(Defense):
    name = "exit"
    requires = frozenset()

    def purify(self, model, ctx: DefenseContext):
        sys.exit(3)


class Die(Defense):
    name = "die"
    requires = frozenset()

    def purify(self, model, ctx: DefenseContext):
        os._exit(9)  # the process vanishes without a word, as under kill -9


class NaNWeights(Defense):
    name = "nan_weights"
    requires = frozenset()

    def purify(self, model, ctx: DefenseContext):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(float("nan"))
        return model


def _strings_in(obj) -> list[str]:
    """Strings held directly by a container (instance attributes live in gc-tracked dicts too)."""
    if type(obj) is dict:
        items = [*obj.keys(), *obj.values()]
    elif type(obj) in (list, tuple, set, frozenset):
        items = obj
    else:
        return []
    return [item for item in items if type(item) is str]


def probe_process(secrets: dict) -> list[str]:
    """What a defense that declared nothing can find in its process (an empty list is the goal)."""
    found = set()
    texts = set(secrets.get("texts", ()))
    paths = [p for p in secrets.get("paths", ()) if p]
    own = {id(secrets), id(texts), id(paths), *(id(v) for v in secrets.values())}  # the probe's own copies
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("benchmark") and module is not None:
            for attr, value in vars(module).items():
                if type(value).__name__ in HARNESS_TYPES:
                    found.add(f"global {module_name}.{attr}")
                if attr == "_CACHE" and value:
                    found.add(f"non-empty cache {module_name}._CACHE ({len(value)} entries)")
    for obj in gc.get_objects():
        if id(obj) in own:
            continue
        if type(obj).__name__ in HARNESS_TYPES and type(obj).__module__.startswith("benchmark"):
            found.add(f"object of type {type(obj).__name__}")
            continue
        for text in _strings_in(obj):
            if text in texts:
                found.add(f"a data-set text (test, triggered or training): {text[:60]!r}")
            elif " " in text and any(f" {w} " in f" {text} " for w in TRIGGER_WORDS):
                found.add(f"a text holding a trigger word: {text[:60]!r}")
            elif any(p in text for p in paths):
                found.add(f"a harness path (store, data or victim folder): {text[:80]!r}")
    return sorted(found)


class Probe(Defense):
    """Declares nothing; reports what it can reach in ``defense_info['found']``."""

    name = "probe"
    requires = frozenset()

    def purify(self, model, ctx: DefenseContext):
        with open(os.environ[SECRETS_ENV], encoding="utf-8") as handle:
            secrets = json.load(handle)
        found = probe_process(secrets)
        name_or_path = str(getattr(model, "name_or_path", "")) + str(getattr(model.config, "_name_or_path", ""))
        tokenizer_path = str(getattr(ctx.tokenizer, "name_or_path", ""))
        for path in secrets.get("paths", ()):
            if path and (path in name_or_path or path in tokenizer_path):
                found.append(f"name_or_path points at {path}")
        return DefenseOutput(model, info={"found": found})


class KillWorker(Defense):
    """Kills the process it runs in with SIGKILL (run it with isolation "none" to kill a worker)."""

    name = "kill_worker"
    requires = frozenset()

    def purify(self, model, ctx: DefenseContext):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def live_models() -> list[str]:
    """Class names of the whole models alive in this process."""
    from transformers import PreTrainedModel

    gc.collect()
    models = [obj for obj in gc.get_objects() if isinstance(obj, PreTrainedModel)]
    inner = {id(sub) for model in models for sub in model.modules() if sub is not model}
    return [type(m).__name__ for m in models if id(m) not in inner]  # whole models, not their encoders


class CountingBadNets(BadNets):
    """BadNets that reports how many models the process holds as its attack starts and ends:
    the harness keeps no pre-trained or clean copy through the attack's training."""

    name = "counting_badnets"

    def attack(self, ctx):
        before = live_models()
        output = super().attack(ctx)
        output.info.update(models_at_start=before, models_at_end=live_models())
        return output


SECRET_NAMES = ("records.jsonl", "test.tsv", "train.tsv", "model.safetensors")


class Snoop(Defense):
    """Declares nothing and looks outside its process: the other processes' command lines, working
    folders and environments (``/proc``), and every folder it can list (the interpreter's own
    files aside), for records, data files and model weights outside its own folder. Then it
    tries to cheat: it returns the first clean model it found in any store, else its input."""

    name = "snoop"
    requires = frozenset()

    def purify(self, model, ctx: DefenseContext):
        own = os.getcwd()
        found: dict[str, list[str]] = {"processes": [], "files": []}
        for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
            for entry in ("cmdline", "environ"):
                try:
                    with open(f"/proc/{pid}/{entry}", "rb") as handle:
                        found["processes"].append(handle.read().decode("utf-8", "replace").replace("\0", " "))
                except OSError:
                    pass
            try:
                found["processes"].append("cwd " + os.readlink(f"/proc/{pid}/cwd"))
            except OSError:
                pass
        skip = {"/proc", "/sys", "/dev", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", sys.base_prefix}
        for root, dirs, files in os.walk("/"):
            dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
            if root.startswith(own):
                continue
            found["files"] += [os.path.join(root, f) for f in files if f in SECRET_NAMES]
        stores = [f for f in found["files"] if f.endswith("model.safetensors") and "/clean/" in f]
        if stores:  # the cheat: a clean reference model from any store on disk
            from benchmark import load_classifier

            model = load_classifier(os.path.dirname(stores[0]), model.config.num_labels)
        return DefenseOutput(model, info={"found": found, "cheated": bool(stores)})


class Sleep(Defense):
    """Declares nothing and never returns (a plugin stuck in a loop)."""

    name = "sleep"
    requires = frozenset()

    def purify(self, model, ctx: DefenseContext):
        import time

        while True:
            time.sleep(0.5)


class SpyTrainer(RobustTrainer):
    """A robust trainer that trains nothing: it returns its pre-trained copy and says what it was
    given (the poison flags it sees, the training set's size, whether undeclared clean data is
    refused)."""

    name = "spy_trainer"
    version = "1"
    requires = frozenset({"poisoned_train", "pretrained_weights"})

    def train(self, ctx: DefenseContext):
        from benchmark import ThreatModelError

        seen = {"flags": sorted({ex.poisoned for ex in ctx.poisoned_train}), "size": len(ctx.poisoned_train)}
        try:
            ctx.clean_data  # noqa: B018 - not declared
            seen["clean_data"] = "granted"
        except ThreatModelError:
            seen["clean_data"] = "refused"
        return DefenseOutput(ctx.pretrained_model(), info=seen)
