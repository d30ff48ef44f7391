import os
import subprocess
import sys

import pytest
import torch

from benchmark.base import costs
from benchmark.model.runtime import KERNEL_CACHES, cpu_has_bf16, resolve_runtime


def test_cpu_phase_measures_wall_cpu_rss_and_leaves_gpu_empty():
    with costs.phase("work", "cpu") as cost:
        x = torch.randn(512, 512)
        for _ in range(20):
            x = torch.tanh(x @ x)
        blob = bytearray(64 * 2**20)  # 64 MiB held during the phase
        costs.count(samples=3, tokens=30)
        costs.count(samples=2, tokens=10, training=False)
        del blob
    assert cost.wall_s > 0 and cost.cpu_s > 0
    assert cost.peak_rss_mb > 64
    assert cost.gpu_s is None and cost.peak_gpu_mb is None and cost.device == "cpu"
    assert (cost.train_samples, cost.train_tokens, cost.eval_samples, cost.eval_tokens) == (3, 30, 2, 10)


def test_counts_reach_nested_phases_only_while_open():
    with costs.phase("outer") as outer:
        with costs.phase("inner") as inner:
            costs.count(samples=1, tokens=1)
        costs.count(samples=1, tokens=1)
    costs.count(samples=5, tokens=5)
    assert (inner.train_samples, outer.train_samples) == (1, 2)


def test_auto_runtime_on_this_machine():
    runtime = resolve_runtime("auto", "auto")
    assert runtime.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_runtime("cpu", "fp32").precision == "fp32"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_phase_measures_device_time_and_memory():
    device = torch.device("cuda")
    with costs.phase("gpu-work", device) as cost:
        x = torch.randn(4096, 4096, device=device)  # 64 MiB
        for _ in range(10):
            x = torch.tanh(x @ x)
    assert cost.gpu_s is not None and cost.gpu_s > 0
    assert cost.peak_gpu_mb is not None and cost.peak_gpu_mb >= 64
    assert cost.device == torch.cuda.get_device_name(device)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_step_under_bf16(tiny_model, tiny_tokenizer, demo_small):
    from benchmark.model.encoding import encode
    from benchmark.model.runtime import Runtime
    from benchmark.model.training import TrainConfig, accuracy, train

    runtime = Runtime(torch.device("cuda"), "bf16")
    model = tiny_model()
    data = encode(tiny_tokenizer, demo_small.train, 64)
    with costs.phase("train", runtime.device) as cost:
        train(model, data, TrainConfig(epochs=8, lr=3e-3, batch_size=16), runtime, seed=0)
    assert accuracy(model, encode(tiny_tokenizer, demo_small.test, 64), runtime) > 0.6
    assert cost.gpu_s > 0 and cost.peak_gpu_mb > 0


def test_phase_peak_rss_is_the_phases_own_not_the_process_history():
    with costs.phase("hungry") as hungry:
        blob = bytearray(200 * 2**20)  # zero-filled, so resident
        del blob
    with costs.phase("outer") as outer:
        blob = bytearray(80 * 2**20)  # before the inner phase resets the mark: still the outer phase's
        del blob
        with costs.phase("light") as light:
            pass
    assert hungry.peak_rss_mb > light.peak_rss_mb + 150
    assert outer.peak_rss_mb >= light.peak_rss_mb + 60  # a nested phase's reset keeps the outer peak
    assert light.peak_rss_mb <= costs.current_rss_mb() + 40


_FREED_HEAP = """
import sys, torch
from benchmark.base import costs
pins, freed = [], []
for _ in range(3000):  # 64 KiB blocks come from the heap, below glibc's mmap threshold
    freed.append(torch.ones(16 * 1024))
    pins.append(torch.ones(16))  # a live block after each keeps the freed ones from coalescing away
held = costs.current_rss_mb()
del freed
with costs.phase("after") as after:
    pass
print(held, after.peak_rss_mb)
"""


