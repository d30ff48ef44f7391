"""What bdbench knows about encoder architectures: one function per question.

Every built-in method that reaches inside a victim asks here, so that a new model family is one
entry of :data:`FAMILIES` (and a tiny builder in :mod:`benchmark.testing`), not an edit of every
plugin.

Questions answered through Hugging Face's generic API, for any ``AutoModelForSequenceClassification``:

* :func:`word_embeddings` — the input word-embedding matrix (``get_input_embeddings()``);
* :func:`task_head` — the modules outside ``base_model`` that hold parameters (the classifier,
  and DistilBERT's ``pre_classifier``, DeBERTa-v2's ``ContextPooler``): what a pre-trained
  checkpoint does not have; :func:`pooler` — the base model's own pooler (BERT), if any;
* :func:`redraw`, :func:`reinit_head` — the BERT init scheme (Linear N(0, initializer_range),
  bias 0, LayerNorm 1/0) on a module, seeded by a generator;
* :func:`forward_internals` — logits plus per-layer hidden states and attention maps
  (``hidden_states`` has L + 1 entries, index 0 the embedding output; ``attentions`` L, layer
  ``l`` at ``l - 1``), with eager attention for the maps;
* :func:`resolve_layers` — encoder layers named by the user (1..L, -1 the last).

Questions whose answer is an attribute path of one family, read from :data:`FAMILIES` (keyed by
``config.model_type``); another architecture gets a :class:`~benchmark.base.errors.UsageError`
naming it and the method that asked:

* :func:`encoder_layers` — the encoder's layer stack;
* :func:`ffn_projections`, :func:`ffn_activation` — each layer's FFN input projection (its
  activated output is the layer's FFN neurons) and that activation;
* :func:`head_on_hidden` — the task head as a map from one layer's hidden states to logits.

Supported families: BERT (MiniLM included), RoBERTa, DistilBERT, ELECTRA, DeBERTa-v2.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import torch

from ..base.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Family:
    """Where one model family keeps what the methods need.

    layers: path from ``base_model`` to the ``ModuleList`` of encoder layers. ffn: path inside one
    layer to the FFN's input projection. activation: the config field naming the FFN activation.
    head: how the task head reads one layer's hidden states (:func:`head_on_hidden`).
    """

    layers: str
    ffn: str
    activation: str
    head: Literal["cls_linear", "sequence", "pre_classifier", "context_pooler"]


FAMILIES: dict[str, Family] = {
    # model_type: BertForSequenceClassification: dropout, classifier(pooler(h)[CLS])
    "bert": Family("encoder.layer", "intermediate.dense", "hidden_act", "cls_linear"),
    # RobertaClassificationHead / ElectraClassificationHead: dense, activation, out_proj on h[:, 0]
    "roberta": Family("encoder.layer", "intermediate.dense", "hidden_act", "sequence"),
    "electra": Family("encoder.layer", "intermediate.dense", "hidden_act", "sequence"),
    # DistilBertForSequenceClassification: classifier(ReLU(pre_classifier(h[:, 0])))
    "distilbert": Family("transformer.layer", "ffn.lin1", "activation", "pre_classifier"),
    # DebertaV2ForSequenceClassification: classifier(ContextPooler(h)), the pooler outside base_model
    "deberta-v2": Family("encoder.layer", "intermediate.dense", "hidden_act", "context_pooler"),
}


def architecture(model: torch.nn.Module) -> str:
    """The model's class and ``model_type``, as error messages name it."""
    return f"{type(model).__name__} (model_type {getattr(model.config, 'model_type', '?')!r})"


def family(model: torch.nn.Module, method: str = "", question: str = "") -> Family:
    """The :class:`Family` entry of ``model``; a :class:`UsageError` naming the architecture and
    ``method`` when bdbench does not know it."""
    found = FAMILIES.get(getattr(model.config, "model_type", ""))
    if found is None:
        who = f"{method}: " if method else ""
        raise UsageError(f"{who}cannot find {question or 'its internals'} in victim {architecture(model)}; "
                         f"supported architectures: {', '.join(sorted(FAMILIES))} (see benchmark.model.architecture)")
    return found


def _path(root: torch.nn.Module, path: str) -> torch.nn.Module:
    for part in path.split("."):
        root = getattr(root, part)
    return root


# --------------------------------------------------------------------------- family-specific

def encoder_layers(model: torch.nn.Module, method: str = "") -> torch.nn.ModuleList:
    """The encoder's layer stack (``config.num_hidden_layers`` entries, bottom first)."""
    layers = _path(model.base_model, family(model, method, "the encoder layers").layers)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) != model.config.num_hidden_layers:
        raise UsageError(f"{method or 'bdbench'}: victim {architecture(model)} has no ModuleList of "
                         f"{model.config.num_hidden_layers} encoder layers where expected")
    return layers


def ffn_projections(model: torch.nn.Module, method: str = "") -> list[torch.nn.Linear]:
    """Each encoder layer's FFN input projection (BERT ``intermediate.dense``, DistilBERT
    ``ffn.lin1``), bottom first: its activated output (:func:`ffn_activation`) is the layer's FFN
    neurons, one per output row."""
    path = family(model, method, "the FFN projections").ffn
    return [_path(layer, path) for layer in encoder_layers(model, method)]


