"""Scaled dot-product and additive attention (chapters 1 and 3).

Shape legend
------------
B batch, H heads (optional), L queries, S keys (= values), E query/key
feature size (``d_k`` in the paper), Ev value feature size.

Mask convention (stated once, for the whole package): a boolean mask is True
where a query may attend to a key, as in ``torch.nn.functional.
scaled_dot_product_attention``. A floating mask is added to the scores.

Two paths, one choice
---------------------
``attention_reference`` is the explicit softmax(QKᵀ·scale + mask)V of Vaswani et
al. (2017), eq. (1): readable, and the only path that can return the attention
weights. The fused path calls PyTorch's SDPA kernel (FlashAttention-style on
CPU and GPU), which never materialises the (L, S) weight matrix. Which one runs
is decided in exactly one function, :func:`use_fused_path`; the
:func:`attention_backend` context manager overrides it, which is how the tests
and benchmarks compare the two.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._validate import (check_dim_match, check_dropout, check_flag, check_floating, check_mask,
                        check_real, check_same_device, check_same_dtype, check_size,
                        check_tensor, check_valid_lens, shape_str)
from .masking import lens_mask, masked_softmax, tril_mask

_BACKENDS = ("auto", "explicit", "fused")
_backend = "auto"


@contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Force a path inside a ``with`` block: ``"explicit"``, ``"fused"`` or ``"auto"``.

    ``"fused"`` cannot return attention weights: asking for weights under it
    raises an error instead of silently switching paths.
    """
    global _backend
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    previous, _backend = _backend, name
    try:
        yield
    finally:
        _backend = previous


def use_fused_path(need_weights: bool) -> bool:
    """The one place where the explicit or fused path is chosen.

    The explicit path runs whenever attention weights are requested (only it
    computes them) or when forced by ``attention_backend("explicit")``;
    otherwise PyTorch's fused kernel runs.
    """
    if _backend == "fused" and need_weights:
        raise RuntimeError("attention weights were requested inside attention_backend('fused'); "
                           "the fused kernel does not compute them")
    if _backend == "explicit":
        return False
    return not need_weights


def _check_qkv(q: Tensor, k: Tensor, v: Tensor, names=("query", "key", "value")) -> None:
    qn, kn, vn = names
    for name, t in zip(names, (q, k, v)):
        check_tensor(name, t)
        check_floating(name, t)
        if t.dim() < 2:
            raise ValueError(f"{name} must be at least 2-D (..., length, features), "
                             f"got shape {shape_str(t)}")
    if not (q.dim() == k.dim() == v.dim()):
        raise ValueError(f"{qn}, {kn} and {vn} must have the same rank, got shapes "
                         f"{shape_str(q)}, {shape_str(k)} and {shape_str(v)}")
    check_same_dtype(**{qn: q, kn: k, vn: v})
    check_same_device(**{qn: q, kn: k, vn: v})
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(f"batch dimensions of {qn}, {kn} and {vn} differ: got shapes "
                         f"{shape_str(q)}, {shape_str(k)} and {shape_str(v)}")
    check_dim_match(qn, q, -1, kn, k, -1, "feature sizes (last dimension)")
    check_dim_match(kn, k, -2, vn, v, -2, "numbers of key-value pairs (dimension -2)")


def _combine_masks(attn_mask: Tensor | None, is_causal: bool, L: int, S: int,
                   device) -> Tensor | None:
    """One mask (boolean, or floating when a floating mask was given) for both paths."""
    if not is_causal:
        return attn_mask
    causal = tril_mask(L, S, device)  # (L, S)
    if attn_mask is None:
        return causal
    if attn_mask.dtype == torch.bool:
        return attn_mask & causal
    return attn_mask.masked_fill(~causal, float("-inf"))


