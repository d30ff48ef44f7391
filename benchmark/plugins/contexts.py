"""The contexts plugins receive: :class:`AttackContext` for attacks, :class:`DefenseContext` for
defenses, both a :class:`ModelToolkit` (tokenizing, the shared training loop, predictions,
batches). A defense's context holds only the assets its ``requires`` declared (the table in
:mod:`benchmark.plugins.defense`); asking for another raises :class:`ThreatModelError`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..base.errors import ThreatModelError
from ..data.examples import Dataset, Example
from ..model.architecture import pooled_hidden
from ..model.encoding import EncodedSet, batch_order, collate, encode, iterate_batches
from ..model.runtime import Runtime
from ..model.training import LossFn, OptimizerFactory, TrainConfig, TrainStats, accuracy, predict, train
from ..model.victims import clone_model


@dataclasses.dataclass
@dataclasses.dataclass
class ModelToolkit:
    """What both contexts offer: tokenizing, the shared training loop with the scenario's recipe,
    predictions, batches on the runtime's device, and forward passes that read internals."""

    tokenizer: Any
    runtime: Runtime
    max_length: int
    seed: int
    train_config: TrainConfig

    def encode(self, examples: Sequence[Example]) -> EncodedSet:
        """Token ids of ``examples`` (cached: tokenized once per process)."""
        return encode(self.tokenizer, examples, self.max_length)

    def finetune(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet, *,
                 loss_fn: LossFn | None = None,
                 trainable: Callable[[str, torch.nn.Parameter], bool] | None = None,
                 post_step: Callable[[torch.nn.Module, int], None] | None = None,
                 make_optimizer: OptimizerFactory | None = None,
                 before_step: Callable[[torch.nn.Module, int], None] | None = None,
                 on_epoch_end: Callable[[torch.nn.Module, int], None] | None = None,
                 seed: int | None = None, **recipe_changes) -> TrainStats:
        """Run the shared training loop with this context's recipe (``recipe_changes`` override
        its fields: epochs, lr, batch_size, warmup_ratio, weight_decay, max_grad_norm, schedule);
        the hooks are :func:`benchmark.model.training.train`'s."""
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        config = self.train_config.replace(**recipe_changes)
        kwargs = {"loss_fn": loss_fn} if loss_fn is not None else {}
        return train(model, data, config, self.runtime, seed=self.seed if seed is None else seed,
                     trainable=trainable, post_step=post_step, make_optimizer=make_optimizer,
                     before_step=before_step, on_epoch_end=on_epoch_end, **kwargs)

    def train_teacher(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet, *,
                      lr: float | None = None, epochs: int | None = None) -> torch.nn.Module:
        """A teacher for distillation (NAD, MBTSAD): a copy of ``model`` fine-tuned on ``examples``
        with this context's recipe (``lr``, ``epochs`` override it; None keeps it), then frozen:
        eval mode, no gradients, on the runtime's device. ``model`` itself is not changed."""
        teacher = clone_model(model)
        self.finetune(teacher, examples, lr=lr, epochs=epochs)
        return teacher.eval().requires_grad_(False).to(self.runtime.device)

    def accuracy(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet) -> float:
        """Share of ``examples`` that ``model`` classifies as labelled (NaN when empty)."""
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        return accuracy(model, data, self.runtime)

    def predict(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet,
                batch_size: int = 128) -> list[int]:
        """The predicted class of each of ``examples``, in their order (eval mode, the runtime's
        device and precision)."""
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        return predict(model, data, self.runtime, batch_size)

    def batches(self, examples: Sequence[Example] | EncodedSet, batch_size: int = 128, *,
                shuffle: bool = False, seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Padded batches of ``examples`` on the runtime's device (``input_ids``,
        ``attention_mask``: 1 at real tokens, ``labels``), length-grouped; in a fixed order, or
        a seeded shuffle with ``shuffle``. The same order on every call."""
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        return iterate_batches(data, batch_size, shuffle=shuffle, seed=seed, device=self.runtime.device)

    def batch(self, examples: Sequence[Example] | EncodedSet,
              indices: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """All of ``examples`` (or those at ``indices``, in that order) as one padded batch, in
        their order, on the runtime's device."""
        data = examples if isinstance(examples, EncodedSet) else self.encode(examples)
        return self.to_device(collate(data, range(len(data)) if indices is None else indices))

    def to_device(self, value):
        """``value`` (a module, a tensor, or a dict of tensors) on the runtime's device; a module
        is moved in place and returned."""
        if isinstance(value, dict):
            return {k: v.to(self.runtime.device, non_blocking=True) for k, v in value.items()}
        return value.to(self.runtime.device)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, examples: Sequence[Example] | EncodedSet,
                 fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], Any], *, batch_size: int = 128) -> list:
        """``fn(model, batch)`` on every batch of :meth:`batches` (in that order), with ``model``
        in eval mode on the runtime's device, no gradients, and the runtime's precision
        (autocast); returns ``fn``'s results, one per batch. For loops that read a model's
        internals (forward hooks, hidden states) on clean data."""
        model.to(self.runtime.device)
        model.eval()
        results = []
        for batch in self.batches(examples, batch_size):
            with self.runtime.autocast():
                results.append(fn(model, batch))
        return results

    @torch.no_grad()
    def probabilities(self, model: torch.nn.Module, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Class probabilities of ``texts`` (``[len(texts), num_labels]``, float32, on the CPU;
        eval mode, fp32, length-grouped batches, input order kept)."""
        return self._forward(model, texts, batch_size, hidden=False)

    @torch.no_grad()
    def cls_embeddings(self, model: torch.nn.Module, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """The last layer's representation of ``texts`` at the position the task head reads
        (``[len(texts), hidden_size]``, float32, CPU): an encoder's first token ([CLS],
        ``hidden_states[-1][:, 0]``), a decoder's last real token
        (:func:`benchmark.model.architecture.pooled_hidden`)."""
        return self._forward(model, texts, batch_size, hidden=True)

    def _forward(self, model: torch.nn.Module, texts: Sequence[str], batch_size: int, hidden: bool) -> torch.Tensor:
        from ..model.encoding import collate

        data = self.encode([Example(t, 0) for t in texts])
        model.to(self.runtime.device)
        model.eval()
        rows: list[torch.Tensor | None] = [None] * len(texts)
        for indices in batch_order(data.lengths, batch_size, shuffle=False, group_by_length=True, seed=0):
            batch = collate(data, indices)
            out = model(input_ids=batch["input_ids"].to(self.runtime.device),
                        attention_mask=batch["attention_mask"].to(self.runtime.device),
                        output_hidden_states=hidden)
            values = (pooled_hidden(model, out.hidden_states[-1], batch["attention_mask"]) if hidden
                      else torch.softmax(out.logits.float(), -1))
            for i, row in zip(indices, values.float().cpu()):
                rows[i] = row
        if not rows:
            return torch.zeros(0, 0)
        return torch.stack(rows)  # type: ignore[arg-type]


@dataclasses.dataclass
@dataclasses.dataclass
class AttackContext(ModelToolkit):
    """What an attack works with. ``dataset`` holds the scenario's (limited) clean splits;
    ``source_dataset`` the data set as read, before the budget's limits (for attacks whose inputs
    are aligned with its rows: replay attacks); ``data_dir`` the run's data folder (``--data-dir``,
    else ``BDBENCH_DATA``; None when neither is set)."""

    dataset: Dataset = None  # type: ignore[assignment]
    source_dataset: Dataset = None  # type: ignore[assignment]
    data_dir: Path | None = None
    target_label: int = 1
    pretrained_model: Callable[[], torch.nn.Module] = None  # type: ignore[assignment]  # fresh victim, new head
    _clean_model: Callable[[], torch.nn.Module] | None = None
    attack_name: str = ""

    def rng(self, purpose: str) -> random.Random:
        """A generator seeded by the scenario seed and ``purpose`` (independent streams)."""
        return random.Random(f"{self.seed}:{self.attack_name}:{purpose}")

    def clean_model(self) -> torch.nn.Module:
        """A copy of the scenario's clean reference model (declare ``clean_model``)."""
        if self._clean_model is None:
            raise ThreatModelError(f"attack {self.attack_name!r} did not declare 'clean_model' in requires")
        return self._clean_model()


