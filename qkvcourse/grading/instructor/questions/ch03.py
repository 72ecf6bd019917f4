"""Chapter 3 (scoring functions): masked softmax, additive scores, scaled dot-product attention."""
from __future__ import annotations

import math

import torch

from ....masking import masked_softmax
from ...core import Case
from ..registry import Mistake, Question, register


# --- masked_softmax_lens -----------------------------------------------------------------

def _masked_softmax_lens(X, valid_lens):
    return masked_softmax(X, valid_lens)


def _keep_mask(X, valid_lens):
    """(B, L, S) boolean mask of the keys each query keeps (valid_lens (B,) or (B, L))."""
    B, L, S = X.shape
    return (torch.arange(S) < valid_lens.reshape(B, -1, 1)).expand(B, L, S)


def _softmax_wrong_axis(X, valid_lens):
    """Softmax over the queries (dim -2) with the right mask."""
    if valid_lens is None:
        return torch.softmax(X, -2)
    out = torch.softmax(X.masked_fill(~_keep_mask(X, valid_lens), float("-inf")), -2)
    return out.nan_to_num(0.0)


def _large_negative_fill(X, valid_lens):
    """d2l's -1e6 fill: fully masked rows become uniform instead of zero."""
    if valid_lens is None:
        return torch.softmax(X, -1)
    return torch.softmax(X.masked_fill(~_keep_mask(X, valid_lens), -1e6), -1)


def _off_by_one(X, valid_lens):
    """Keeps valid_lens + 1 keys (a <= where < was meant)."""
    if valid_lens is None:
        return torch.softmax(X, -1)
    return masked_softmax(X, (valid_lens + 1).clamp(max=X.shape[-1]))


def _unmasked(X, valid_lens):
    return torch.softmax(X, -1)


def _masked_softmax_cases(rng, hidden):
    cases = []
    shapes = [(2, 2, 4), (2, 3, 5)] if not hidden else [(3, 4, 6), (1, 5, 7), (4, 2, 3)]
    for B, L, S in shapes:
        X = torch.randn(B, L, S)
        cases.append(Case(f"X {(B, L, S)}, valid_lens None", (X, None), arg_names=("X", "valid_lens")))
        lens = torch.tensor([rng.randint(1, S) for _ in range(B)])
        cases.append(Case(f"X {(B, L, S)}, valid_lens (B,) = {lens.tolist()}", (X, lens),
                          arg_names=("X", "valid_lens")))
        lens2 = torch.tensor([[rng.randint(1, S) for _ in range(L)] for _ in range(B)])
        cases.append(Case(f"X {(B, L, S)}, valid_lens (B, L)", (X, lens2), arg_names=("X", "valid_lens")))
    B, L, S = shapes[0]
    X = torch.randn(B, L, S)
    zero = torch.tensor([0] + [S] * (B - 1))
    cases.append(Case(f"X {(B, L, S)}, a batch row with valid_lens 0 (all keys masked)", (X, zero),
                      arg_names=("X", "valid_lens")))
    return cases


register(Question(
    qid="ch03.masked_softmax_lens", name="masked_softmax_lens", kind="function",
    title="Masked softmax from valid lengths", reference=_masked_softmax_lens,
    cases=_masked_softmax_cases, atol=1e-6, rtol=1e-5,
    mistakes=[
        Mistake("softmax over the wrong axis",
                "The weights of each query must sum to 1 over the keys, the last axis (dim=-1).",
                _softmax_wrong_axis),
        Mistake("fully masked rows filled with a large negative number",
                "With every key masked, a -1e6 (or finite) fill makes the softmax uniform; "
                "the exercise asks for a row of zeros.", _large_negative_fill),
        Mistake("valid length off by one",
                "Key positions 0 .. valid_len - 1 are valid; position valid_len is not "
                "(compare with <, not <=).", _off_by_one),
        Mistake("mask ignored", "The scores of the keys beyond valid_lens must not get weight.",
                _unmasked),
    ]))


# --- additive_scores ---------------------------------------------------------------------

def _additive_scores(queries, keys, W_q, W_k, w_v):
    features = torch.tanh((queries @ W_q.T)[:, :, None, :] + (keys @ W_k.T)[:, None, :, :])
    return features @ w_v  # (B, L, S)


def _additive_no_tanh(queries, keys, W_q, W_k, w_v):
    features = (queries @ W_q.T)[:, :, None, :] + (keys @ W_k.T)[:, None, :, :]
    return features @ w_v


def _additive_scaled(queries, keys, W_q, W_k, w_v):
    return _additive_scores(queries, keys, W_q, W_k, w_v) / math.sqrt(W_q.shape[0])


