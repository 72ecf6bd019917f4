"""Property-based tests (hypothesis) of attention and multi-head attention.

Random shapes, random masks (including fully masked rows), random scales: the
explicit path, the fused path and PyTorch's own kernel must agree, and
``MultiHeadAttention`` must agree with ``torch.nn.MultiheadAttention`` given the
same weights.
"""
from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

import qkvcourse as qc
from qkvcourse.benchmarks import copy_weights_to_torch

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def attention_cases(draw):
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    L, S = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    E, Ev = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q = torch.randn(*batch, L, E, generator=g)
    k = torch.randn(*batch, S, E, generator=g)
    v = torch.randn(*batch, S, Ev, generator=g)
    mask = None
    kind = draw(st.sampled_from(["none", "bool", "float"]))
    if kind != "none":
        full = (*batch, L, S)
        shape = tuple(n if draw(st.booleans()) else 1 for n in full)
        shape = shape[draw(st.integers(0, len(full) - 2)):]  # keep at least (L|1, S|1)
        keep = torch.rand(shape, generator=g) < draw(st.sampled_from([0.2, 0.6, 1.0]))
        if kind == "bool":
            mask = keep
        else:
            mask = torch.where(keep, torch.randn(shape, generator=g), torch.tensor(float("-inf")))
    scale = draw(st.sampled_from([None, 0.1, 1.0, 3.0]))
    is_causal = draw(st.booleans())
    return q, k, v, mask, scale, is_causal


def torch_reference(q, k, v, mask, scale, is_causal):
    """PyTorch's kernel, with its zero-output convention for fully masked rows made explicit."""
    if is_causal:
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        if mask is None:
            mask = causal
        elif mask.dtype == torch.bool:
            mask = mask & causal
        else:
            mask = mask.masked_fill(~causal, float("-inf"))
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    keep = mask if mask.dtype == torch.bool else ~torch.isneginf(mask)
    empty = ~keep.any(-1, keepdim=True)
    # Independent of PyTorch's own handling: compute in float64 by hand where rows are empty
    scale_ = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q.double() @ k.double().transpose(-2, -1)) * scale_
    if mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    else:
        scores = scores + mask.double()
    weights = torch.softmax(scores, -1).nan_to_num(0.0)
    out = weights @ v.double()
    return out.masked_fill(empty, 0.0).float()


@SETTINGS
@given(attention_cases())
def test_explicit_and_fused_paths_agree_with_reference(case):
    q, k, v, mask, scale, is_causal = case
    expected = torch_reference(q, k, v, mask, scale, is_causal)
    for backend in ("explicit", "fused"):
        with qc.attention_backend(backend):
            out = qc.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale,
                                                  is_causal=is_causal)
        assert out.shape == expected.shape
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5, msg=backend)


@SETTINGS
@given(attention_cases())
def test_weights_are_a_distribution_over_allowed_keys(case):
    q, k, v, mask, scale, is_causal = case
    out, weights = qc.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale,
                                                   is_causal=is_causal, need_weights=True)
    allowed = torch.ones(weights.shape, dtype=torch.bool)
    if mask is not None:
        allowed &= (mask if mask.dtype == torch.bool else ~torch.isneginf(mask)).expand_as(allowed)
    if is_causal:
        allowed &= torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    assert torch.all(weights[~allowed] == 0)
    rows = allowed.any(-1)
    torch.testing.assert_close(weights.sum(-1)[rows], torch.ones(int(rows.sum())))
    assert torch.all(weights.sum(-1)[~rows] == 0) and torch.all(out[~rows] == 0)
    torch.testing.assert_close(out, weights @ v, rtol=1e-5, atol=1e-6)


@st.composite
def mha_cases(draw):
    heads = draw(st.sampled_from([1, 2, 4]))
    width = heads * draw(st.integers(1, 4))
    B, L, S = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    self_attention = draw(st.booleans())
    queries = torch.randn(B, L, width, generator=g)
    kv = queries if self_attention else torch.randn(B, S, width, generator=g)
    S = kv.shape[1]
    valid_lens = torch.randint(1, S + 1, (B,), generator=g) if draw(st.booleans()) else None
    return heads, width, queries, kv, valid_lens, draw(st.booleans()), draw(st.integers(0, 99))


@SETTINGS
@given(mha_cases())
def test_multihead_matches_torch_multiheadattention(case):
    heads, width, queries, kv, valid_lens, bias, seed = case
    torch.manual_seed(seed)
    ours = qc.MultiHeadAttention(width, heads, bias=bias).eval()
    theirs = nn.MultiheadAttention(width, heads, bias=bias, batch_first=True).eval()
    copy_weights_to_torch(ours, theirs)
    padding = None
    if valid_lens is not None:  # PyTorch: True = ignore this key
        padding = torch.arange(kv.shape[1])[None, :] >= valid_lens[:, None]
    expected, expected_weights = theirs(queries, kv, kv, key_padding_mask=padding,
                                        need_weights=True, average_attn_weights=False)
    for need_weights in (False, True):
        out = ours(queries, kv, kv, valid_lens, need_weights=need_weights)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.attention_weights, expected_weights, rtol=1e-5, atol=1e-6)
