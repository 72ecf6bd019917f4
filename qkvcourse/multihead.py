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

from ._validate import (check_dim_match, check_flag, check_floating, check_size, check_tensor,
                        shape_str)
from .attention import DotProductAttention, _check_flags, check_lens_and_mask


def _check_heads(X: Tensor, num_heads: int, name: str = "X") -> None:
    check_tensor(name, X, ndim=3)
    check_size("num_heads", num_heads, minimum=None)  # an int; the bound is checked below
    if num_heads <= 0 or X.shape[-1] % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide the feature size of {name}, "
                         f"got shape {shape_str(X)}")


def split_heads(X: Tensor, num_heads: int) -> Tensor:
    """``(B, T, H*D)`` -> ``(B, H, T, D)``: a view followed by a transpose, no copy."""
    _check_heads(X, num_heads)
    return _split(X, num_heads)


def _split(X: Tensor, num_heads: int) -> Tensor:  # split_heads without the checks (inner layers)
    B, T, N = X.shape
    return X.view(B, T, num_heads, N // num_heads).transpose(1, 2)  # (B, H, T, D)


def merge_heads(X: Tensor) -> Tensor:
    """``(B, H, T, D)`` -> ``(B, T, H*D)``, the inverse of :func:`split_heads`."""
    check_tensor("X", X, ndim=4)
    return _merge(X)


def _merge(X: Tensor) -> Tensor:  # merge_heads without the checks (inner layers)
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
    check_size("num_heads", num_heads, minimum=None)  # an int; the bound is checked below
    if num_heads <= 0 or X.shape[0] % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide the first dimension (B*H) of X, "
                         f"got shape {shape_str(X)}")
    BH, T, D = X.shape
    X = X.reshape(BH // num_heads, num_heads, T, D)  # (B, H, T, D)
    X = X.permute(0, 2, 1, 3)  # (B, T, H, D)
    return X.reshape(BH // num_heads, T, num_heads * D)  # (B, T, H*D)


class _Projection(nn.Module):
    """``W_q``, ``W_k`` or ``W_v`` of a :class:`MultiHeadAttention` whose three projections are
    stored as one ``(3N, E)`` weight: ``weight`` and ``bias`` are views of rows
    ``index·N .. (index+1)·N``, so reading, copying into or initialising them acts on the
    stored weight. It owns no parameter: the state dict keeps d2l's names all the same."""

    def __init__(self, fused: nn.Linear, index: int, size: int):
        super().__init__()
        object.__setattr__(self, "_fused", fused)  # a reference, not a second registration
        self.rows = slice(index * size, (index + 1) * size)
        self.in_features, self.out_features = fused.in_features, size

    @property
    def weight(self) -> Tensor:
        return self._fused.weight[self.rows]  # (N, E), a view

    @property
    def bias(self) -> Tensor | None:
        return None if self._fused.bias is None else self._fused.bias[self.rows]

    def forward(self, X: Tensor) -> Tensor:
        return F.linear(X, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self._fused.bias is not None}, view of in_proj rows "
                f"{self.rows.start}..{self.rows.stop - 1}")


_QKV = ("W_q", "W_k", "W_v")


def gradient_plan(model: nn.Module) -> list[tuple[nn.Parameter, slice | None]]:
    """``model``'s parameters in the order of ``parameters()``, each with the rows that count as
    one d2l layer: ``None`` (all of it) except for the stored ``[W_q; W_k; W_v]`` weight and
    bias of each :class:`MultiHeadAttention`, which give their thirds, interleaved as separate
    layers would be (``W_q.weight``, ``W_q.bias``, ``W_k.weight`` ...). Computed once per
    model (the trainer keeps it), it spares :func:`clip_gradients` a walk over the modules."""
    fused = {id(m.in_proj.weight): m for m in model.modules()
             if isinstance(m, MultiHeadAttention) and m.in_proj is not None}
    plan, skip = [], set()
    for p in model.parameters():
        mha = fused.get(id(p))
        if id(p) in skip:
            continue
        if mha is None:
            plan.append((p, None))
            continue
        w, b, N = mha.in_proj.weight, mha.in_proj.bias, mha.num_hiddens
        for i in range(3):
            plan.append((w, slice(i * N, (i + 1) * N)))
            if b is not None:
                plan.append((b, slice(i * N, (i + 1) * N)))
        if b is not None:
            skip.add(id(b))
    return plan


def gradients_in_d2l_order(model: nn.Module, plan=None) -> list[Tensor]:
    """The gradients of ``model``'s parameters in d2l's layer order (:func:`gradient_plan`;
    ``plan`` is that list, when the caller keeps it). A gradient norm summed over these is bit
    for bit the norm of the same model with three separate projections, so gradient clipping,
    and every training run that uses it, is not changed by the storage."""
    plan = gradient_plan(model) if plan is None else plan
    return [p.grad if rows is None else p.grad[rows] for p, rows in plan if p.grad is not None]


def clip_gradients(model: nn.Module, max_norm: float, plan=None) -> Tensor:
    """``nn.utils.clip_grad_norm_(model.parameters(), max_norm)``, with the total norm summed
    in d2l's layer order (:func:`gradients_in_d2l_order`, given ``plan`` when the caller keeps
    :func:`gradient_plan`); returns the norm before clipping."""
    total = nn.utils.get_total_norm(gradients_in_d2l_order(model, plan))
    nn.utils.clip_grads_with_norm_(model.parameters(), max_norm, total)
    return total


def is_linear(module: nn.Module) -> bool:
    """Whether ``module`` is a linear layer for an initialisation loop over ``modules()``:
    an ``nn.Linear``, or one of ``W_q``, ``W_k``, ``W_v`` stored together; the stored
    ``(3N, E)`` weight itself is not one, so every layer draws its own numbers, in d2l's
    order, as it did when the three were separate."""
    if isinstance(module, _Projection):
        return True
    return isinstance(module, nn.Linear) and not getattr(module, "_holds_qkv", False)


def _split_in_proj(module, state_dict, prefix, local_metadata):
    """State dicts keep d2l's keys, in d2l's order (``W_q.weight``, ``W_q.bias``, ``W_k.weight``
    ... ``W_o.bias``), whatever the storage. This module's entries are the last ones of
    ``state_dict`` when the hook runs; they are taken out and put back in that order."""
    N = module.num_hiddens
    mine = [k for k in state_dict if k.startswith(prefix)]
    entries = {k[len(prefix):]: state_dict.pop(k) for k in mine}
    for i, name in enumerate(_QKV):
        for part in ("weight", "bias"):
            fused = entries.get(f"in_proj.{part}")
            if fused is not None:
                state_dict[f"{prefix}{name}.{part}"] = fused[i * N:(i + 1) * N]
    for key, value in entries.items():
        if not key.startswith("in_proj."):
            state_dict[prefix + key] = value
    return state_dict


def _join_in_proj(module, state_dict, prefix, *args):
    """Load d2l-style keys (``W_q.weight``, ``W_k.weight``, ``W_v.weight``) into ``in_proj``."""
    for part in ("weight", "bias"):
        keys = [f"{prefix}{name}.{part}" for name in _QKV]
        if all(k in state_dict for k in keys):
            state_dict[f"{prefix}in_proj.{part}"] = torch.cat([state_dict.pop(k) for k in keys])


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
        check_size("num_heads", num_heads, minimum=None)  # an int; the bound is checked below
        check_flag("bias", bias)
        if num_heads <= 0 or num_hiddens % num_heads != 0:
            raise ValueError(f"num_heads must be a positive divisor of num_hiddens, "
                             f"got num_hiddens={num_hiddens}, num_heads={num_heads}")
        self.num_hiddens, self.num_heads = num_hiddens, num_heads
        sizes = [query_size or num_hiddens, key_size or num_hiddens, value_size or num_hiddens]
        # Built (and randomly initialised) one by one, in this order, as d2l's are.
        W_q, W_k, W_v = (nn.Linear(size, num_hiddens, bias=bias) for size in sizes)
        if sizes[0] == sizes[1] == sizes[2]:
            # One stored (3N, E) weight [W_q; W_k; W_v]: self-attention projects with one
            # matrix product, and W_q, W_k, W_v are views of their third (_Projection).
            # Built on the meta device (no random draw of its own, so every later layer draws
            # as before), then given the three projections' weights.
            self.in_proj = nn.Linear(sizes[0], 3 * num_hiddens, bias=bias, device="meta")
            self.in_proj._holds_qkv = True
            with torch.no_grad():
                self.in_proj.weight = nn.Parameter(torch.cat((W_q.weight, W_k.weight, W_v.weight)))
                if bias:
                    self.in_proj.bias = nn.Parameter(torch.cat((W_q.bias, W_k.bias, W_v.bias)))
            W_q, W_k, W_v = (_Projection(self.in_proj, i, num_hiddens) for i in range(3))
            self._register_state_dict_hook(_split_in_proj)
            self._register_load_state_dict_pre_hook(_join_in_proj, with_module=True)
        else:
            self.in_proj = None
        self.W_q, self.W_k, self.W_v = W_q, W_k, W_v
        self.W_o = nn.Linear(num_hiddens, num_hiddens, bias=bias)
        self.attention = DotProductAttention(dropout, need_weights=need_weights)

    @property
    def need_weights(self) -> bool:
        return self.attention.need_weights

    @need_weights.setter
    def need_weights(self, value: bool) -> None:
        check_flag("need_weights", value)
        self.attention.need_weights = value

    @property
    def attention_weights(self) -> Tensor | None:
        """``(B, H, L, S)`` from the last forward pass run with weights, else None."""
        return self.attention.attention_weights

    def _check_inputs(self, queries: Tensor, keys: Tensor, values: Tensor,
                      valid_lens: Tensor | None, attn_mask: Tensor | None,
                      is_causal: bool = False, need_weights: bool | None = None) -> None:
        _check_flags(is_causal, need_weights)
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
        B, L, S = queries.shape[0], queries.shape[1], keys.shape[1]
        check_lens_and_mask(queries, S, valid_lens, attn_mask, (B, self.num_heads, L, S))

    def project(self, queries: Tensor, keys: Tensor, values: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        """The per-head projections: ``(B, H, L, D)``, ``(B, H, S, D)``, ``(B, H, S, D)``.

        For self-attention (one tensor passed three times) the three projections are
        one matrix product with the stacked weights [W_q; W_k; W_v]: the same numbers
        as three products, but one larger GEMM forward and one backward, which is faster.
        """
        H, N = self.num_heads, self.num_hiddens
        if self.in_proj is not None and queries is keys and keys is values:
            qkv = self.in_proj(queries)  # (B, L, 3N): [W_q; W_k; W_v] in one product
            q, k, v = qkv.split(N, dim=-1)  # (B, L, N) each
        else:
            q, k, v = self.W_q(queries), self.W_k(keys), self.W_v(values)
        return _split(q, H), _split(k, H), _split(v, H)  # (B, H, T, D)

    def forward(self, queries: Tensor, keys: Tensor, values: Tensor,
                valid_lens: Tensor | None = None, attn_mask: Tensor | None = None,
                is_causal: bool = False, need_weights: bool | None = None) -> Tensor:
        self._check_inputs(queries, keys, values, valid_lens, attn_mask, is_causal, need_weights)
        return self.attend(queries, keys, values, valid_lens, attn_mask, is_causal, need_weights)

    def attend(self, queries: Tensor, keys: Tensor, values: Tensor,
               valid_lens: Tensor | None = None, attn_mask: Tensor | None = None,
               is_causal: bool = False, need_weights: bool | None = None) -> Tensor:
        """:meth:`forward` without argument checks: what the Transformer's layers call, their
        model having checked its inputs once."""
        q, k, v = self.project(queries, keys, values)  # (B, H, L|S, D)
        out = self.attention.attend(q, k, v, valid_lens, attn_mask, is_causal,
                                    need_weights)  # (B, H, L, D)
        return self.W_o(_merge(out))  # (B, L, N)