def _additive_cases(rng, hidden):
    cases = []
    sizes = [(2, 3, 4, 5, 6, 8)] if not hidden else [(3, 1, 5, 4, 4, 7), (1, 4, 2, 3, 6, 5)]
    for B, L, S, q, k, h in sizes:
        args = (torch.randn(B, L, q), torch.randn(B, S, k), torch.randn(h, q), torch.randn(h, k),
                torch.randn(h))
        cases.append(Case(f"B={B}, L={L} queries of size {q}, S={S} keys of size {k}, h={h}", args,
                          arg_names=("queries", "keys", "W_q", "W_k", "w_v")))
    return cases


register(Question(
    qid="ch03.additive_scores", name="additive_scores", kind="function",
    title="Additive attention scores", reference=_additive_scores, cases=_additive_cases,
    mistakes=[
        Mistake("missing tanh", "Additive attention applies tanh to W_q q + W_k k before w_v.",
                _additive_no_tanh),
        Mistake("scores scaled by 1/sqrt(h)",
                "Additive attention has no 1/sqrt(d) factor; that belongs to dot-product attention.",
                _additive_scaled),
    ]))


# --- sdpa ----------------------------------------------------------------------------------

def _masked_scores(query, key, attn_mask, scale):
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale
    return scores if attn_mask is None else scores.masked_fill(~attn_mask, float("-inf"))


def _sdpa(query, key, value, attn_mask=None, scale=None):
    weights = torch.softmax(_masked_scores(query, key, attn_mask, scale), -1).nan_to_num(0.0)
    return weights @ value


def _sdpa_unscaled(query, key, value, attn_mask=None, scale=None):
    return _sdpa(query, key, value, attn_mask, 1.0 if scale is None else scale)


def _sdpa_wrong_scale(query, key, value, attn_mask=None, scale=None):
    return _sdpa(query, key, value, attn_mask, 1 / query.shape[-1] if scale is None else scale)


def _sdpa_softmax_queries(query, key, value, attn_mask=None, scale=None):
    scores = _masked_scores(query, key, attn_mask, scale)
    return torch.softmax(scores, -2).nan_to_num(0.0) @ value


def _sdpa_inverted_mask(query, key, value, attn_mask=None, scale=None):
    return _sdpa(query, key, value, None if attn_mask is None else ~attn_mask, scale)


def _sdpa_nan_rows(query, key, value, attn_mask=None, scale=None):
    return torch.softmax(_masked_scores(query, key, attn_mask, scale), -1) @ value


def _sdpa_cases(rng, hidden):
    names = ("query", "key", "value", "attn_mask", "scale")
    cases = []
    shapes = [((2, 3, 8), 4, 5)] if not hidden else [((2, 2, 5, 16), 7, 3), ((1, 4, 4), 4, 2)]
    for qshape, S, Ev in shapes:
        *batch, L, E = qshape
        q, k, v = torch.randn(*batch, L, E), torch.randn(*batch, S, E), torch.randn(*batch, S, Ev)
        cases.append(Case(f"query {tuple(q.shape)}, key {tuple(k.shape)}, no mask", (q, k, v),
                          arg_names=names))
        mask = torch.rand(L, S) < 0.6
        mask[:, 0] = True
        cases.append(Case(f"same shapes, boolean mask (L, S) = {(L, S)}", (q, k, v, mask),
                          arg_names=names))
        cases.append(Case("same shapes, scale=0.5", (q, k, v, None, 0.5), arg_names=names))
        blocked = mask.clone()
        blocked[-1] = False
        cases.append(Case("a query that can see no key (its output must be zeros)",
                          (q, k, v, blocked), arg_names=names))
    return cases


register(Question(
    qid="ch03.sdpa", name="sdpa", kind="function",
    title="Explicit scaled dot-product attention", reference=_sdpa, cases=_sdpa_cases,
    mistakes=[
        Mistake("missing 1/sqrt(d) scaling",
                "The scores are divided by sqrt(E), the query and key width, unless scale is given.",
                _sdpa_unscaled),
        Mistake("scaled by 1/d instead of 1/sqrt(d)",
                "The default scale is 1/sqrt(E), not 1/E.", _sdpa_wrong_scale),
        Mistake("softmax over the wrong axis",
                "Each query's weights must sum to 1 over the keys (the last axis of the scores).",
                _sdpa_softmax_queries),
        Mistake("mask inverted", "True in attn_mask means 'may attend'; masked_fill must fill "
                "where the mask is False.", _sdpa_inverted_mask),
        Mistake("NaN for a query that sees no key",
                "softmax of a row of -inf is NaN; such rows must become zeros.", _sdpa_nan_rows),
    ]))
