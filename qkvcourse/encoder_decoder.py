"""The encoder–decoder interface shared by the RNN and Transformer models (chapters 4, 7).

Their training loss, :func:`~qkvcourse.losses.sequence_loss`, is in :mod:`qkvcourse.losses`.

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
    if not callable(fn):
        raise TypeError(f"fn must be callable (Tensor -> Tensor), got {type(fn).__name__}")
    return _map_state(state, fn)


def _map_state(state: Any, fn) -> Any:
    if isinstance(state, Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple
        return type(state)(*(_map_state(s, fn) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(_map_state(s, fn) for s in state)
    if isinstance(state, dict):
        return {k: _map_state(v, fn) for k, v in state.items()}
    return state


class EncoderDecoder(nn.Module):
    """``EncoderDecoder(encoder, decoder)``: the composition both model families share.

    ``forward(src (B, S), tgt (B, T), src_valid_lens (B,))`` returns the decoder's
    logits ``(B, T, V)`` under teacher forcing.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder):
        super().__init__()
        for name, part in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(part, nn.Module):
                raise TypeError(f"{name} must be an nn.Module (an Encoder or Decoder), got "
                                f"{type(part).__name__}")
        self.encoder, self.decoder = encoder, decoder

    def forward(self, src: Tensor, tgt: Tensor, src_valid_lens: Tensor | None = None) -> Tensor:
        enc_outputs = self.encoder(src, src_valid_lens)
        state = self.decoder.init_state(enc_outputs, src_valid_lens)
        return self.decoder(tgt, state)[0]
