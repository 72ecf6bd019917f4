"""Positional information (chapter 6).

Self-attention is permutation-equivariant: shuffle the tokens and the outputs
are shuffled the same way. Order must therefore be injected. Three ways:

- :class:`PositionalEncoding`: fixed sinusoids added to the inputs
  (Vaswani et al., 2017, section 3.5), d2l's semantics;
- :class:`LearnedPositionalEncoding`: one trained vector per position (as in GPT and BERT);
- :class:`RotaryEmbedding`: rotate query and key feature pairs by an angle
  proportional to the position (Su et al., 2021), so that qᵀk depends on the
  positions only through their difference.

Shape legend: B batch, T sequence length, N = num_hiddens, D head size.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._validate import (check_dropout, check_floating, check_real, check_size, check_tensor,
                        shape_str)


def sinusoidal_table(max_len: int, num_hiddens: int, base: float = 10000.0) -> Tensor:
    """``(max_len, N)`` table P with P[i, 2j] = sin(i/base^(2j/N)), P[i, 2j+1] = cos(same)."""
    _check_table_args(max_len, num_hiddens, base)
    positions = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    # i / base^(2j/N) as written (a division, as d2l computes it, so the two tables agree
    # bit for bit; multiplying by base^(-2j/N) instead differs by float32 rounding, ~6e-5)
    freq_denominator = base ** (torch.arange(0, num_hiddens, 2, dtype=torch.float32) / num_hiddens)
    angles = positions / freq_denominator  # (max_len, N/2)
    table = torch.empty(max_len, num_hiddens)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table


def _check_table_args(max_len, num_hiddens, base) -> None:
    check_size("max_len", max_len)
    check_size("num_hiddens", num_hiddens)
    _check_base(base)
    if num_hiddens % 2:
        raise ValueError(f"num_hiddens must be even for sinusoidal encodings, got {num_hiddens}")


def _check_base(base) -> None:
    check_real("base", base, minimum=0.0, strict=True,
               what="the wavelengths grow as powers of it; 10000 in the papers")


def _check_encoding_args(num_hiddens, dropout, max_len) -> None:
    check_size("num_hiddens", num_hiddens)
    check_dropout("dropout", dropout)
    check_size("max_len", max_len)


def _check_sequence(X: Tensor, num_hiddens: int, max_len: int, offset: int = 0) -> None:
    check_tensor("X", X, ndim=3)
    check_floating("X", X)
    if X.shape[-1] != num_hiddens:
        raise ValueError(f"X must have num_hiddens={num_hiddens} features (last dimension), "
                         f"got shape {shape_str(X)}")
    check_size("offset", offset, minimum=0)
    if offset + X.shape[1] > max_len:
        where = f" after offset {offset}" if offset else ""
        raise ValueError(f"X has {X.shape[1]} positions (shape {shape_str(X)}){where} but the "
                         f"encoding was built for max_len={max_len}")


class _AddedPositions(nn.Module):
    """What both encodings do with their table ``P (1, max_len, N)``: add its rows, then
    dropout. Subclasses set ``num_hiddens``, ``max_len``, ``P`` and ``dropout``."""

    def forward(self, X: Tensor, offset: int = 0) -> Tensor:
        """``X (B, T, N)``; row t gets the encoding of position ``offset + t``.

        ``offset`` lets a decoder that feeds one new token at a time (with a KV cache)
        encode it at its true position.
        """
        _check_sequence(X, self.num_hiddens, self.max_len, offset)
        return self.add(X, offset)

    def add(self, X: Tensor, offset: int = 0) -> Tensor:
        """:meth:`forward` without its checks, for models that have checked the positions."""
        return self.dropout(X + self.P[:, offset:offset + X.shape[1]].to(X.dtype))  # (B, T, N)


class PositionalEncoding(_AddedPositions):
    """Add sinusoidal position encodings, then dropout: ``X (B, T, N)`` -> ``(B, T, N)``."""

    def __init__(self, num_hiddens: int, dropout: float = 0.0, max_len: int = 1000):
        super().__init__()
        _check_encoding_args(num_hiddens, dropout, max_len)
        self.num_hiddens, self.max_len = num_hiddens, max_len
        self.dropout = nn.Dropout(dropout)
        # A buffer, so .to(device) moves it; not persistent, since it is a pure function of
        # the constructor's arguments and need not be stored in checkpoints.
        self.register_buffer("P", sinusoidal_table(max_len, num_hiddens)[None], persistent=False)


class LearnedPositionalEncoding(_AddedPositions):
    """Add a trained vector per position (GPT / BERT style), then dropout."""

    def __init__(self, num_hiddens: int, dropout: float = 0.0, max_len: int = 1000):
        super().__init__()
        _check_encoding_args(num_hiddens, dropout, max_len)
        self.num_hiddens, self.max_len = num_hiddens, max_len
        self.P = nn.Parameter(torch.randn(1, max_len, num_hiddens) * 0.02)
        self.dropout = nn.Dropout(dropout)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) for queries and keys.

    Feature pairs ``(x[2j], x[2j+1])`` at position m are rotated by the angle
    ``m · base^(-2j/D)``. Rotations compose, so ⟨R_m q, R_n k⟩ = ⟨q, R_{n-m} k⟩:
    the score depends on positions only through n − m.

    ``forward(x (..., T, D), offset=0)`` rotates position ``offset + t`` at row t
    (``offset`` lets a decoder with a KV cache rotate a new token at its true position).
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        check_size("head_dim", head_dim)
        _check_base(base)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {head_dim}")
        self.head_dim = head_dim
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (D/2,)

    def angles(self, length: int, offset: int = 0) -> Tensor:
        """Rotation angles ``(length, D/2)`` of positions offset .. offset + length - 1."""
        # A whole number; negative positions are allowed: R_{-m} is the inverse rotation, which
        # chapter 6 uses to rotate a key to the relative position n - m
        check_size("offset", offset, minimum=None)
        check_size("length", length, minimum=0)
        positions = torch.arange(offset, offset + length, device=self.inv_freq.device,
                                 dtype=torch.float32)
        return positions[:, None] * self.inv_freq  # (T, D/2)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        self._check_inputs(x)
        theta = self.angles(x.shape[-2], offset)  # (T, D/2)
        cos, sin = theta.cos().to(x.dtype), theta.sin().to(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, D/2) each
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(-2)  # (..., T, D), pairs interleaved back

    def _check_inputs(self, x: Tensor) -> None:
        check_tensor("x", x)
        check_floating("x", x)
        if x.dim() < 2 or x.shape[-1] != self.head_dim:
            raise ValueError(f"x must be (..., T, head_dim={self.head_dim}), got shape {shape_str(x)}")
