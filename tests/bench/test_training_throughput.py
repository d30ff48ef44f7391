"""Training throughput: the shared loop against a naive loop, in one run, on real SST-2.

The naive loop is what a first fine-tuning script does: every batch padded to 128 word-pieces,
fp32, un-fused AdamW, random batches. The shared loop pads each batch to its own longest
member, groups similar lengths, runs bf16 autocast where the hardware supports it, and uses
fused AdamW. Both train the real MiniLM on the same sentences for the same number of steps;
the ratio of their wall times is printed and stored in the benchmark's extra_info.

Run: ``pytest tests/bench --benchmark-only`` (or ``tox -e bench``).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from benchmark.data.sources import indexed, read_tsv_rows
from benchmark.data.subsets import balanced_subset
from benchmark.model.encoding import encode
from benchmark.model.runtime import resolve_runtime
from benchmark.model.training import TrainConfig, train
from benchmark.model.victims import DEFAULT_VICTIM, load_classifier, load_tokenizer, resolve_victim

N_SENTENCES = 512
BATCH = 32


def naive_epoch(model, tokenizer, examples, lr=2e-5):
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(examples), generator=generator).tolist()
    for start in range(0, len(order), BATCH):
        batch = [examples[i] for i in order[start:start + BATCH]]
        enc = tokenizer([e.text for e in batch], padding="max_length", truncation=True, max_length=128,
                        return_tensors="pt")
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        loss = F.cross_entropy(logits, torch.tensor([e.label for e in batch]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()


def test_shared_loop_vs_naive_loop(benchmark, real_data):
    source = resolve_victim(DEFAULT_VICTIM).location
    tokenizer = load_tokenizer(source)
    examples = balanced_subset(indexed(read_tsv_rows(real_data / "sst2-openbackdoor" / "train.tsv")), N_SENTENCES, seed=0)
    runtime = resolve_runtime("auto", "auto")
    torch.manual_seed(0)
    naive_model = load_classifier(source, 2)
    start, cpu_start = time.perf_counter(), time.process_time()
    naive_epoch(naive_model, tokenizer, examples)
    naive_s, naive_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    cpu = {}

    config = TrainConfig(epochs=1, lr=2e-5, batch_size=BATCH, warmup_ratio=0.0)

    def shared_epoch():
        model = load_classifier(source, 2)
        data = encode(tokenizer, examples, 128)
        start, cpu_start = time.perf_counter(), time.process_time()
        train(model, data, config, runtime, seed=0)
        cpu["shared"] = time.process_time() - cpu_start
        return time.perf_counter() - start

    shared_s = benchmark.pedantic(shared_epoch, rounds=1, iterations=1)
    ratio = naive_s / shared_s
    cpu_ratio = naive_cpu / cpu["shared"]
    benchmark.extra_info.update({"naive_s": round(naive_s, 2), "shared_s": round(shared_s, 2),
                                 "speedup": round(ratio, 2), "naive_cpu_s": round(naive_cpu, 2),
                                 "shared_cpu_s": round(cpu["shared"], 2), "cpu_speedup": round(cpu_ratio, 2),
                                 "threads": torch.get_num_threads(), "precision": runtime.precision,
                                 "device": runtime.device_name, "sentences": N_SENTENCES})
    print(f"\nnaive loop {naive_s:.1f} s, shared loop {shared_s:.1f} s ({runtime.precision}, "
          f"{runtime.device_name}): {ratio:.2f}x on {N_SENTENCES} SST-2 sentences; process CPU "
          f"{naive_cpu:.1f} s vs {cpu['shared']:.1f} s: {cpu_ratio:.2f}x ({torch.get_num_threads()} threads)")
    assert shared_s > 0
