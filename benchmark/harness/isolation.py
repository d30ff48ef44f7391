"""Run a defense where only its declared assets exist.

The threat model says a defense sees the backdoored model, the tokenizer and what it declared in
``requires`` — nothing else. Declaring is not enough while the defense shares the harness's
process: the harness's objects (the store, the test split, the triggered texts, the poisoned
training set in the tokenization cache, the pre-trained loader) are all reachable from Python.
So, by default (``isolation="process"``), each defense runs in a **fresh child process**:

1. the harness writes, into a private temporary folder (mode 0700), the backdoored weights
   (safetensors, with the config's ``_name_or_path`` gone), the tokenizer files, a JSON file
   with exactly the granted assets (clean data, clean dev split, target label) and, when
   ``pretrained_weights`` is declared, the pre-trained weights with the scenario's seeded head;
2. a child process forked from a clean interpreter (:class:`DefenseServer`: a fresh
   ``python -m benchmark.harness.isolation --serve`` that imported only torch, transformers and the
   plugin API, never the harness's state) loads those files, builds the
   :class:`DefenseContext` (:meth:`benchmark.harness.grants.Grant.context`), imports the defense
   class by module path, runs it (``purify`` for a purification, inside a cost phase) and writes
   the purified weights (and any auxiliary models) back as safetensors;
3. the harness loads the weights and evaluates them itself. A defense that raises, calls
   ``sys.exit`` or kills its process fails its own cell only.

Every kind of defense uses the same folder and child (the child runs
:func:`benchmark.harness.apply.apply_defense`), with ``DefenseJob.kind`` saying which protocol applies:

* an **input detector or corrector** (``input_detection``) gets, besides the backdoored model and
  its declared assets, ``inputs.json``: the test inputs to score, as bare texts — clean and
  triggered mixed, shuffled by the harness, with no labels and nothing saying which is which. The
  child fits the detector, chooses its threshold on clean data, scores every input, and writes
  one score and one flag (or one rewritten text, for a corrector) per input into
  ``result.json``; it writes no weights;
* a **data filter** (``data_filtering``) gets the poisoned training set (texts and labels in the
  attack's order, no poison flags) as its ``poisoned_train`` asset and returns the indices it keeps;
* a **robust trainer** (``robust_training``) gets the poisoned training set and the pre-trained
  weights, and **no** backdoored model (its folder has none); it returns the model it trained,
  as a purification returns its purified one.

The harness computes every metric itself (FRR, FAR, AUROC, accuracy after rejection, filter
recall and FPR, the retrained model's CACC and ASR) from what came back.

What this protects against: a defense reading harness memory (globals, caches, objects) to see
test data, triggers, poisoned samples, the clean reference model or pre-trained weights it did
not declare. What ``isolation="process"`` does not: code can still read any file it can name
(the data folder, the artifact store, ``--out``, the site-packages copy of the pre-trained
weights, the parents' ``/proc`` entries) and use the network, since the child runs as the same
user. ``isolation="sandbox"`` closes that where bubblewrap (``bwrap``) works: the child sees only
an allow-list of the file system (:mod:`benchmark.harness.sandbox`: deny by default), in its own
PID and network namespaces. ``isolation="auto"`` (the default) picks the sandbox where it starts
and the process otherwise, and says which once; records name the isolation each cell ran under.
``isolation="none"`` runs the defense in the harness's process (for debugging a trusted plugin).
Every isolated defense runs under a time limit (``--defense-timeout``): past it, its process is
killed and its cell fails. :class:`benchmark.harness.defense_call.DefenseCaller` is the one caller
of this module and chooses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ..base.costs import configure_process_logging
from ..base.errors import PluginError, UsageError
from ..plugins.contexts import DefenseContext
from ..plugins.registry import import_class
from .apply import DefenseAnswer, apply_defense
from .grants import Grant
from .sandbox import sandbox_command, sandbox_problem

_log = logging.getLogger(__name__)

ISOLATION_MODES = ("auto", "process", "sandbox", "none")
BUILTIN_PLUGIN_PACKAGES = ("attacks", "defenses")  # shown to a sandboxed defense, which may import them
DEFAULT_TIMEOUT_S = 6 * 3600.0  # per defense call; the slowest published cell took under 40 minutes
_ASSETS = "assets.json"
_RESULT = "result.json"
_SPEC = "spec.json"
_INPUTS = "inputs.json"  # an input detector's texts to score (unlabelled, shuffled)
# imported once by the fork server, so that each defense's process starts in a fraction of a second
_PRELOAD = ["benchmark.harness.isolation", "benchmark.model.training", "benchmark.model.victims", "transformers.modeling_utils",
            "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto"]


class DefenseProcessError(PluginError):
    """The defense's process ended without writing its result (killed, crashed, out of memory)."""