@pytest.mark.skipif(costs._MALLOC_TRIM is None, reason="glibc's malloc_trim is not available")
def test_heap_an_earlier_phase_freed_is_not_counted_in_the_next_phase():
    """glibc keeps freed heap resident; a phase that follows must not report it as its own peak."""
    out = subprocess.run([sys.executable, "-c", _FREED_HEAP], capture_output=True, text=True, check=True)
    held, after = map(float, out.stdout.split())
    assert after < held - 150  # 3000 x 64 KiB = 188 MiB were freed before the phase began


def test_a_phase_logs_its_start_and_end_when_no_progress_bar_is_shown(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="benchmark.base.costs"):
        with costs.phase("evaluation"):
            pass
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "evaluation: started" and messages[1].startswith("evaluation: done in ")


def test_runtime_bounds_kernel_caches_unless_the_user_set_them(monkeypatch):
    for name in KERNEL_CACHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "512")  # a user's own choice wins
    resolve_runtime("cpu", "fp32")
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == KERNEL_CACHES["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]
    assert os.environ["LRU_CACHE_CAPACITY"] == "512"


_TRAIN_TINY_BF16 = """
import hashlib, sys, tempfile
import torch
from benchmark import testing
from benchmark.model.encoding import encode
from benchmark.model.runtime import Runtime
from benchmark.model.training import TrainConfig, train
folder = testing.tiny_victim(tempfile.mkdtemp())
tokenizer = testing.tiny_tokenizer()
data = encode(tokenizer, testing.demo_dataset(n_train=96).train, 64)
model = testing.model_factory(folder)()
train(model, data, TrainConfig(epochs=1, batch_size=8), Runtime(torch.device("cpu"), "bf16"), seed=3)
digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode()); digest.update(tensor.contiguous().numpy().tobytes())
print(digest.hexdigest())
"""


@pytest.mark.skipif(not cpu_has_bf16(), reason="bf16 products run through oneDNN only where the CPU has bf16 units")
def test_bounded_kernel_caches_train_the_same_weights():
    """Kernels rebuilt instead of cached compute the same numbers: bf16 training of a tiny
    victim (batches of many lengths) ends in bit-identical weights with large caches and with
    none (every kernel rebuilt at every use; ideep's smallest working capacity is 1). A tiny
    run never fills the bounded 16 entries, so only the no-cache run exercises rebuilding."""
    def trained_weights(**env) -> str:
        environ = {k: v for k, v in os.environ.items() if k not in KERNEL_CACHES} | env
        done = subprocess.run([sys.executable, "-c", _TRAIN_TINY_BF16], env=environ, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()[-1]

    assert trained_weights(ONEDNN_PRIMITIVE_CACHE_CAPACITY="0", LRU_CACHE_CAPACITY="1") == trained_weights(
        ONEDNN_PRIMITIVE_CACHE_CAPACITY="1024", LRU_CACHE_CAPACITY="1024")


def test_a_long_loop_logs_a_heartbeat_where_no_bar_is_shown(caplog, monkeypatch):
    import logging
    import time

    monkeypatch.setenv("BDBENCH_HEARTBEAT_S", "0.01")
    monkeypatch.delenv("BDBENCH_PROGRESS", raising=False)
    with caplog.at_level(logging.INFO, logger="benchmark.base.costs"):
        for _ in costs.progress(list(range(4)), desc="train epoch 1/1"):
            time.sleep(0.02)
    beats = [r.getMessage() for r in caplog.records]
    assert beats and all(m.startswith("train epoch 1/1: ") and "/4 steps" in m for m in beats)
    caplog.clear()
    monkeypatch.setenv("BDBENCH_PROGRESS", "0")  # --quiet
    with caplog.at_level(logging.INFO, logger="benchmark.base.costs"):
        for _ in costs.progress(list(range(4)), desc="train epoch 1/1"):
            time.sleep(0.02)
        with costs.phase("evaluation"):
            pass
    assert not caplog.records