def attention_reference(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                        dropout_p: float = 0.0, scale: float | None = None) -> tuple[Tensor, Tensor]:
    """Explicit attention, eq. (1) of Vaswani et al. (2017). No argument checks.

    Args:
        query: ``(..., L, E)``.
        key: ``(..., S, E)``.
        value: ``(..., S, Ev)``.
        attn_mask: boolean (True = attend) or floating (added), broadcastable to ``(..., L, S)``.
        dropout_p: dropout probability on the weights.
        scale: defaults to 1/sqrt(E).

    Returns:
        ``(output (..., L, Ev), weights (..., L, S))``; the weights are those before dropout.
    """
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    # Scaling the (L, E) queries rather than the (L, S) scores: the same numbers, a smaller pass
    scores = (query * scale) @ key.transpose(-2, -1)  # (..., L, S)
    keep = None
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            keep = attn_mask
        else:
            scores = scores + attn_mask
            keep = ~torch.isneginf(attn_mask)  # -inf in a float mask also means "masked"
    weights = masked_softmax(scores, mask=keep) if keep is not None else F.softmax(scores, -1)
    dropped = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return dropped @ value, weights  # (..., L, Ev), (..., L, S)


def _explicit_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None,
                        dropout_p: float, scale: float | None) -> tuple[Tensor, Tensor]:
    """:func:`attention_reference`, in float32 for half-precision inputs: float16 overflows in
    Q Kᵀ (it stops at 65504), so the scores, the softmax and the weighted sum are computed in
    float32, as PyTorch's fused kernels do, and the results return to the input dtype."""
    dtype = query.dtype
    if dtype not in (torch.float16, torch.bfloat16):
        return attention_reference(query, key, value, attn_mask, dropout_p, scale)
    if attn_mask is not None and attn_mask.is_floating_point():
        attn_mask = attn_mask.float()
    out, weights = attention_reference(query.float(), key.float(), value.float(), attn_mask,
                                       dropout_p, scale)
    return out.to(dtype), weights.to(dtype)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None, *,
                                 need_weights: bool = False):
    """softmax(Q Kᵀ · scale + mask) V, with the arguments of ``F.scaled_dot_product_attention``.

    Args:
        query: ``(..., L, E)``; key: ``(..., S, E)``; value: ``(..., S, Ev)``.
        attn_mask: boolean (True = attend) or floating (added to the scores),
            broadcastable to ``(..., L, S)``.
        dropout_p: dropout on the attention weights (applied whenever > 0, as in PyTorch;
            modules pass 0 in eval mode).
        is_causal: query i attends to keys 0..i (top-left aligned). May be combined
            with ``attn_mask``; the masks are intersected.
        scale: defaults to 1/sqrt(E).
        need_weights: also return the attention weights (explicit path).

    Returns:
        ``output (..., L, Ev)``, or ``(output, weights (..., L, S))`` if ``need_weights``.
        Queries that can attend to no key get a zero output (and zero weights).
    """
    _check_sdpa_args(query, key, value, attn_mask, dropout_p, scale)
    _check_flags(is_causal, need_weights)
    return _attend(query, key, value, attn_mask, dropout_p, is_causal, scale, need_weights)


def _check_sdpa_args(query, key, value, attn_mask, dropout_p, scale) -> None:
    _check_qkv(query, key, value)
    L, S = query.size(-2), key.size(-2)
    if attn_mask is not None:
        check_mask("attn_mask", attn_mask, (*query.shape[:-2], L, S))
        _check_mask_dtype(attn_mask, query.dtype, "the query's")
    check_dropout("dropout_p", dropout_p)
    if scale is not None:
        check_real("scale", scale, minimum=0.0, strict=True)


def _attend(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None, dropout_p: float,
            is_causal: bool, scale: float | None, need_weights: bool):
    """:func:`scaled_dot_product_attention` without argument checks (callers have made them)."""
    L, S = query.size(-2), key.size(-2)
    if attn_mask is not None:
        attn_mask = attn_mask.to(query.device)
    if is_causal and attn_mask is None and use_fused_path(need_weights):
        # Causal and nothing else: PyTorch's own flag (top-left aligned, like causal_mask)
        # lets FlashAttention kernels skip the masked tiles. No row is ever fully masked:
        # every query sees key 0.
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p,
                                              is_causal=True, scale=scale)
    mask = _combine_masks(attn_mask, is_causal, L, S, query.device)

    if not use_fused_path(need_weights):
        out, weights = _explicit_attention(query, key, value, mask, dropout_p, scale)
        return (out, weights) if need_weights else out

    empty = None
    if mask is not None:
        if mask.dim() < 2:
            mask = mask[None]  # (S,) -> (1, S): PyTorch's fused CPU kernel rejects a 1-D mask
        # Queries that may attend to no key: some fused kernels (CUDA memory-efficient,
        # cuDNN) give them NaN outputs or NaN gradients. Let them attend everywhere inside
        # the kernel, then zero their outputs (which also zeroes their gradients), so every
        # device follows the package's convention, forward and backward.
        keep = mask if mask.dtype == torch.bool else ~torch.isneginf(mask)
        empty = ~keep.any(-1, keepdim=True)  # (..., L, 1)
        mask = mask | empty if mask.dtype == torch.bool else mask.masked_fill(empty, 0.0)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask,
                                         dropout_p=dropout_p, scale=scale)
    if empty is not None:
        out = out.masked_fill(empty, 0.0)
    return out


