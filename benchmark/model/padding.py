"""Padding rules for decoder-only victims (GPT-2, Llama, Qwen2; methods.md F6), applied at load time.

A decoder's sequence-classification head reads the rightmost token whose id is not
``config.pad_token_id`` (transformers ignores ``attention_mask`` there). bdbench pads on the right
(:func:`benchmark.model.encoding.collate`), so that token is each text's last real token exactly
when no text *ends* in the pad id. The rules that make it so:

* **a pad token on both sides**: the tokenizer's own pad token where it has one (Qwen2:
  ``<|endoftext|>``), else its EOS (GPT-2 and Llama ship without one; MuScleLoRA and W2SDefense
  use pad = EOS as well); the model's ``config.pad_token_id`` is set to the same id, and
  :func:`check_pad_agreement` refuses a victim whose two disagree;
* **nothing appended**: a tokenizer that appends its pad id to every text (EOS appended, pad =
  EOS) is refused, since the head would then read the token before it;
* **special-token strings are text**: ``split_special_tokens`` is set, so that a literal
  ``<|endoftext|>`` in a review is tokenised as characters, never as the pad/EOS id;
* **right padding** for anything that pads with the tokenizer itself (``padding_side``), which
  GPT-2's learned absolute positions need as well (left padding shifts them).

Encoders are left exactly as they load (their pad token is part of their vocabulary, and the
head reads position 0).
"""

from __future__ import annotations

from ..base.errors import CheckpointError
from .architecture import DECODERS


def is_decoder_type(model_type: str | None) -> bool:
    """True for the decoder families of :mod:`benchmark.model.architecture`."""
    return model_type in DECODERS


def first_id(value) -> int | None:
    """A config's token id field as one id (``eos_token_id`` may be a list)."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def prepare_decoder_tokenizer(tokenizer, location: str) -> None:
    """Apply the module's rules to a decoder's tokenizer, in place; a :class:`CheckpointError`
    naming ``location`` when it has neither pad nor EOS token, or appends its pad id."""
    tokenizer.padding_side = "right"
    tokenizer.split_special_tokens = True
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise CheckpointError(f"{location}: a decoder tokenizer with neither a pad nor an EOS token; "
                                  "bdbench cannot tell padding from text (set pad_token in tokenizer_config.json)")
        tokenizer.pad_token = tokenizer.eos_token
    probe = tokenizer("a b")["input_ids"]
    if probe and probe[-1] == tokenizer.pad_token_id:
        raise CheckpointError(f"{location}: the tokenizer appends its pad token {tokenizer.pad_token!r} to every "
                              "text, so a decoder's head would read the token before it; turn off the appended "
                              "token (e.g. add_eos_token false in tokenizer_config.json) or give another pad token")


def decoder_pad_id(config, tokenizer=None) -> int | None:
    """The pad id a decoder's config should carry: its own, else the tokenizer's (the same
    folder's), else its EOS id."""
    if config.pad_token_id is not None:
        return config.pad_token_id
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return first_id(getattr(config, "eos_token_id", None))


def check_pad_agreement(tokenizer, config, location: str) -> None:
    """Refuse a decoder victim whose tokenizer and config pad ids differ (the head would read the
    wrong position)."""
    pad = decoder_pad_id(config, tokenizer)
    if tokenizer.pad_token_id != pad:
        raise CheckpointError(f"{location}: the tokenizer's pad token id {tokenizer.pad_token_id} is not the "
                              f"config's pad_token_id {pad}; a decoder's head finds each text's last token by it. "
                              "Make them equal in config.json")