@dataclasses.dataclass
@dataclasses.dataclass
class DefenseContext(ModelToolkit):
    """What a defense may use; each asset is present only when declared (module docstring)."""

    defense_name: str = ""
    requires: frozenset[str] = frozenset()
    _clean_data: tuple[Example, ...] | None = None
    _clean_dev: tuple[Example, ...] | None = None
    _pretrained: Callable[[], torch.nn.Module] | None = None
    _target_label: int | None = None
    _poisoned_train: tuple[Example, ...] | None = None

    def _grant(self, requirement: str, value):
        if value is None:
            raise ThreatModelError(
                f"defense {self.defense_name!r} asked for {requirement!r} but did not declare it in "
                f"requires = {sorted(self.requires)}; add it to the class's requires (it is shown on the leaderboard)."
            )
        return value

    @property
    def clean_data(self) -> tuple[Example, ...]:
        """The defender's clean training subset (``clean_fraction`` of the clean training set)."""
        return self._grant("clean_data", self._clean_data)

    @property
    def clean_dev(self) -> tuple[Example, ...]:
        return self._grant("clean_dev", self._clean_dev)

    @property
    def target_label(self) -> int:
        return self._grant("target_label", self._target_label)

    @property
    def poisoned_train(self) -> tuple[Example, ...]:
        """The poisoned training set, in the attack's order, every ``poisoned`` flag False (data
        filters only: the harness never grants it to another kind)."""
        return self._grant("poisoned_train", self._poisoned_train)

    def pretrained_model(self) -> torch.nn.Module:
        """A fresh copy of the victim's pre-trained (un-fine-tuned) weights, new random head."""
        return self._grant("pretrained_weights", self._pretrained)()

    def rng(self, purpose: str) -> random.Random:
        return random.Random(f"{self.seed}:{self.defense_name}:{purpose}")

    def __getattr__(self, item: str):
        if item in ("poisoned_data", "trigger", "attack", "attack_name", "test", "test_data"):
            raise ThreatModelError(f"defense {self.defense_name!r}: {item!r} is never available to a defense")
        raise AttributeError(item)

