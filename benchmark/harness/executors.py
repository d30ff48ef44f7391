"""Executors: where cells run. ``local`` (this process), ``process`` (N worker processes on this
machine) and ``ray`` (Ray tasks, on this machine or a cluster).

Every executor receives the cells as an iterator that claims each cell as it is drawn (see
:func:`benchmark.harness.runner.run_cells`), and yields one record per cell as soon as the cell
finishes, so that the runner writes it to the records file at once: a run stopped while a long cell
is in flight loses only the cells still computing, never one that finished behind it. Pooled
executors therefore write the file in the order cells finish (a local run's is the draw order);
``run_cells`` returns the records in draw order, and the leaderboard reads the last record of
each cell whatever its place in the file.

The pooled executors share one scheduler (:class:`PooledExecutor`):

1. a scenario (clean reference + attacked model) is built once, by a *build* task, and every cell
   of it waits for that build; cells of different scenarios run side by side;
2. a scenario whose build fails fails its cells with the build's error, without rebuilding;
3. a worker that dies (killed, out of memory) takes down the tasks in flight (a broken process
   pool fails them all); each is retried once, alone, on a fresh worker, so that only the task
   that kills its worker dies again, and it gets a ``failed`` record saying so.

Workers read and write the artifact store (``--store``); on a cluster it must be a folder every
worker sees (a shared file system; :mod:`benchmark.harness.store` states its guarantees there). Workers
load the plugin registry themselves: the built-ins, the entry points and ``HarnessConfig.plugins``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator

import torch

from ..base.costs import configure_process_logging
from ..base.errors import UsageError
from .cells import failed_record
from .harness import Harness

log = logging.getLogger(__name__)


def default_threads(workers: int) -> int:
    """Torch threads per worker: this machine's cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class LocalExecutor:
    """Runs cells one after another in this process (``threads``: torch threads, 0 = torch's default)."""

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads

    def run(self, cells: Iterator, config, registry) -> Iterator[dict]:
        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        harness = Harness(config, registry)
        harness.warm()
        try:
            for cell in cells:
                yield harness.run_cell(cell)
        finally:
            harness.close()
            torch.set_num_threads(before)


# --------------------------------------------------------------------------- what a worker runs

_WORKER: dict = {}  # this worker process's harness, made by _init_worker (never in the driver)


def _init_worker(config, threads: int) -> None:
    configure_process_logging(f"worker {os.getpid()}")
    torch.set_num_threads(threads)
    _WORKER.clear()
    _WORKER["harness"] = Harness(config)
    _WORKER["harness"].warm()


def _init_pool_worker(config, threads: int, driver: int) -> None:
    """A pool worker's initializer: end with the driver (its process id), then load the harness."""
    exit_when_orphaned(driver)
    _init_worker(config, threads)


def exit_when_orphaned(parent: int, interval_s: float = 1.0) -> threading.Thread:
    """End this process once ``parent`` is no longer its parent (checked every ``interval_s`` by a
    daemon thread; at once when it has already gone).

    A driver killed by a signal runs no clean-up, and the standard library's pool workers would
    finish the task in hand (a build can take many minutes) beside the run that resumes it; their
    defense servers end with them, on the end of their input. The parent's id is passed in, not
    read here, so that a driver that dies while the worker starts is noticed too.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os._exit(1)

    watcher = threading.Thread(target=watch, name="exit-when-orphaned", daemon=True)
    watcher.start()
    return watcher


def _started() -> None:
    """A no-op task: submitting one per worker makes the pool start every worker at once."""


def _harness(config, threads: int):
    if _WORKER.get("config") != (config, threads):  # Ray reuses worker processes across runs
        _init_worker(config, threads)
        _WORKER["config"] = (config, threads)
    return _WORKER["harness"]


def build_task(cell, config=None, threads: int = 0) -> str | None:
    """Build (or load) the cell's scenario into the store; the error text if it fails."""
    harness = _harness(config, threads) if config is not None else _WORKER["harness"]
    try:
        harness.scenario(cell)
        return None
    except (Exception, SystemExit) as exc:
        return f"{type(exc).__name__}: {exc}"


