"""The bubblewrap sandbox a defense's process runs in (``--isolation sandbox``): deny by default.

The child sees a file system built from an allow-list, never the machine's:

* the system's libraries and programs, read-only (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, the
  dynamic loader's cache);
* the interpreter's prefixes (``sys.prefix``, ``sys.base_prefix``) and every site directory on
  ``sys.path``, read-only: torch, transformers and the other installed packages;
* the code the child imports, read-only: the ``benchmark`` package, the built-in plugin packages
  (``attacks``, ``defenses``) and the defense's own top-level package or module, each bound alone (never the checkout around it, which may hold ``--out``,
  the store or data), their parents first on ``PYTHONPATH``;
* its private folder, the only writable place, under an empty ``/tmp``;
* a fresh ``/dev`` and, in a new PID namespace, a fresh ``/proc`` that shows no process outside the
  sandbox (so no parent's command line, working folder or environment).

Inside what is bound, the run's secrets are covered by empty tmpfs mounts (``hidden``: the store,
the data folders, ``--out``, and the victims' own folders, so that the pre-trained weights in an
installed victim package are not readable; a defense that declared ``pretrained_weights`` gets its
copy in its private folder). The environment is cleared but for a short list (:data:`ENV_KEEP`);
every namespace bubblewrap can unshare is unshared, the network included. Nothing else exists in
the sandbox: no home folder, no ``/opt``, ``/srv``, ``/mnt`` or ``/var``, no other run's files.

:func:`sandbox_problem` starts the sandbox once (importing torch and bdbench in it) and says why it
cannot run, or None; ``--isolation auto`` uses it to choose the sandbox where it works.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/etc/ld.so.cache",
                "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives", "/etc/localtime")
ENV_KEEP = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM", "CUDA_VISIBLE_DEVICES",
            "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "BDBENCH_PROGRESS", "BDBENCH_HEARTBEAT_S")


def _is_site_dir(path: Path) -> bool:
    return path.name in ("site-packages", "dist-packages") or path.suffix == ".zip"


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def code_paths(modules: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """(what to bind, import roots) for the top-level packages or modules ``modules``: each
    package's folder (or the module's file) and its parent folder, for ``PYTHONPATH``."""
    binds: list[Path] = []
    roots: list[Path] = []
    for name in dict.fromkeys(m.split(".")[0] for m in modules):
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        places = [Path(p) for p in (spec.submodule_search_locations or [])] or (
            [Path(spec.origin)] if spec.origin and spec.origin not in ("built-in", "frozen") else [])
        for place in places:
            binds.append(place.resolve())
            roots.append(place.resolve().parent)
    return binds, list(dict.fromkeys(roots))


def visible_paths() -> list[Path]:
    """The interpreter's prefixes and the site directories on ``sys.path`` (resolved, existing)."""
    prefixes = [Path(p).resolve() for p in dict.fromkeys((sys.base_prefix, sys.prefix, sys.exec_prefix))]
    paths = list(prefixes)
    for entry in sys.path:
        if not entry:
            continue
        path = Path(entry).resolve()
        if path.exists() and _is_site_dir(path) and not _inside(path, paths):
            paths.append(path)
    return [p for p in paths if p.exists()]


def sandbox_command(folder: Path, argv: Sequence[str], *, modules: Sequence[str], hidden: Sequence[str] = ()) -> list[str]:
    """The bubblewrap command that runs ``argv`` (this interpreter first) in ``folder`` (module docstring)."""
    cmd = ["bwrap", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for system in SYSTEM_PATHS:
        cmd += ["--ro-bind-try", system, system]
    bound = visible_paths()
    code, roots = code_paths(modules)
    for path in [*bound, *code]:
        cmd += ["--ro-bind", str(path), str(path)]
    for path in hidden:
        if path:
            target = Path(path).expanduser().resolve()
            if target.is_dir() and _inside(target, [*bound, *code]):
                cmd += ["--tmpfs", str(target)]  # a secret inside what is shown: covered
    cmd += ["--bind", str(folder), str(folder), "--chdir", str(folder),
            "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    env = {key: os.environ[key] for key in ENV_KEEP if key in os.environ}
    env.setdefault("PATH", "/usr/bin:/bin")
    env.update(HOME=str(folder), TMPDIR=str(folder), PYTHONNOUSERSITE="1",
               PYTHONPATH=os.pathsep.join(str(root) for root in roots))
    for key, value in sorted(env.items()):
        cmd += ["--setenv", key, value]
    return [*cmd, *argv]


@functools.cache
def sandbox_problem() -> str | None:
    """Why the sandbox cannot run a defense here (no bubblewrap, no user namespaces, an import that
    fails inside it), or None when it can: it is started once, importing torch and bdbench."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (the 'bwrap' command; Debian/Ubuntu: apt-get install bubblewrap)"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bdbench-probe-") as folder:
        argv = [sys.executable, "-c", "import torch, benchmark.harness.isolation"]
        try:
            done = subprocess.run(sandbox_command(Path(folder), argv, modules=["benchmark"]), capture_output=True,
                                  text=True, timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bubblewrap did not start: {exc}"
    if done.returncode != 0:
        return f"bubblewrap could not run bdbench ({(done.stderr or done.stdout).strip()[-300:]})"
    return None