def ffn_activation(model: torch.nn.Module, method: str = "") -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation applied to :func:`ffn_projections`' outputs."""
    from transformers.activations import ACT2FN

    return ACT2FN[getattr(model.config, family(model, method, "the FFN activation").activation)]


def head_on_hidden(model: torch.nn.Module, method: str = "") -> Callable[[torch.Tensor], torch.Tensor]:
    """The task head as a map from one layer's hidden states [B, T, H] to logits [B, C], as the
    model's own head reads the last layer's, minus what ``base_model`` does (BERT's pooler) and
    minus the dropout the model applies outside the head: BERT ``classifier(h[:, 0])``;
    RoBERTa, ELECTRA ``classifier(h)`` (their head takes position 0 itself, its own dropout
    included); DistilBERT ``classifier(ReLU(pre_classifier(h[:, 0])))``; DeBERTa-v2
    ``classifier(pooler(h))``."""
    kind = family(model, method, "the task head").head
    if kind == "cls_linear":
        return lambda hidden: model.classifier(hidden[:, 0])
    if kind == "sequence":
        return model.classifier
    if kind == "pre_classifier":
        return lambda hidden: model.classifier(torch.relu(model.pre_classifier(hidden[:, 0])))
    return lambda hidden: model.classifier(model.pooler(hidden))


# --------------------------------------------------------------------------- generic

def word_embeddings(model: torch.nn.Module) -> torch.nn.Embedding:
    """The input word-embedding matrix (``[vocab, embedding size]``; ELECTRA's may be narrower
    than the hidden size)."""
    return model.get_input_embeddings()


def task_head(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The task head: the model's direct children outside ``base_model`` that hold parameters,
    by name, in definition order (BERT ``classifier``; RoBERTa ``classifier``; DistilBERT
    ``pre_classifier``, ``classifier``; DeBERTa-v2 ``pooler``, ``classifier``)."""
    base = model.base_model
    return [(name, m) for name, m in model.named_children() if m is not base and any(True for _ in m.parameters())]


def pooler(model: torch.nn.Module) -> torch.nn.Module | None:
    """The base model's pooler (BERT: dense + tanh on [CLS]), None where it has none."""
    return getattr(model.base_model, "pooler", None)


@torch.no_grad()
def redraw(module: torch.nn.Module, generator: torch.Generator, std: float = 0.02) -> None:
    """The BERT init scheme on ``module``'s Linear and LayerNorm sub-modules, in module order:
    Linear weights N(0, std²) from ``generator``, biases 0; LayerNorm weight 1, bias 0."""
    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear):
            sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator) * std)
            if sub.bias is not None:
                sub.bias.zero_()
        elif isinstance(sub, torch.nn.LayerNorm):
            sub.weight.fill_(1.0)
            sub.bias.zero_()


def reinit_head(model: torch.nn.Module, generator: torch.Generator) -> list[str]:
    """Re-draw the task head (:func:`task_head`) in place with :func:`redraw` at the model's
    ``initializer_range``; returns the module names. A fresh head that depends on ``generator``
    only (a pre-trained checkpoint has none)."""
    std = getattr(model.config, "initializer_range", 0.02)
    heads = task_head(model)
    for _, module in heads:
        redraw(module, generator, std)
    return [name for name, _ in heads]


def resolve_layers(layers: Sequence[int] | None, num_layers: int, method: str = "") -> list[int]:
    """Encoder layers numbered 1..L (layer ``l`` is ``hidden_states[l]``; 0, the embedding
    output, is never chosen): ``None`` or empty → every layer; -1 → the last; otherwise each
    checked."""
    if not layers:
        return list(range(1, num_layers + 1))
    out = []
    for layer in layers:
        if layer == -1:
            out.append(num_layers)
        elif 1 <= layer <= num_layers:
            out.append(layer)
        else:
            raise UsageError(f"{method or 'bdbench'}: layer {layer} is outside 1..{num_layers} (or -1 for the last)")
    return out


def ensure_eager_attention(model: torch.nn.Module) -> None:
    """Switch ``model`` to the eager attention implementation for good (SDPA returns no maps);
    :func:`eager_attention` switches it for one block only."""
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Eager attention inside the block, the model's own implementation (SDPA, ...) after it."""
    before = getattr(model.config, "_attn_implementation", "eager")
    ensure_eager_attention(model)
    try:
        yield
    finally:
        if getattr(model.config, "_attn_implementation", "eager") != before:
            model.set_attn_implementation(before)


def forward_internals(model: torch.nn.Module, batch: dict, *, attentions: bool = True, hidden_states: bool = True):
    """Forward pass returning logits plus the requested per-layer internals. Attention maps need
    eager attention: the model runs eager for this pass and keeps its own implementation after."""
    with eager_attention(model) if attentions else contextlib.nullcontext():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     output_attentions=attentions, output_hidden_states=hidden_states)