def _mask_from_valid_lens(valid_lens: Tensor | None, attn_mask: Tensor | None,
                          queries: Tensor, keys: Tensor) -> Tensor | None:
    """Turn d2l-style ``valid_lens`` into a boolean mask broadcastable to the scores (no checks:
    see :func:`check_attention_inputs`).

    ``queries`` is ``(B, L, E)`` or ``(B, H, L, E)``; the mask comes back as
    ``(B, 1|L, S)`` or ``(B, 1, 1|L, S)``, combined with ``attn_mask`` if given.
    """
    if valid_lens is None:
        return attn_mask
    mask = lens_mask(valid_lens.to(queries.device), keys.shape[-2])  # (B, 1|L, S)
    if queries.dim() == 4:
        mask = mask.unsqueeze(1)  # (B, 1, 1|L, S): one set of lengths for every head
    if attn_mask is None:
        return mask
    if attn_mask.dtype == torch.bool:
        return mask & attn_mask
    return attn_mask.masked_fill(~mask, float("-inf"))


def check_attention_inputs(queries: Tensor, keys: Tensor, values: Tensor,
                           valid_lens: Tensor | None, attn_mask: Tensor | None) -> None:
    """The checks of :class:`DotProductAttention` (and of multi-head attention after its
    projections): ``(B, [H,] L, E)`` queries, matching keys and values, valid lengths and a
    mask that fit the scores ``(B, [H,] L, S)``."""
    _check_qkv(queries, keys, values, names=("queries", "keys", "values"))
    if queries.dim() not in (3, 4):
        raise ValueError(f"queries must be 3-D (B, L, E) or 4-D (B, H, L, E), "
                         f"got shape {shape_str(queries)}")
    L, S = queries.shape[-2], keys.shape[-2]
    check_lens_and_mask(queries, S, valid_lens, attn_mask, (*queries.shape[:-2], L, S))


def check_lens_and_mask(queries: Tensor, num_keys: int, valid_lens: Tensor | None,
                        attn_mask: Tensor | None, mask_shape: tuple[int, ...]) -> None:
    """``valid_lens`` ``(B,)`` or ``(B, L)`` within ``[0, num_keys]``, and an ``attn_mask``
    broadcastable to ``mask_shape`` (of the queries' dtype when floating)."""
    if valid_lens is not None:
        check_valid_lens(valid_lens, queries.shape[0], queries.shape[-2], num_keys,
                         scores_name="queries")
    if attn_mask is not None:
        check_mask("attn_mask", attn_mask, mask_shape)
        _check_mask_dtype(attn_mask, queries.dtype, "the queries'")


def _check_flags(is_causal, need_weights) -> None:
    """``is_causal`` a bool; ``need_weights`` a bool or None (the module's own setting)."""
    check_flag("is_causal", is_causal)
    if need_weights is not None:
        check_flag("need_weights", need_weights)


def _check_mask_dtype(attn_mask: Tensor, dtype: torch.dtype, whose: str) -> None:
    if attn_mask.is_floating_point() and attn_mask.dtype != dtype:
        raise TypeError(f"a floating attn_mask must have {whose} dtype {dtype}, got "
                        f"{attn_mask.dtype} with shape {shape_str(attn_mask)}")


