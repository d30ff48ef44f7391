"""Cost measurement per phase (an attack, a defense, an evaluation).

``with costs.phase("defense", runtime) as cost:`` records wall seconds, process CPU seconds,
peak host RSS of the phase, and on CUDA the device time between CUDA events and the peak
allocated device memory (reset at the start of the phase). On a machine without CUDA the GPU
fields are ``None`` (shown empty), never zero. The training loop and ``predict`` report the
samples and real tokens they process through :func:`count`, which adds to every phase that is
open.

**Peak RSS of a phase** is the largest resident set size the process reached while the phase was
open: what the phase itself allocated plus what the process already held when it began (the
interpreter, torch, models loaded earlier). It is not the process's lifetime peak: a phase that
follows a hungrier one reports its own, lower figure. On Linux it is read from the kernel's
high-water mark (``VmHWM``), which is reset to the current RSS at the start of every phase by
writing ``5`` to ``/proc/self/clear_refs``; every reset and every phase end first folds the mark
reached so far into all open phases, so nested phases stay exact. Before the reset, garbage is
collected and, under glibc, ``malloc_trim(0)`` hands freed heap pages back to the kernel: glibc
keeps memory an earlier phase freed (an attack's activations, say) resident, and without the trim
that history would be counted as the new phase's peak. Where the mark cannot be reset
(no ``/proc``, or a kernel that refuses the write), a thread samples the RSS every 10 ms instead,
which can miss a spike shorter than that.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator

import torch

_OPEN: list[PhaseCost] = []
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclasses.dataclass
class PhaseCost:
    """What one phase cost. GPU fields are None without CUDA."""

    phase: str
    device: str = "cpu"
    wall_s: float = 0.0
    cpu_s: float = 0.0
    gpu_s: float | None = None
    peak_gpu_mb: float | None = None
    peak_rss_mb: float = 0.0
    train_samples: int = 0
    train_tokens: int = 0
    eval_samples: int = 0
    eval_tokens: int = 0

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for key in ("wall_s", "cpu_s", "gpu_s", "peak_gpu_mb", "peak_rss_mb"):
            if out[key] is not None:
                out[key] = round(out[key], 3)
        return out


def _status_mb(field: str) -> float | None:
    """``VmRSS``/``VmHWM`` of this process in MiB, or None without /proc."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError):
        return None
    return None


def _reset_high_water_mark() -> bool:
    """Reset the kernel's VmHWM to the current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class _HighWaterMark:
    """Peak RSS per open phase from the kernel's resettable high-water mark (module docstring)."""

    def __init__(self):
        self.peaks: dict[int, float] = {}

    def fold(self) -> None:
        mark = _status_mb("VmHWM") or current_rss_mb()
        for key in self.peaks:
            self.peaks[key] = max(self.peaks[key], mark)

    def open(self, key: int) -> bool:
        self.fold()  # the mark so far belongs to the phases already open
        if not _reset_high_water_mark():
            return False
        self.peaks[key] = current_rss_mb()
        return True

    def close(self, key: int) -> float:
        self.fold()
        return self.peaks.pop(key)


_HWM = _HighWaterMark()


