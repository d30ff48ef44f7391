"""Tokenize once, batch many times: encoded splits, length-grouped batches, dynamic padding.

An :class:`EncodedSet` holds the token ids of a list of examples (truncated to ``max_length``,
unpadded) and their labels. :func:`encode` caches by (tokenizer, max_length, texts), so a split
is tokenized once per process however many phases read it. Batches are padded only to their
own longest member; with ``group_by_length`` the order is seeded-shuffled, then sorted by length
inside windows of ``window_batches`` batches, so that lengths in a batch are close while the
order of batches stays random.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import torch

from ..data.examples import Example


@dataclasses.dataclass(frozen=True)
class EncodedSet:
    """Token ids (one list per example, special tokens included, unpadded) and labels."""

    input_ids: tuple[tuple[int, ...], ...]
    labels: tuple[int, ...]
    pad_id: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    @property
    def num_tokens(self) -> int:
        return sum(self.lengths)


_CACHE: OrderedDict[tuple, EncodedSet] = OrderedDict()
_CACHE_SIZE = 64


def _texts_key(texts: Sequence[str], labels: Sequence[int]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for text, label in zip(texts, labels):
        digest.update(text.encode("utf-8"))
        digest.update(b"\x00%d\x01" % label)
    return digest.hexdigest()


def encode(tokenizer, examples: Sequence[Example], max_length: int) -> EncodedSet:
    """Tokenize ``examples`` (cached; see the module docstring)."""
    texts = [ex.text for ex in examples]
    labels = [ex.label for ex in examples]
    key = (getattr(tokenizer, "name_or_path", ""), id(tokenizer), len(tokenizer), max_length,
           _texts_key(texts, labels))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    ids = tokenizer(texts, truncation=True, max_length=max_length, padding=False)["input_ids"] if texts else []
    encoded = EncodedSet(tuple(tuple(x) for x in ids), tuple(labels), tokenizer.pad_token_id or 0)
    _CACHE[key] = encoded
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return encoded


def batch_order(lengths: Sequence[int], batch_size: int, *, shuffle: bool, group_by_length: bool,
                seed: int, window_batches: int = 50) -> list[list[int]]:
    """Index lists, one per batch (see the module docstring)."""
    indices = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(indices)
    if group_by_length:
        window = batch_size * window_batches
        grouped = []
        for start in range(0, len(indices), window):
            chunk = indices[start:start + window]
            chunk.sort(key=lambda i: lengths[i], reverse=True)
            grouped.extend(chunk)
        indices = grouped
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    if shuffle and group_by_length:
        rng.shuffle(batches)
    return batches


def collate(encoded: EncodedSet, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to their longest: input_ids, attention_mask, labels."""
    rows = [encoded.input_ids[i] for i in indices]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), encoded.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, row in enumerate(rows):
        input_ids[k, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[k, : len(row)] = 1
    labels = torch.tensor([encoded.labels[i] for i in indices], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def iterate_batches(encoded: EncodedSet, batch_size: int, *, shuffle: bool = False, group_by_length: bool = True,
                    seed: int = 0, device: torch.device | str = "cpu") -> Iterator[dict[str, torch.Tensor]]:
    for indices in batch_order(encoded.lengths, batch_size, shuffle=shuffle, group_by_length=group_by_length,
                               seed=seed):
        yield {k: v.to(device, non_blocking=True) for k, v in collate(encoded, indices).items()}