class DotProductAttention(nn.Module):
    """Scaled dot-product attention as a module (d2l's signature).

    ``forward(queries (B, L, E), keys (B, S, E), values (B, S, Ev), valid_lens=None)``
    returns ``(B, L, Ev)``; 4-D inputs with a head axis ``(B, H, ...)`` work too.
    With ``need_weights=True`` (the default, as in d2l) the weights, before
    dropout, are kept in ``self.attention_weights`` ``(B, [H,] L, S)``; with
    ``need_weights=False`` the fused kernel runs and ``attention_weights`` is None.
    """

    def __init__(self, dropout: float = 0.0, need_weights: bool = True):
        super().__init__()
        check_dropout("dropout", dropout)
        check_flag("need_weights", need_weights)
        self.dropout = nn.Dropout(dropout)
        self.need_weights = need_weights
        self.attention_weights: Tensor | None = None

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor,
                valid_lens: Tensor | None = None, attn_mask: Tensor | None = None,
                is_causal: bool = False, need_weights: bool | None = None) -> Tensor:
        check_attention_inputs(queries, keys, values, valid_lens, attn_mask)
        _check_flags(is_causal, need_weights)
        return self.attend(queries, keys, values, valid_lens, attn_mask, is_causal, need_weights)

    def attend(self, queries: Tensor, keys: Tensor, values: Tensor,
               valid_lens: Tensor | None = None, attn_mask: Tensor | None = None,
               is_causal: bool = False, need_weights: bool | None = None) -> Tensor:
        """:meth:`forward` without argument checks, for layers that have checked them."""
        need_weights = self.need_weights if need_weights is None else need_weights
        mask = _mask_from_valid_lens(valid_lens, attn_mask, queries, keys)
        p = self.dropout.p if self.training else 0.0
        result = _attend(queries, keys, values, mask, p, is_causal, None, need_weights)
        if need_weights:
            out, self.attention_weights = result
            return out
        self.attention_weights = None
        return result


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: score(q, k) = w_vᵀ tanh(W_q q + W_k k).

    ``AdditiveAttention(num_hiddens, dropout)`` has d2l's signature, where the
    input sizes are inferred at the first call (``nn.LazyLinear``). Pass
    ``query_size`` and ``key_size`` to build ordinary ``nn.Linear`` layers with
    their sizes visible up front, as the rest of the package does.

    ``forward(queries (B, L, Eq), keys (B, S, Ek), values (B, S, Ev), valid_lens=None)``
    returns ``(B, L, Ev)``; the weights are kept in ``self.attention_weights`` ``(B, L, S)``.
    """

    def __init__(self, num_hiddens: int, dropout: float = 0.0, query_size: int | None = None,
                 key_size: int | None = None):
        super().__init__()
        check_size("num_hiddens", num_hiddens)
        check_dropout("dropout", dropout)
        for name, size in (("query_size", query_size), ("key_size", key_size)):
            if size is not None:
                check_size(name, size)

        def linear(in_size, out_size):
            return (nn.LazyLinear(out_size, bias=False) if in_size is None
                    else nn.Linear(in_size, out_size, bias=False))
        self.W_q = linear(query_size, num_hiddens)
        self.W_k = linear(key_size, num_hiddens)
        self.w_v = linear(None if query_size is None else num_hiddens, 1)
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: Tensor | None = None

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor,
                valid_lens: Tensor | None = None) -> Tensor:
        self._check_inputs(queries, keys, values)  # valid_lens: checked by masked_softmax
        q, k = self.W_q(queries), self.W_k(keys)  # (B, L, h), (B, S, h)
        # Every query meets every key: (B, L, 1, h) + (B, 1, S, h) -> (B, L, S, h)
        features = torch.tanh(q.unsqueeze(2) + k.unsqueeze(1))
        scores = self.w_v(features).squeeze(-1)  # (B, L, S)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return self.dropout(self.attention_weights) @ values  # (B, L, Ev)

    def _check_inputs(self, queries: Tensor, keys: Tensor, values: Tensor) -> None:
        for name, t in (("queries", queries), ("keys", keys), ("values", values)):
            check_tensor(name, t, ndim=3)
            check_floating(name, t)
        check_same_dtype(queries=queries, keys=keys, values=values)
        check_dim_match("queries", queries, 0, "keys", keys, 0, "batch sizes")
        check_dim_match("keys", keys, 0, "values", values, 0, "batch sizes")
        check_dim_match("keys", keys, 1, "values", values, 1, "numbers of key-value pairs")
        for name, t, layer in (("queries", queries, self.W_q), ("keys", keys, self.W_k)):
            # Sizes are known once given (or once a lazy layer has seen its first input).
            if not isinstance(layer, nn.modules.lazy.LazyModuleMixin) \
                    and t.shape[-1] != layer.in_features:
                raise ValueError(f"{name} must have {layer.in_features} features (last "
                                 f"dimension), got shape {shape_str(t)}")