def _glibc_malloc_trim():
    """glibc's ``malloc_trim``, or None under another C library (musl, macOS, Windows)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the symbols the process already has: its C library's
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _glibc_malloc_trim() if sys.platform.startswith("linux") else None


def release_free_memory() -> None:
    """Collect garbage and return the C heap's free pages to the kernel, so that the resident set
    holds what is alive rather than what earlier work freed (module docstring)."""
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * _PAGE / 2**20
    except OSError:  # not Linux: the lifetime peak is the best available figure
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


class _RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.01):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = current_rss_mb()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.peak = max(self.peak, current_rss_mb())

    def stop(self) -> float:
        self._halt.set()
        self.join()
        return max(self.peak, current_rss_mb())


log = logging.getLogger(__name__)


def _interactive() -> bool:
    """Progress bars are shown (an interactive terminal, BDBENCH_PROGRESS not 0)."""
    return os.environ.get("BDBENCH_PROGRESS", "1") != "0" and sys.stderr.isatty()


def _silent() -> bool:
    """No progress of any kind (``--quiet``, or BDBENCH_PROGRESS=0)."""
    return os.environ.get("BDBENCH_PROGRESS", "1") == "0"


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_process_logging(tag: str) -> None:
    """Log INFO lines (WARNING only under BDBENCH_PROGRESS=0) to stderr in a process bdbench
    started (a worker, a defense's process), each line tagged, unless logging is set up already:
    phase and progress lines then reach the driver's terminal or file from every executor."""
    root = logging.getLogger()
    if root.handlers:
        return
    logging.basicConfig(level=logging.WARNING if _silent() else logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s [{tag}] %(name)s: %(message)s", datefmt="%H:%M:%S")


def heartbeat_s() -> float:
    """Seconds between a long loop's progress lines where no bar is shown (BDBENCH_HEARTBEAT_S, default 30)."""
    try:
        return max(0.0, float(os.environ.get("BDBENCH_HEARTBEAT_S", "30")))
    except ValueError:
        return 30.0


@contextlib.contextmanager
def phase(name: str, device: torch.device | str = "cpu") -> Iterator[PhaseCost]:
    """Measure the enclosed block (see the module docstring). Where no progress bar is shown (CI,
    ``nohup``, a pipe), the phase's start and end are logged at INFO, so that a long run is never
    silent for minutes."""
    device = torch.device(device)
    cost = PhaseCost(name, device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start_event.record()
    sampler = None
    release_free_memory()
    if not _HWM.open(id(cost)):
        sampler = _RssSampler()
        sampler.start()
    quiet = _interactive() or _silent()
    if not quiet:
        log.info("%s: started", name)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    _OPEN.append(cost)
    try:
        yield cost
    finally:
        _OPEN.remove(cost)
        if use_cuda:
            end_event.record()
            torch.cuda.synchronize(device)
            cost.gpu_s = start_event.elapsed_time(end_event) / 1000.0
            cost.peak_gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20
        cost.wall_s = time.perf_counter() - wall0
        cost.cpu_s = time.process_time() - cpu0
        cost.peak_rss_mb = sampler.stop() if sampler is not None else _HWM.close(id(cost))
        if not quiet:
            log.info("%s: done in %.1f s (CPU %.1f s, peak RSS %.0f MB)", name, cost.wall_s, cost.cpu_s,
                     cost.peak_rss_mb)


def count(samples: int, tokens: int, training: bool = True) -> None:
    """Add processed samples and tokens to every open phase."""
    for cost in _OPEN:
        if training:
            cost.train_samples += samples
            cost.train_tokens += tokens
        else:
            cost.eval_samples += samples
            cost.eval_tokens += tokens


def progress(items: Iterable, desc: str) -> Iterable:
    """A progress bar on interactive terminals; elsewhere (a pipe, a file, CI) a line at INFO at
    most every :func:`heartbeat_s` seconds saying how far the loop is, so that no phase is silent
    for minutes; nothing with BDBENCH_PROGRESS=0 (``--quiet``)."""
    if _silent():
        return items
    if not _interactive():
        return _heartbeat(items, desc)
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False, dynamic_ncols=True)


def _heartbeat(items: Iterable, desc: str) -> Iterator:
    total = len(items) if hasattr(items, "__len__") else None
    every = heartbeat_s()
    start = last = time.perf_counter()
    for done, item in enumerate(items):
        now = time.perf_counter()
        if done and now - last >= every:
            last = now
            log.info("%s: %d%s steps, %.0f s", desc, done, f"/{total}" if total else "", now - start)
        yield item


SUMMED = ("wall_s", "cpu_s", "gpu_s", "train_samples", "train_tokens")  # over a defense's phases
PEAKS = ("peak_gpu_mb", "peak_rss_mb")  # the maximum over its phases


def sum_phases(phase_costs: dict[str, dict]) -> dict:
    """One cost over several phases (:meth:`PhaseCost.as_dict` each): times and counts summed,
    peaks the maximum, the first phase's device; None where no phase measured a figure."""
    phases = list(phase_costs.values())
    total = {}
    for key in SUMMED:
        values = [p.get(key) for p in phases if p.get(key) is not None]
        total[key] = sum(values) if values else None
    for key in PEAKS:
        values = [p.get(key) for p in phases if p.get(key) is not None]
        total[key] = max(values) if values else None
    total["device"] = phases[0].get("device") if phases else None
    return total
