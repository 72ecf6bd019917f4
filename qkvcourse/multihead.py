"""Multi-head attention (chapter 5), Vaswani et al. (2017), section 3.2.2.

Shape legend: B batch, L queries, S key-value pairs, H heads (``num_heads``),
D = num_hiddens / H per-head size (``d_k`` in the paper), N = num_hiddens.

MultiHead(X_q, X_kv) = Concat(head_1, ..., head_h) W_o,
head_i = Attention(X_q W_q^i, X_kv W_k^i, X_kv W_v^i),

where X_q are the layer's query-side inputs and X_kv its key-value inputs (the paper writes
them Q, K, V; in this course Q, K, V are the projections, see book/notation.md).

All heads' projections are computed by one ``nn.Linear`` each (``W_q`` maps N
inputs to H·D = N outputs); the heads are then split off the feature axis.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._validate import check_dim_match, check_floating, check_size, check_tensor, shape_str
from .attention import DotProductAttention


def _check_heads(X: Tensor, num_heads: int, name: str = "X") -> None:
    check_tensor(name, X, ndim=3)
    if num_heads <= 0 or X.shape[-1] % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide the feature size of {name}, "
                         f"got shape {shape_str(X)}")


def split_heads(X: Tensor, num_heads: int) -> Tensor:
    """``(B, T, H*D)`` -> ``(B, H, T, D)``: a view followed by a transpose, no copy."""
    _check_heads(X, num_heads)
    B, T, N = X.shape
    return X.view(B, T, num_heads, N // num_heads).transpose(1, 2)  # (B, H, T, D)


def merge_heads(X: Tensor) -> Tensor:
    """``(B, H, T, D)`` -> ``(B, T, H*D)``, the inverse of :func:`split_heads`."""
    check_tensor("X", X, ndim=4)
    B, H, T, D = X.shape
    return X.transpose(1, 2).reshape(B, T, H * D)  # (B, T, H*D)


def transpose_qkv(X: Tensor, num_heads: int) -> Tensor:
    """d2l's layout: ``(B, T, H*D)`` -> ``(B*H, T, D)``, heads folded into the batch.

    Row ``b*H + h`` of the result is head h of batch row b, so 3-D batched
    matrix products treat every head as an independent sequence.
    """
    _check_heads(X, num_heads)
    B, T, N = X.shape
    X = X.reshape(B, T, num_heads, N // num_heads)  # (B, T, H, D)
    X = X.permute(0, 2, 1, 3)  # (B, H, T, D)
    return X.reshape(B * num_heads, T, N // num_heads)  # (B*H, T, D)


def transpose_output(X: Tensor, num_heads: int) -> Tensor:
    """Reverse :func:`transpose_qkv`: ``(B*H, T, D)`` -> ``(B, T, H*D)``."""
    check_tensor("X", X, ndim=3)
    if num_heads <= 0 or X.shape[0] % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide the first dimension (B*H) of X, "
                         f"got shape {shape_str(X)}")
    BH, T, D = X.shape
    X = X.reshape(BH // num_heads, num_heads, T, D)  # (B, H, T, D)
    X = X.permute(0, 2, 1, 3)  # (B, T, H, D)
    return X.reshape(BH // num_heads, T, num_heads * D)  # (B, T, H*D)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with d2l's signature and ``nn.Linear`` projections.

    Args:
        num_hiddens: N, the model width (``d_model``); must be divisible by ``num_heads``.
        num_heads: H.
        dropout: dropout on the attention weights.
        bias: whether the four projections have biases.
        query_size, key_size, value_size: input widths, default N (use them when the
            queries and the key-value pairs come with other widths, e.g. cross-attention).
        need_weights: run the explicit path and keep the weights in
            ``self.attention_weights`` ``(B, H, L, S)``; otherwise the fused kernel runs.

    ``forward(queries (B, L, Eq), keys (B, S, Ek), values (B, S, Ev), valid_lens=None)``
    returns ``(B, L, N)``. ``valid_lens`` is ``(B,)`` or ``(B, L)`` and applies to
    every head; ``attn_mask`` (boolean, True = attend, broadcastable to
    ``(B, H, L, S)``) and ``is_causal`` are also accepted.
    """

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float = 0.0,
                 bias: bool = False, *, query_size: int | None = None,
                 key_size: int | None = None, value_size: int | None = None,
                 need_weights: bool = False):
        super().__init__()
        check_size("num_hiddens", num_hiddens)
        for name, size in (("query_size", query_size), ("key_size", key_size),
                           ("value_size", value_size)):
            if size is not None:
                check_size(name, size)
        if num_heads <= 0 or num_hiddens % num_heads != 0:
            raise ValueError(f"num_heads must be a positive divisor of num_hiddens, "
                             f"got num_hiddens={num_hiddens}, num_heads={num_heads}")
        self.num_hiddens, self.num_heads = num_hiddens, num_heads
        self.W_q = nn.Linear(query_size or num_hiddens, num_hiddens, bias=bias)
        self.W_k = nn.Linear(key_size or num_hiddens, num_hiddens, bias=bias)
        self.W_v = nn.Linear(value_size or num_hiddens, num_hiddens, bias=bias)
        self.W_o = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.attention = DotProductAttention(dropout, need_weights=need_weights)

    @property
    def need_weights(self) -> bool:
        return self.attention.need_weights

    @need_weights.setter
    def need_weights(self, value: bool) -> None:
        self.attention.need_weights = value

    @property
    def attention_weights(self) -> Tensor | None:
        """``(B, H, L, S)`` from the last forward pass run with weights, else None."""
        return self.attention.attention_weights

    def _check_inputs(self, queries: Tensor, keys: Tensor, values: Tensor) -> None:
        for name, t, layer in (("queries", queries, self.W_q), ("keys", keys, self.W_k),
                               ("values", values, self.W_v)):
            check_tensor(name, t, ndim=3)
            check_floating(name, t)
            if t.shape[-1] != layer.in_features:
                raise ValueError(f"{name} must have {layer.in_features} features (last "
                                 f"dimension), got shape {shape_str(t)}")
        check_dim_match("queries", queries, 0, "keys", keys, 0, "batch sizes")
        check_dim_match("keys", keys, 0, "values", values, 0, "batch sizes")
        check_dim_match("keys", keys, 1, "values", values, 1, "numbers of key-value pairs")

    def project(self, queries: Tensor, keys: Tensor, values: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        """The per-head projections: ``(B, H, L, D)``, ``(B, H, S, D)``, ``(B, H, S, D)``.

        For self-attention (one tensor passed three times) the three projections are
        one matrix product with the stacked weights [W_q; W_k; W_v]: the same numbers
        as three products, but one larger GEMM forward and one backward, which is faster.
        """
        H = self.num_heads
        if queries is keys and keys is values and \
                self.W_q.in_features == self.W_k.in_features == self.W_v.in_features:
            weight = torch.cat((self.W_q.weight, self.W_k.weight, self.W_v.weight))  # (3N, Eq)
            bias = None if self.W_q.bias is None else \
                torch.cat((self.W_q.bias, self.W_k.bias, self.W_v.bias))  # (3N,)
            qkv = F.linear(queries, weight, bias)  # (B, L, 3N)
            q, k, v = qkv.split(self.num_hiddens, dim=-1)  # (B, L, N) each
        else:
            q, k, v = self.W_q(queries), self.W_k(keys), self.W_v(values)
        return split_heads(q, H), split_heads(k, H), split_heads(v, H)  # (B, H, T, D)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor,
                valid_lens: Tensor | None = None, attn_mask: Tensor | None = None,
                is_causal: bool = False, need_weights: bool | None = None) -> Tensor:
        self._check_inputs(queries, keys, values)
        q, k, v = self.project(queries, keys, values)  # (B, H, L|S, D)
        out = self.attention(q, k, v, valid_lens, attn_mask=attn_mask, is_causal=is_causal,
                             need_weights=need_weights)  # (B, H, L, D)
        return self.W_o(merge_heads(out))  # (B, L, N)
