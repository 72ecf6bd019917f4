"""Chapter 1 (queries, keys and values): attention by hand, and a single-head attention module."""
from __future__ import annotations

import math

import torch
from torch import nn

from ....attention import scaled_dot_product_attention
from ...core import Case
from ..registry import Mistake, Question, register


# --- attention_by_hand ---------------------------------------------------------------------

def _attention_by_hand(Q, K, V, scale=None):
    return scaled_dot_product_attention(Q, K, V, scale=scale, need_weights=True)


def _stable_softmax_rows(scores):
    e = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def _by_hand(Q, K, V, scale, normalise=_stable_softmax_rows):
    weights = normalise(Q @ K.T * scale)
    return weights @ V, weights


def _abh_unscaled(Q, K, V, scale=None):
    return _by_hand(Q, K, V, 1.0 if scale is None else scale)


def _abh_one_over_d(Q, K, V, scale=None):
    return _by_hand(Q, K, V, 1.0 / Q.shape[-1] if scale is None else scale)


def _abh_divides(Q, K, V, scale=None):
    """scale treated as a divisor (the default sqrt(d) is then right, a given scale is not)."""
    return _by_hand(Q, K, V, 1.0 / math.sqrt(Q.shape[-1]) if scale is None else 1.0 / scale)


def _abh_scale_ignored(Q, K, V, scale=None):
    return _by_hand(Q, K, V, 1.0 / math.sqrt(Q.shape[-1]))


def _abh_wrong_axis(Q, K, V, scale=None):
    def over_queries(s):
        e = torch.exp(s - s.max(dim=0, keepdim=True).values)
        return e / e.sum(dim=0, keepdim=True)
    return _by_hand(Q, K, V, 1.0 / math.sqrt(Q.shape[-1]) if scale is None else scale, over_queries)


def _abh_no_max(Q, K, V, scale=None):
    def naive(s):
        e = torch.exp(s)
        return e / e.sum(dim=-1, keepdim=True)
    return _by_hand(Q, K, V, 1.0 / math.sqrt(Q.shape[-1]) if scale is None else scale, naive)


def _abh_global_max(Q, K, V, scale=None):
    def global_max(s):
        e = torch.exp(s - s.max())
        return e / e.sum(dim=-1, keepdim=True)
    return _by_hand(Q, K, V, 1.0 / math.sqrt(Q.shape[-1]) if scale is None else scale, global_max)


_ABH_NAMES = ("Q", "K", "V", "scale")


def _abh_cases(rng, hidden):
    cases = []
    sizes = [(3, 4, 2, 3)] if not hidden else [(1, 5, 3, 2), (5, 2, 6, 1), (4, 4, 8, 4)]
    for L, S, d, dv in sizes:
        Q, K, V = torch.randn(L, d), torch.randn(S, d), torch.randn(S, dv)
        what = f"Q ({L}, {d}), K ({S}, {d}), V ({S}, {dv})"
        cases.append(Case(f"{what}, scale=None", (Q, K, V), arg_names=_ABH_NAMES))
        cases.append(Case(f"{what}, scale=1.0", (Q, K, V, 1.0), arg_names=_ABH_NAMES))
        given = 0.5 if not hidden else rng.choice([0.25, 2.0, 3.0])
        cases.append(Case(f"{what}, scale={given}", (Q, K, V, given), arg_names=_ABH_NAMES))
    # Scores of a few thousand (float64): exp overflows unless each row's maximum is subtracted,
    # and a row far below the others underflows to 0/0 if the overall maximum is subtracted.
    L, S, d, dv = (3, 3, 2, 2) if not hidden else (4, 5, 3, 2)
    Q = torch.randn(L, d, dtype=torch.float64) * 40
    Q[0] = Q[0].sign() * 120  # the largest scores of all
    Q[-1] = Q[-1] * 0.02  # a query with small scores, far below the others
    K = torch.randn(S, d, dtype=torch.float64) * 40
    V = torch.randn(S, dv, dtype=torch.float64)
    cases.append(Case(f"large scores (float64), Q ({L}, {d}), K ({S}, {d}), scale=None", (Q, K, V),
                      arg_names=_ABH_NAMES))
    if hidden:
        K = torch.randn(1, 3).expand(4, 3).clone()
        cases.append(Case("all keys equal (uniform weights)", (torch.randn(2, 3), K, torch.randn(4, 2)),
                          arg_names=_ABH_NAMES))
    return cases


