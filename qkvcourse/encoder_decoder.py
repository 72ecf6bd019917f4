"""The encoder–decoder interface shared by the RNN and Transformer models (chapters 4, 7).

Shape legend: B batch, S source length, T target length, V vocabulary size,
N model width.

The contract, which greedy and beam search rely on:

- ``encoder(src (B, S) token ids, src_valid_lens (B,))`` returns the encoder's
  outputs (any structure the matching decoder understands).
- ``decoder.init_state(enc_outputs, src_valid_lens)`` returns the decoding state.
- ``decoder(tgt (B, T) token ids, state)`` returns ``(logits (B, T, V), state)``.
  Called with the whole target (teacher forcing) or one token at a time with the
  returned state (generation); both give the same logits for the same prefix.
- ``decoder.reorder_state(state, index (B',))`` selects (and repeats) batch rows of a
  state, which is how beam search follows its surviving hypotheses.
- ``decoder.attention_weights`` holds the weights recorded by the last call, when the
  decoder records them (see each decoder).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

from ._validate import check_floating, check_tensor, check_token_ids, shape_str, value_range


class Encoder(nn.Module):
    """Base class of encoders: ``forward(src (B, S), src_valid_lens (B,) | None)``."""

    def forward(self, src: Tensor, src_valid_lens: Tensor | None = None) -> Any:
        raise NotImplementedError


class Decoder(nn.Module):
    """Base class of decoders; see the module docstring for the contract."""

    def init_state(self, enc_outputs: Any, src_valid_lens: Tensor | None = None) -> Any:
        raise NotImplementedError

    def forward(self, tgt: Tensor, state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def reorder_state(self, state: Any, index: Tensor) -> Any:
        """Default: index dimension 0 of every tensor in a nested tuple/list/dict state."""
        return map_state(state, lambda t: t.index_select(0, index))


def map_state(state: Any, fn) -> Any:
    """Apply ``fn`` to every tensor of a nested tuple / list / dict, keeping the structure."""
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple
        return type(state)(*(map_state(s, fn) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(s, fn) for s in state)
    if isinstance(state, dict):
        return {k: map_state(v, fn) for k, v in state.items()}
    return state


class EncoderDecoder(nn.Module):
    """``EncoderDecoder(encoder, decoder)``: the composition both model families share.

    ``forward(src (B, S), tgt (B, T), src_valid_lens (B,))`` returns the decoder's
    logits ``(B, T, V)`` under teacher forcing.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, src: Tensor, tgt: Tensor, src_valid_lens: Tensor | None = None) -> Tensor:
        enc_outputs = self.encoder(src, src_valid_lens)
        state = self.decoder.init_state(enc_outputs, src_valid_lens)
        return self.decoder(tgt, state)[0]


def sequence_loss(logits: Tensor, targets: Tensor, pad_id: int,
                  label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over the non-padding target tokens.

    Args:
        logits: ``(B, T, V)``.
        targets: ``(B, T)`` token ids; positions equal to ``pad_id`` do not count.

    Returns:
        A 0-dim float32 loss; 0 (not NaN) when every target is padding.
    """
    check_tensor("logits", logits, ndim=3)
    check_floating("logits", logits)
    check_tensor("targets", targets, ndim=2)
    check_token_ids("targets", targets)
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits (B, T, V) and targets (B, T) disagree: logits has shape "
                         f"{shape_str(logits)}, targets has shape {shape_str(targets)}")
    V = logits.shape[-1]
    bounds = value_range(targets.masked_fill(targets == pad_id, 0))
    if bounds is not None and (bounds[0] < 0 or bounds[1] >= V):
        raise ValueError(f"targets must lie in [0, {V}) (the vocabulary of the logits, shape "
                         f"{shape_str(logits)}) or equal pad_id={pad_id}, got values from "
                         f"{bounds[0]} to {bounds[1]}")
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                             ignore_index=pad_id, label_smoothing=label_smoothing,
                             reduction="none")  # (B*T,), 0 at padding
    # Sum over the counted tokens / their number; a batch of padding only gives 0, not 0/0
    return losses.sum() / (targets != pad_id).sum().clamp_min(1)