class DefenseTimeoutError(DefenseProcessError):
    """The defense ran past its time limit and its process was killed."""


@dataclasses.dataclass(frozen=True)
class DefenseJob:
    """Everything the child needs, besides the files in its folder (JSON-ready)."""

    defense_class: str  # "module:QualifiedName"
    defense_name: str
    params: dict
    requires: list[str]
    num_labels: int
    max_length: int
    seed: int
    train_config: dict
    device: str
    precision: str
    threads: int
    kind: str  # purification, input_detection, data_filtering or robust_training (the module docstring)


def check_isolation(mode: str) -> None:
    """Refuse an unknown mode, and ``sandbox`` where the sandbox cannot start (it is started once)."""
    if mode not in ISOLATION_MODES:
        raise UsageError(f"--isolation must be one of {', '.join(ISOLATION_MODES)}, got {mode!r}")
    if mode == "sandbox":
        problem = sandbox_problem()
        if problem is not None:
            raise UsageError(f"--isolation sandbox cannot start here: {problem}; use --isolation process")


def resolve_isolation(mode: str) -> str:
    """The mode a run uses: ``auto`` becomes ``sandbox`` where it starts, else ``process`` (said once)."""
    check_isolation(mode)
    if mode != "auto":
        return mode
    problem = sandbox_problem()
    if problem is None:
        _log.info("isolation: sandbox (bubblewrap works here; --isolation process to run without it)")
        return "sandbox"
    _log.warning("isolation: process, not the sandbox: %s. A defense can read any file this user can", problem)
    return "process"


# --------------------------------------------------------------------------- the harness's side

PRIVATE_PREFIX = "bdbench-defense-"