register(Question(
    qid="ch01.attention_by_hand", name="attention_by_hand", kind="function",
    title="Scaled dot-product attention by hand", reference=_attention_by_hand,
    cases=_abh_cases,
    mistakes=[
        Mistake("missing 1/sqrt(d) scaling",
                "When scale is None the scores must be multiplied by 1/sqrt(d), d being the "
                "width of the queries and keys.", _abh_unscaled),
        Mistake("scaled by 1/d instead of 1/sqrt(d)",
                "The default factor is one over the square root of d, not one over d.",
                _abh_one_over_d),
        Mistake("scores divided by scale",
                "scale is a factor: the scores are multiplied by it. With scale=None the factor "
                "is 1/sqrt(d), which is not the same as dividing by a given scale.", _abh_divides),
        Mistake("scale argument ignored",
                "When a scale is passed, it replaces the default 1/sqrt(d).", _abh_scale_ignored),
        Mistake("softmax over the wrong axis",
                "Each query's weights sum to 1 over the keys: normalise every row of the (L, S) "
                "score matrix, not every column.", _abh_wrong_axis),
        Mistake("exponentiated without subtracting the row maximum",
                "exp of a score above ~709 (float64) or ~88 (float32) is inf, and inf/inf is NaN; "
                "subtracting each row's maximum first leaves the softmax unchanged and keeps "
                "exp in range.", _abh_no_max),
        Mistake("subtracted the overall maximum instead of each row's",
                "A row whose scores are all far below the largest score in the matrix then "
                "underflows to 0/0; the shift must be the maximum of the row itself.",
                _abh_global_max),
    ]))


# --- SingleHeadAttention (module) -----------------------------------------------------------

class _SingleHeadAttention(nn.Module):
    def __init__(self, d_model: int, d_k: int, d_v: int):
        super().__init__()
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_v, bias=False)
        self.attention_weights = None

    def project(self, x, context):
        c = x if context is None else context
        return self.W_q(x), self.W_k(c), self.W_v(c)

    def attend(self, q, k, v, scale, dim=-1):
        weights = torch.softmax(q @ k.transpose(-2, -1) * scale, dim=dim)
        self.attention_weights = weights
        return weights @ v

    def forward(self, x, context=None):
        out, self.attention_weights = scaled_dot_product_attention(
            *self.project(x, context), need_weights=True)
        return out


class _ShaIgnoresContext(_SingleHeadAttention):
    def forward(self, x, context=None):
        q, k, v = self.project(x, None)
        return self.attend(q, k, v, 1 / math.sqrt(q.shape[-1]))


class _ShaUnscaled(_SingleHeadAttention):
    def forward(self, x, context=None):
        return self.attend(*self.project(x, context), 1.0)


class _ShaScaledByModel(_SingleHeadAttention):
    def forward(self, x, context=None):
        return self.attend(*self.project(x, context), 1 / math.sqrt(x.shape[-1]))


class _ShaWrongAxis(_SingleHeadAttention):
    def forward(self, x, context=None):
        q, k, v = self.project(x, context)
        return self.attend(q, k, v, 1 / math.sqrt(q.shape[-1]), dim=-2)


class _ShaRolesSwapped(_SingleHeadAttention):
    """Queries from the context, keys and values from x."""

    def forward(self, x, context=None):
        c = x if context is None else context
        q, k, v = self.W_q(c), self.W_k(x), self.W_v(x)
        return self.attend(q, k, v, 1 / math.sqrt(q.shape[-1]))


def _sha_cases(rng, hidden):
    names = ("x", "context")
    cases = []
    # (B, L, S, d_model, d_k, d_v); S = None means self-attention
    sizes = ([(2, 3, None, 4, 3, 2), (2, 3, 5, 4, 3, 2), (1, 2, 4, 3, 2, 3)] if not hidden else
             [(3, 5, None, 8, 4, 6), (2, 4, 2, 6, 5, 3), (1, 1, 6, 5, 2, 2), (4, 3, 3, 4, 4, 4)])
    for B, L, S, d_model, d_k, d_v in sizes:
        init = {"d_model": d_model, "d_k": d_k, "d_v": d_v}
        state = _SingleHeadAttention(**init).state_dict()
        x = torch.randn(B, L, d_model)
        if S is None:
            cases.append(Case(f"self-attention, x ({B}, {L}, {d_model}), d_k={d_k}, d_v={d_v}",
                              (x,), init=init, state=state, arg_names=names))
        else:
            c = torch.randn(B, S, d_model)
            cases.append(Case(f"cross-attention, x ({B}, {L}, {d_model}), context ({B}, {S}, "
                              f"{d_model}), d_k={d_k}, d_v={d_v}", (x, c), init=init, state=state,
                              arg_names=names))
    return cases


register(Question(
    qid="ch01.single_head_attention", name="SingleHeadAttention", kind="module",
    title="A single-head self- and cross-attention module", reference=_SingleHeadAttention,
    cases=_sha_cases,
    mistakes=[
        Mistake("context ignored",
                "When a context is given, the keys and the values are computed from the "
                "context, not from x; only the queries come from x.", _ShaIgnoresContext),
        Mistake("queries and keys/values swapped",
                "The queries come from x (the sequence that asks) and the keys and values from "
                "the context (the sequence that is looked up).", _ShaRolesSwapped),
        Mistake("missing 1/sqrt(d_k) scaling",
                "The scores are multiplied by 1/sqrt(d_k) before the softmax.", _ShaUnscaled),
        Mistake("scaled by 1/sqrt(d_model) instead of 1/sqrt(d_k)",
                "The scale uses the width of the projected queries and keys, d_k, not the "
                "width of the input.", _ShaScaledByModel),
        Mistake("softmax over the wrong axis",
                "Each query's weights must sum to 1 over the keys, the last axis of the "
                "(B, L, S) scores.", _ShaWrongAxis),
    ]))
