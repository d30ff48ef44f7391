"""What bdbench knows about model architectures: one function per question.

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
* :func:`resolve_layers` — layers named by the user (1..L, -1 the last).

Questions whose answer is an attribute path of one family, read from :data:`FAMILIES` (keyed by
``config.model_type``); another architecture gets a :class:`~benchmark.base.errors.UsageError`
naming it and the method that asked:

* :func:`encoder_layers` — the layer stack (an encoder's, or a decoder's blocks);
* :func:`ffn_units` — each layer's FFN neurons: how to read their activations and which weight
  slices to zero to remove one (gated MLPs included);
* :func:`ffn_projections`, :func:`ffn_activation` — each layer's FFN input projection and its
  activation, for the families whose FFN neurons are ``act(projection(x))`` (not gated MLPs);
* :func:`pooled_positions`, :func:`pooled_hidden` — the position the task head reads (an
  encoder's first token; a decoder's last real token) and the hidden states there;
* :func:`head_on_hidden` — the task head as a map from one layer's hidden states to logits.

Supported families: the encoders BERT (MiniLM included), RoBERTa, DistilBERT, ELECTRA, DeBERTa-v2,
and the decoders GPT-2, Llama (SmolLM2 included) and Qwen2 as ``*ForSequenceClassification``.

Decoders (methods.md F6), the contract the rest of bdbench keeps:

* the task head ``score`` reads the **rightmost token whose id is not** ``config.pad_token_id``
  (transformers' rule, which ignores ``attention_mask``); bdbench pads on the right
  (:func:`benchmark.model.encoding.collate`), and the victim loader gives every decoder a pad token
  that its tokenizer never produces inside a text (:func:`benchmark.model.victims.load_tokenizer`:
  special-token strings in the text are split like ordinary text, and nothing is appended), so
  that position is the last real token, ``attention_mask.sum(1) - 1``, for every row;
* ``hidden_states[L]`` comes after the final norm (GPT-2 ``ln_f``, Llama and Qwen2 ``norm``),
  ``hidden_states[1..L-1]`` before it: :func:`head_on_hidden` applies the final norm to the
  inner layers only;
* a caller that passes ``inputs_embeds`` gets the last position pooled (transformers cannot see
  the padding): pool with :func:`pooled_hidden` and :func:`head_on_hidden` instead, or use batches
  of one.
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

    layers: path from ``base_model`` to the ``ModuleList`` of layers. ffn: path inside one layer to
    the FFN's input projection (``mlp`` for a gated MLP: ``gate_proj``, ``up_proj``,
    ``down_proj``). activation: the config field naming the FFN activation. head: how the task
    head reads one layer's hidden states (:func:`head_on_hidden`). ffn_kind: ``linear`` (a
    ``Linear``, weight ``[out, in]``), ``conv1d`` (transformers' ``Conv1D``, weight ``[in, out]``:
    GPT-2) or ``gated`` (``down(act(gate(x)) * up(x))``: Llama, Qwen2). final_norm: path from
    ``base_model`` to the norm after the last layer (decoders), "" for none.
    """

    layers: str
    ffn: str
    activation: str
    head: Literal["cls_linear", "sequence", "pre_classifier", "context_pooler", "score_last"]
    ffn_kind: Literal["linear", "conv1d", "gated"] = "linear"
    final_norm: str = ""

    @property
    def decoder(self) -> bool:
        """True for a decoder-only family (the head reads the last real token)."""
        return self.head == "score_last"


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
    # GPT2ForSequenceClassification: score(ln_f(h)[last real token]); MLP c_proj(act(c_fc(x))), Conv1D
    "gpt2": Family("h", "mlp.c_fc", "activation_function", "score_last", "conv1d", "ln_f"),
    # LlamaForSequenceClassification, Qwen2ForSequenceClassification: score(norm(h)[last real token]);
    # MLP down_proj(act(gate_proj(x)) * up_proj(x))
    "llama": Family("layers", "mlp", "hidden_act", "score_last", "gated", "norm"),
    "qwen2": Family("layers", "mlp", "hidden_act", "score_last", "gated", "norm"),
}
DECODERS = frozenset(name for name, entry in FAMILIES.items() if entry.decoder)


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

def is_decoder(model: torch.nn.Module) -> bool:
    """True when ``model`` is of a decoder-only family bdbench knows (GPT-2, Llama, Qwen2)."""
    return getattr(model.config, "model_type", "") in DECODERS