@contextlib.contextmanager
def private_folder() -> Iterator[Path]:
    """A folder only this user can read, named after this process (``bdbench-defense-<pid>-…`` in
    the temporary folder), removed when the call ends; :func:`remove_orphans` removes those that a
    killed run left behind."""
    folder = Path(tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{os.getpid()}-"))
    os.chmod(folder, 0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_orphans(root: Path | None = None) -> list[Path]:
    """Remove the private folders whose process is gone (a run killed during a defense: they hold
    a backdoored model and granted data); returns what was removed."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for folder in root.glob(PRIVATE_PREFIX + "*"):
        pid = folder.name[len(PRIVATE_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)) or not folder.is_dir() or folder.stat().st_uid != os.getuid():
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_inputs(folder: Path, job: DefenseJob, model: torch.nn.Module, tokenizer, grant: Grant,
                 texts: Sequence[str] | None = None) -> None:
    """The child's inputs: spec, granted assets, backdoored weights, tokenizer, pre-trained
    weights if granted, and (input detectors and correctors only) the bare texts to score."""
    from ..model.victims import save_model

    (folder / "out").mkdir()
    (folder / _SPEC).write_text(json.dumps(dataclasses.asdict(job), sort_keys=True), encoding="utf-8")
    (folder / _ASSETS).write_text(json.dumps(grant.assets_json()), encoding="utf-8")
    if texts is not None:
        (folder / _INPUTS).write_text(json.dumps({"texts": list(texts)}), encoding="utf-8")
    if job.kind != "robust_training":  # a robust trainer never receives the attacked model
        save_model(model, folder / "model")
    tokenizer.save_pretrained(str(folder / "tokenizer"))
    if grant.pretrained is not None:
        save_model(grant.pretrained(), folder / "pretrained")
    for name in ("model", "pretrained"):
        config_file = folder / name / "config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
            config.pop("_name_or_path", None)
            config_file.write_text(json.dumps(config, indent=1, sort_keys=True), encoding="utf-8")


def _child_env() -> dict[str, str]:
    """The environment a defense's process gets: this one, with this interpreter's import path
    (so plugins import as they do here)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and Path(p).exists())
    return env


class DefenseServer:
    """A clean interpreter that forks one child per defense.

    Started once per harness (``python -m benchmark.harness.isolation --serve``: a fresh interpreter, so
    nothing of the harness is in it), it imports torch, transformers and the plugin API, then
    forks a child for each request, so a defense's process starts in milliseconds instead of
    paying those imports each time. The child runs :func:`child_main`; the server reports its
    exit status. Where ``os.fork`` is missing, each defense gets a fresh interpreter instead.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._ready = False

    def prestart(self) -> None:
        """Start the server without waiting for it, so that its imports overlap the caller's work
        (a worker starts it while the scenario loads); :meth:`run` waits for it if need be."""
        if hasattr(os, "fork") and (self._proc is None or self._proc.poll() is not None):
            self._proc = subprocess.Popen([sys.executable, "-m", "benchmark.harness.isolation", "--serve"],
                                          env=_child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True, bufsize=1)
            self._ready = False

    def _wait_ready(self) -> None:
        if not self._ready:
            if self._proc.stdout.readline().strip() != "ready":
                self._proc.kill()
                self._proc = None
                raise DefenseProcessError("the defense server did not start (python -m benchmark.harness.isolation --serve)")
            self._ready = True

    def run(self, folder: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
        """Run the child on ``folder``; past ``timeout_s`` the server and its child are killed
        (the next call starts a new server) and :class:`DefenseTimeoutError` is raised."""
        if not hasattr(os, "fork"):
            try:
                return subprocess.run([sys.executable, "-m", "benchmark.harness.isolation", str(folder)],
                                      env=_child_env(), check=False, timeout=timeout_s).returncode
            except subprocess.TimeoutExpired:
                raise DefenseTimeoutError(_timeout_message(timeout_s)) from None
        self.prestart()  # no-op while a server is alive
        self._wait_ready()
        request = {"folder": str(folder), "environ": dict(os.environ)}  # the environment of now
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            ready, _, _ = select.select([self._proc.stdout], [], [], timeout_s)
            if not ready:
                self._proc.kill()  # the child dies with it (PR_SET_PDEATHSIG)
                self.close()
                raise DefenseTimeoutError(_timeout_message(timeout_s))
            reply = self._proc.stdout.readline()
        except (BrokenPipeError, OSError):
            reply = ""
        if not reply.strip():
            self.close()
            raise DefenseProcessError("the defense server died while running a defense")
        return int(reply)

    def close(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc = None


def _die_with_parent() -> None:
    """On Linux, ask the kernel to kill this process when its parent dies (best effort), so that a
    killed harness leaves no defense running on."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def serve() -> None:
    """The server loop (see :class:`DefenseServer`): one JSON request a line, one exit status a line."""
    _die_with_parent()
    configure_process_logging(f"defense {os.getpid()}")
    for module in _PRELOAD:
        importlib.import_module(module)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a plugin prints goes to stderr, never into the protocol
    print("ready", file=protocol, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the defense's process
            code = 0
            try:
                _die_with_parent()
                os.close(0)
                protocol.close()
                child_main(request["folder"], request["environ"])
            except BaseException:  # noqa: BLE001 - child_main never raises; this is the last guard
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), file=protocol, flush=True)