def cell_task(cell, config=None, threads: int = 0) -> dict:
    harness = _harness(config, threads) if config is not None else _WORKER["harness"]
    return harness.run_cell(cell)


# --------------------------------------------------------------------------- the shared scheduler

class WorkerDied(Exception):
    """A task's worker process ended before the task did."""


@dataclasses.dataclass(eq=False)
class _Task:
    kind: str  # "build" or "cell"
    cell: object
    order: int  # draw order of the cell (for cells) or of the scenario's first cell (for builds)
    attempt: int = 0


class PooledExecutor:
    """Scenario-aware scheduling over N slots; subclasses say how to submit and wait."""

    retries = 1

    def __init__(self, workers: int = 2, threads: int = 0) -> None:
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        self.workers = workers
        self.threads = threads or default_threads(workers)

    # -- what a subclass provides
    def _open(self, config) -> None: ...

    def _close(self) -> None: ...

    def _submit(self, task: _Task, config): ...

    def _wait(self, handles) -> list: ...

    def _result(self, handle):
        """The task's return value; raises :class:`WorkerDied` when its worker died."""

    # -- the scheduler
    def run(self, cells: Iterator, config, registry) -> Iterator[dict]:
        source = iter(cells)
        exhausted = False
        scenarios: dict[tuple, str | None] = {}  # key -> None while building, "" when ready, else the error
        waiting: dict[tuple, list[_Task]] = collections.defaultdict(list)
        ready: collections.deque[_Task] = collections.deque()
        inflight: dict = {}
        retries: collections.deque[_Task] = collections.deque()  # run one at a time, nothing beside them
        solo = False
        finished: list[dict] = []  # records not yet handed back
        drawn = 0
        self._open(config)
        try:
            while True:
                # -- fill free slots: retries alone, then ready cells, then draw more cells
                if retries and not inflight:
                    task = retries.popleft()
                    inflight[self._submit(task, config)] = task
                    solo = True
                while len(inflight) < self.workers and not solo and not retries:
                    if ready:
                        task = ready.popleft()
                        inflight[self._submit(task, config)] = task
                        continue
                    if exhausted:
                        break
                    cell = next(source, None)
                    if cell is None:
                        exhausted = True
                        break
                    task, drawn = _Task("cell", cell, drawn), drawn + 1
                    key = cell.scenario_key()
                    if key not in scenarios:
                        scenarios[key] = None
                        waiting[key].append(task)
                        build = _Task("build", cell, task.order)
                        inflight[self._submit(build, config)] = build
                    elif scenarios[key] is None:
                        waiting[key].append(task)
                    elif scenarios[key] == "":
                        ready.append(task)
                    else:
                        finished.append(failed_record(cell, config, scenarios[key]))
                if not inflight and not ready and not retries:
                    if exhausted:
                        break
                    continue
                if not inflight:
                    continue
                # -- collect what finished
                for handle in self._wait(list(inflight)):
                    task = inflight.pop(handle)
                    solo = solo and bool(inflight)
                    try:
                        value = self._result(handle)
                    except WorkerDied as died:
                        if task.attempt < self.retries:
                            log.warning("a worker died running %s of cell %s (%s); retrying once", task.kind,
                                        task.order, died)
                            retries.append(dataclasses.replace(task, attempt=task.attempt + 1))
                            continue
                        value = (f"WorkerDied: the worker process died twice ({died})" if task.kind == "build"
                                 else failed_record(task.cell, config,
                                                    f"WorkerDied: the worker process died twice running this cell "
                                                    f"({died})"))
                    if task.kind == "build":
                        key = task.cell.scenario_key()
                        scenarios[key] = value or ""
                        for waiter in waiting.pop(key, []):
                            if value:
                                finished.append(failed_record(waiter.cell, config, value))
                            else:
                                ready.append(waiter)
                    else:
                        finished.append(value)
                # -- hand records back as they finish
                yield from finished
                finished.clear()
            yield from finished
        finally:
            self._close()