def encoder_layers(model: torch.nn.Module, method: str = "") -> torch.nn.ModuleList:
    """The layer stack (``config.num_hidden_layers`` entries, bottom first): an encoder's layers,
    a decoder's blocks (GPT-2 ``h``, Llama and Qwen2 ``layers``)."""
    layers = _path(model.base_model, family(model, method, "the encoder layers").layers)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) != model.config.num_hidden_layers:
        raise UsageError(f"{method or 'bdbench'}: victim {architecture(model)} has no ModuleList of "
                         f"{model.config.num_hidden_layers} encoder layers where expected")
    return layers


def ffn_projections(model: torch.nn.Module, method: str = "") -> list[torch.nn.Module]:
    """Each layer's FFN input projection (BERT ``intermediate.dense``, DistilBERT ``ffn.lin1``,
    GPT-2 ``mlp.c_fc``, a ``Conv1D``), bottom first: its activated output (:func:`ffn_activation`)
    is the layer's FFN neurons. A gated MLP (Llama, Qwen2) has no such single projection: a
    :class:`UsageError` points to :func:`ffn_units`."""
    entry = family(model, method, "the FFN projections")
    if entry.ffn_kind == "gated":
        raise UsageError(f"{method or 'bdbench'}: victim {architecture(model)} has a gated MLP "
                         "(act(gate_proj(x)) * up_proj(x)): its FFN neurons have no single input projection; "
                         "use benchmark.ffn_units")
    return [_path(layer, entry.ffn) for layer in encoder_layers(model, method)]


def ffn_activation(model: torch.nn.Module, method: str = "") -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation applied to :func:`ffn_projections`' outputs (a gated MLP's: to ``gate_proj``'s)."""
    from transformers.activations import ACT2FN

    return ACT2FN[getattr(model.config, family(model, method, "the FFN activation").activation)]


@dataclasses.dataclass(frozen=True)
class FfnUnits:
    """One layer's FFN neurons (``width`` of them; neuron ``j`` is entry ``j`` of the vector the
    FFN's output projection reads).

    ``incoming``: the ``(parameter, dim)`` pairs whose slice ``j`` along ``dim`` feeds neuron
    ``j`` only; zeroing them all makes the neuron exactly 0 (``act(0) = 0`` for GELU, SiLU and
    ReLU; a gated neuron's ``up`` row is zeroed too). :meth:`capture` reads the activations."""

    width: int
    incoming: tuple[tuple[torch.nn.Parameter, int], ...]
    _source: torch.nn.Module
    _activation: Callable[[torch.Tensor], torch.Tensor]
    _gated: bool

    def capture(self, sink: Callable[[torch.Tensor], None]):
        """Call ``sink(activations)`` (``[B, T, width]``, float32) at every forward pass; returns
        the hook handle. Ungated: ``act(projection(x))``, computed in float32 from the
        projection's output; gated: ``act(gate(x)) * up(x)``, the output projection's input."""
        if self._gated:
            return self._source.register_forward_pre_hook(lambda module, args: sink(args[0].float()))
        return self._source.register_forward_hook(lambda module, args, output: sink(self._activation(output.float())))


def ffn_units(model: torch.nn.Module, method: str = "") -> list[FfnUnits]:
    """Each layer's :class:`FfnUnits`, bottom first: BERT-style ``act(dense(x))`` (the rows of
    ``dense`` and its bias), GPT-2 ``act(c_fc(x))`` (columns of the ``Conv1D`` weight, its bias),
    Llama and Qwen2 ``act(gate_proj(x)) * up_proj(x)`` (rows of both, no bias)."""
    entry = family(model, method, "the FFN neurons")
    activation = ffn_activation(model, method)
    units = []
    for layer in encoder_layers(model, method):
        block = _path(layer, entry.ffn)
        if entry.ffn_kind == "gated":
            incoming = ((block.gate_proj.weight, 0), (block.up_proj.weight, 0))
            units.append(FfnUnits(block.up_proj.out_features, incoming, block.down_proj, activation, True))
            continue
        dim = 1 if entry.ffn_kind == "conv1d" else 0
        incoming = ((block.weight, dim),) + (((block.bias, 0),) if block.bias is not None else ())
        units.append(FfnUnits(block.weight.shape[dim], incoming, block, activation, False))
    return units


def pooled_positions(model: torch.nn.Module, attention_mask: torch.Tensor | None, length: int | None = None) -> torch.Tensor:
    """The position each row's task head reads (``[B]``, long): 0 for an encoder (``[CLS]``, ``<s>``);
    a decoder's last real token, ``attention_mask.sum(1) - 1`` under bdbench's right padding (the
    module docstring says why that is transformers' own choice), or the last position
    (``length - 1``) without a mask, as transformers does for ``inputs_embeds``."""
    if not is_decoder(model):
        rows = attention_mask.shape[0] if attention_mask is not None else 1
        return torch.zeros(rows, dtype=torch.long)
    if attention_mask is None:
        if length is None:
            raise ValueError("pooled_positions: a decoder without an attention mask needs the sequence length")
        return torch.tensor([length - 1])
    return (attention_mask.long().sum(1) - 1).clamp(min=0)