def _run_forwarding_stderr(command: list[str], timeout_s: float) -> tuple[int, str]:
    """Run ``command``, passing each line it writes to stderr on to ours (its progress lines) and
    keeping the last 2000 characters for the error message; killed past ``timeout_s``."""
    import threading

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tail: list[str] = []

    def forward() -> None:
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace")
            sys.stderr.write(line)
            tail.append(line)
            del tail[:-40]

    reader = threading.Thread(target=forward, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise DefenseTimeoutError(_timeout_message(timeout_s)) from None
    finally:
        reader.join(timeout=5)
    return proc.returncode, "".join(tail)[-2000:]


def _timeout_message(timeout_s: float) -> str:
    return (f"the defense ran past its time limit of {timeout_s:g} s and was killed "
            "(--defense-timeout SECONDS sets the limit)")


def run_isolated(folder: Path, mode: str, server: DefenseServer, hidden: Sequence[str] = (), *,
                 defense_module: str = "", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Run the child on ``folder`` and wait for it, at most ``timeout_s``; the result is in
    ``folder/result.json``. ``defense_module``: the module the sandbox must show besides bdbench."""
    stderr = ""
    if mode == "sandbox":
        argv = [sys.executable, "-m", "benchmark.harness.isolation", str(folder)]
        modules = ["benchmark", *BUILTIN_PLUGIN_PACKAGES, *([defense_module] if defense_module else [])]
        command = sandbox_command(folder, argv, modules=modules, hidden=list(hidden))
        exitcode, stderr = _run_forwarding_stderr(command, timeout_s)
    else:
        exitcode = server.run(folder, timeout_s)
    if not (folder / _RESULT).is_file():
        how = f"was killed by signal {-exitcode}" if exitcode and exitcode < 0 else f"exited with code {exitcode}"
        raise DefenseProcessError(f"the defense's process {how} before returning a model"
                                  + (f": {stderr.strip()}" if stderr.strip() else ""))


def read_result(folder: Path, defense_name: str) -> DefenseAnswer:
    """The child's answer (its models loaded from safetensors), or the defense's error as a
    :class:`PluginError` carrying the child's traceback."""
    from ..model.victims import load_classifier

    result = json.loads((folder / _RESULT).read_text(encoding="utf-8"))
    if result["status"] != "ok":
        error = PluginError(f"defense {defense_name!r} failed: {result['error']}")
        error.__traceback_text__ = result.get("traceback", "")  # type: ignore[attr-defined]
        raise error
    spec = json.loads((folder / _SPEC).read_text(encoding="utf-8"))
    if spec["kind"] not in ("purification", "robust_training"):
        return DefenseAnswer(None, {}, result["info"], result["phase_costs"], result["output"])
    out = folder / "out"
    model = load_classifier(out / "model", spec["num_labels"])
    aux = {name: load_classifier(out / "aux" / name, spec["num_labels"]) for name in result["aux"]}
    return DefenseAnswer(model, aux, result["info"], result["phase_costs"])


# --------------------------------------------------------------------------- the child's side

def _build_context(folder: Path, job: DefenseJob, tokenizer) -> DefenseContext:
    """The defense's context from its folder: the same :meth:`Grant.context` the harness's own
    process builds with ``isolation="none"``."""
    from ..model.runtime import Runtime
    from ..model.training import TrainConfig
    from ..model.victims import load_classifier

    assets = json.loads((folder / _ASSETS).read_text(encoding="utf-8"))
    pretrained_dir = folder / "pretrained"
    pretrained = (lambda: load_classifier(pretrained_dir, job.num_labels)) if pretrained_dir.is_dir() else None
    grant = Grant.from_assets_json(assets, pretrained)
    return grant.context(defense_name=job.defense_name, requires=frozenset(job.requires), tokenizer=tokenizer,
                         runtime=Runtime(torch.device(job.device), job.precision),  # type: ignore[arg-type]
                         max_length=job.max_length, seed=job.seed, train_config=TrainConfig(**job.train_config))


def _json_ready(value):
    return json.loads(json.dumps(value, default=str, allow_nan=True))


def child_main(folder_text: str, environ: dict[str, str] | None = None) -> None:
    """The child process: load the inputs, run the defense, write its answer (never raises)."""
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
    from ..model.victims import load_classifier, load_tokenizer, model_type_of, save_model
    from ..plugins.params import resolve_params

    folder = Path(folder_text)
    configure_process_logging(f"defense {os.getpid()}")
    try:
        job = DefenseJob(**json.loads((folder / _SPEC).read_text(encoding="utf-8")))
        torch.set_num_threads(max(1, job.threads))
        cls = import_class(job.defense_class)
        defense = cls(resolve_params(job.defense_name, cls.Params, job.params))
        if job.kind == "robust_training":  # no attacked model: it trains from ctx.pretrained_model()
            model = None
            tokenizer = load_tokenizer(folder / "tokenizer", model_type=model_type_of(folder / "pretrained"))
        else:
            model = load_classifier(folder / "model", job.num_labels)
            tokenizer = load_tokenizer(folder / "tokenizer", model_type=model.config.model_type)
        ctx = _build_context(folder, job, tokenizer)
        inputs = folder / _INPUTS
        texts = json.loads(inputs.read_text(encoding="utf-8"))["texts"] if inputs.is_file() else None
        answer = apply_defense(defense, model, ctx, texts)
        result_doc = {"status": "ok", "info": _json_ready(answer.info), "phase_costs": answer.phase_costs}
        if answer.model is not None:
            save_model(answer.model, folder / "out" / "model")
            for name, aux_model in answer.aux_models.items():
                save_model(aux_model, folder / "out" / "aux" / name)
            result_doc["aux"] = sorted(answer.aux_models)
        else:
            result_doc["output"] = answer.output
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt fail the cell too
        result_doc = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()[-4000:]}
    _write_result(folder, result_doc)


def _write_result(folder: Path, result_doc: dict) -> None:
    tmp = folder / (_RESULT + ".tmp")
    tmp.write_text(json.dumps(result_doc, allow_nan=True), encoding="utf-8")
    os.replace(tmp, folder / _RESULT)


if __name__ == "__main__":  # python -m benchmark.harness.isolation (--serve | FOLDER)
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        child_main(sys.argv[1])
