"""Masks and the masked softmax (chapter 3).

One convention, the one PyTorch's ``scaled_dot_product_attention`` uses:

    a boolean mask is ``True`` where a query may attend to a key.

The d2l-style ``valid_lens`` API is built on top of it: ``valid_lens`` is turned
into such a boolean mask by :func:`valid_lens_to_mask`.

Shape legend: B batch, H heads, Q (or L) queries, K (or S) keys.

Fully masked rows
-----------------
A query whose every key is masked out attends to nothing. Its softmax would be
``0 / 0``; here it is defined as a row of zeros, so the attention output for
that query is the zero vector and no NaN appears in the forward or backward
pass. (d2l's ``masked_softmax`` gives such a row uniform weights instead,
because it fills masked scores with ``-1e6``; the course's tests check this
difference explicitly.)
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ._validate import (check_floating, check_lens_values, check_mask, check_size, check_tensor,
                        check_valid_lens, shape_str)


def _check_lens_for_mask(valid_lens, num_keys) -> None:
    check_size("num_keys", num_keys, minimum=0)
    check_lens_values(valid_lens, num_keys)


def valid_lens_to_mask(valid_lens: Tensor, num_keys: int) -> Tensor:
    """Boolean mask from d2l-style ``valid_lens`` (True = attend).

    Args:
        valid_lens: ``(B,)``, one length per batch row, or ``(B, Q)``, one per query.
        num_keys: K, the number of keys.

    Returns:
        ``(B, 1, K)`` for 1-D ``valid_lens`` (broadcasts over queries) or
        ``(B, Q, K)`` for 2-D; entry ``[b, i, j]`` is ``j < valid_lens[b(, i)]``.
    """
    _check_lens_for_mask(valid_lens, num_keys)
    return lens_mask(valid_lens, num_keys)


def lens_mask(valid_lens: Tensor, num_keys: int) -> Tensor:
    """:func:`valid_lens_to_mask` without argument checks, for callers that have made them."""
    positions = torch.arange(num_keys, device=valid_lens.device)  # (K,)
    if valid_lens.dim() == 1:
        return positions < valid_lens[:, None, None]  # (B, 1, K)
    return positions < valid_lens[:, :, None]  # (B, Q, K)


def causal_mask(num_queries: int, num_keys: int | None = None, device=None) -> Tensor:
    """``(Q, K)`` boolean mask, True on and below the diagonal: query i sees keys 0..i.

    Aligned at the top-left corner, like ``is_causal=True`` in PyTorch's SDPA.
    """
    check_size("num_queries", num_queries, minimum=0)
    num_keys = num_queries if num_keys is None else num_keys
    check_size("num_keys", num_keys, minimum=0)
    return tril_mask(num_queries, num_keys, device)


def tril_mask(num_queries: int, num_keys: int, device=None) -> Tensor:
    """:func:`causal_mask` without its checks, for the layers (their sizes come from shapes)."""
    return torch.ones(num_queries, num_keys, dtype=torch.bool, device=device).tril()


def masked_softmax(X: Tensor, valid_lens: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Softmax over the last axis of ``X`` that gives masked positions zero weight.

    Args:
        X: attention scores, ``(B, Q, K)`` or ``(B, H, Q, K)`` when ``valid_lens`` is
            given; any shape ``(..., K)`` with ``mask`` alone.
        valid_lens: d2l semantics. None (no masking), ``(B,)`` (the first
            ``valid_lens[b]`` keys are valid for every query of row b) or ``(B, Q)``
            (one length per query). Integer dtype, values in ``[0, K]``.
        mask: boolean, broadcastable to ``X.shape``, True = attend (PyTorch SDPA's
            convention). Combined with ``valid_lens`` by logical and.

    Returns:
        Weights of ``X``'s shape; each row sums to 1, except fully masked rows, which
        are all zeros (see the module docstring).
    """
    check_tensor("X", X)
    check_floating("X", X)
    if X.dim() == 0:
        raise ValueError("X must have at least one dimension (the keys), got a scalar")
    keep = None
    if valid_lens is not None:
        if X.dim() not in (3, 4):
            raise ValueError(
                f"with valid_lens, X must be 3-D (B, Q, K) or 4-D (B, H, Q, K), got shape {shape_str(X)}"
            )
        B, Q, K = X.shape[0], X.shape[-2], X.shape[-1]
        check_valid_lens(valid_lens, B, Q, K, scores_name="X")
        keep = lens_mask(valid_lens.to(X.device), K)  # (B, 1|Q, K)
        if X.dim() == 4:
            keep = keep.unsqueeze(1)  # (B, 1, 1|Q, K): the same lengths for every head
    if mask is not None:
        check_mask("mask", mask, X.shape, allow_float=False)
        mask = mask.to(X.device)
        keep = mask if keep is None else keep & mask
    # Half-precision scores are exponentiated and summed in float32 (as PyTorch's fused
    # kernels do), then the weights return to X's dtype.
    upcast = torch.float32 if X.dtype in (torch.float16, torch.bfloat16) else None
    if keep is None:
        return F.softmax(X, dim=-1, dtype=upcast).to(X.dtype)
    # The smallest finite value, not -inf: a fully masked row then gives a finite
    # (uniform) softmax, which the second masked_fill turns into zeros. No NaN is
    # ever formed, so none can leak into the backward pass either.
    scores = X.masked_fill(~keep, torch.finfo(X.dtype).min)
    return F.softmax(scores, dim=-1, dtype=upcast).to(X.dtype).masked_fill(~keep, 0.0)