def pooled_hidden(model: torch.nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``hidden`` ``[B, T, H]`` at :func:`pooled_positions` → ``[B, H]``."""
    positions = pooled_positions(model, attention_mask, hidden.shape[1]).to(hidden.device)
    positions = positions.expand(hidden.shape[0]) if positions.numel() == 1 else positions
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]


def head_on_hidden(model: torch.nn.Module, method: str = ""):
    """The task head as a map ``head(hidden, attention_mask=None, layer=None)`` from one layer's
    hidden states [B, T, H] to logits [B, C], as the model's own head reads the last layer's,
    minus what ``base_model`` does (BERT's pooler) and minus the dropout the model applies outside
    the head: BERT ``classifier(h[:, 0])``; RoBERTa, ELECTRA ``classifier(h)`` (their head takes
    position 0 itself, its own dropout included); DistilBERT
    ``classifier(ReLU(pre_classifier(h[:, 0])))``; DeBERTa-v2 ``classifier(pooler(h))``; GPT-2,
    Llama, Qwen2 ``score(norm(h)[last real token])``, the final norm applied unless ``layer`` is
    the last (``hidden_states[L]`` already has it; layers 1..L, None = an inner layer). Encoders
    ignore ``attention_mask`` and ``layer``; a decoder without a mask reads the last position."""
    entry = family(model, method, "the task head")
    kind = entry.head
    if kind == "cls_linear":
        return lambda hidden, attention_mask=None, layer=None: model.classifier(hidden[:, 0])
    if kind == "sequence":
        return lambda hidden, attention_mask=None, layer=None: model.classifier(hidden)
    if kind == "pre_classifier":
        return lambda hidden, attention_mask=None, layer=None: model.classifier(
            torch.relu(model.pre_classifier(hidden[:, 0])))
    if kind == "context_pooler":
        return lambda hidden, attention_mask=None, layer=None: model.classifier(model.pooler(hidden))
    norm = _path(model.base_model, entry.final_norm)
    last = model.config.num_hidden_layers

    def decoder_head(hidden, attention_mask=None, layer=None):
        pooled = pooled_hidden(model, hidden, attention_mask)
        return model.score(pooled if layer == last else norm(pooled))

    return decoder_head


# --------------------------------------------------------------------------- generic

def word_embeddings(model: torch.nn.Module) -> torch.nn.Embedding:
    """The input word-embedding matrix (``[vocab, embedding size]``; ELECTRA's may be narrower
    than the hidden size)."""
    return model.get_input_embeddings()


def task_head(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The task head: the model's direct children outside ``base_model`` that hold parameters,
    by name, in definition order (BERT ``classifier``; RoBERTa ``classifier``; DistilBERT
    ``pre_classifier``, ``classifier``; DeBERTa-v2 ``pooler``, ``classifier``; GPT-2, Llama,
    Qwen2 ``score``, a bias-free Linear that no language-model checkpoint has)."""
    base = model.base_model
    return [(name, m) for name, m in model.named_children() if m is not base and any(True for _ in m.parameters())]


def pooler(model: torch.nn.Module) -> torch.nn.Module | None:
    """The base model's pooler (BERT: dense + tanh on [CLS]), None where it has none (every decoder)."""
    return getattr(model.base_model, "pooler", None)


@torch.no_grad()
def redraw(module: torch.nn.Module, generator: torch.Generator, std: float = 0.02) -> None:
    """The BERT (and GPT-2, Llama) init scheme on ``module``'s dense and norm sub-modules, in
    module order: Linear and transformers ``Conv1D`` weights N(0, std²) from ``generator``, biases 0;
    LayerNorm and RMSNorm weight 1, bias 0."""
    for sub in module.modules():
        if isinstance(sub, torch.nn.Linear) or type(sub).__name__ == "Conv1D":
            sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator) * std)
            if sub.bias is not None:
                sub.bias.zero_()
        elif isinstance(sub, torch.nn.LayerNorm) or type(sub).__name__.endswith("RMSNorm"):
            sub.weight.fill_(1.0)
            if getattr(sub, "bias", None) is not None:
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
    """Layers numbered 1..L (layer ``l`` is ``hidden_states[l]``; 0, the embedding
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