class ProcessExecutor(PooledExecutor):
    """N worker processes on this machine (the standard library's pool, spawn start method).

    A worker exits once its driver is gone (killed, even by SIGKILL), rather than finishing its task
    in hand beside the run that resumes it (:func:`exit_when_orphaned`).
    """

    def _open(self, config) -> None:
        self._config = config
        self._pool = self._new_pool()
        # The pool starts a worker per submission that finds none idle: start them all now, so that
        # every worker's imports, harness and defense server get ready while the first build runs.
        for _ in range(self.workers):
            self._pool.submit(_started)

    def _new_pool(self):
        import concurrent.futures
        import multiprocessing

        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_pool_worker, initargs=(self._config, self.threads, os.getpid()))

    def _submit(self, task: _Task, config):
        import concurrent.futures.process

        fn = build_task if task.kind == "build" else cell_task
        try:
            return self._pool.submit(fn, task.cell)
        except concurrent.futures.process.BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()  # a dead worker broke the pool: the retries get a fresh one
            return self._pool.submit(fn, task.cell)

    def _wait(self, handles) -> list:
        import concurrent.futures

        done, _ = concurrent.futures.wait(handles, return_when=concurrent.futures.FIRST_COMPLETED)
        return list(done)

    def _result(self, handle):
        import concurrent.futures.process

        try:
            return handle.result()
        except concurrent.futures.process.BrokenProcessPool as exc:
            raise WorkerDied(str(exc) or "the process pool broke") from None

    def _close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(PooledExecutor):
    """Each scenario build and each cell is a Ray task with declared resources (``threads`` CPUs,
    one GPU on ``--device cuda``). ``ray.init()`` starts a local cluster unless ``address`` names
    an existing one (``--ray-address``)."""

    def __init__(self, workers: int = 2, threads: int = 0, address: str | None = None) -> None:
        super().__init__(workers, threads)
        self.address = address
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--executor ray needs Ray, an optional extra: pip install -e \".[ray]\" "
                             "(or pip install 'ray[default]')") from None

    def _open(self, config) -> None:
        import ray

        self._started = False
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers * self.threads, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            self._started = True
        gpus = 1 if config.device.startswith("cuda") else 0
        self._tasks = {kind: ray.remote(fn).options(num_cpus=self.threads, num_gpus=gpus, max_retries=0)
                       for kind, fn in (("build", build_task), ("cell", cell_task))}

    def _submit(self, task: _Task, config):
        return self._tasks[task.kind].remote(task.cell, config, self.threads)

    def _wait(self, handles) -> list:
        import ray

        done, _ = ray.wait(handles, num_returns=1)
        return done

    def _result(self, handle):
        import ray

        try:
            return ray.get(handle)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.LocalRayletDiedError) as exc:
            raise WorkerDied(type(exc).__name__) from None

    def _close(self) -> None:
        import ray

        if self._started:
            with contextlib.suppress(Exception):
                ray.shutdown()


EXECUTORS = ("local", "process", "ray")  # --executor's choices


def make_executor(name: str, workers: int = 1, threads: int = 0, ray_address: str | None = None):
    """The executor called ``name`` (a :class:`UsageError` naming the choices otherwise)."""
    if name not in EXECUTORS:
        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if threads < 0:
        raise UsageError(f"--threads must be at least 1 (or 0 for the default), got {threads}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if name == "local" and workers > 1:
        raise UsageError(f"--workers {workers} needs --executor process or ray (local runs one cell at a time)")
    start = time.perf_counter()
    if name == "local":
        executor = LocalExecutor(threads=threads)
    elif name == "process":
        executor = ProcessExecutor(workers=workers, threads=threads)
    else:
        executor = RayExecutor(workers=workers, threads=threads, address=ray_address)
    log.debug("executor %s ready in %.1f s", name, time.perf_counter() - start)
    return executor
