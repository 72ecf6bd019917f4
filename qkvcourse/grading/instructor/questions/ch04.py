"""Chapter 4 (Bahdanau attention): one decoder step, the fixed-context decoder's input, and
attention over a feature map."""
from __future__ import annotations

import math

import torch

from ....attention import AdditiveAttention, DotProductAttention
from ...core import Case
from ..registry import Mistake, Question, register


# --- bahdanau_step ----------------------------------------------------------------------------

def _bahdanau_step(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    h, N = W_q.shape
    attention = AdditiveAttention(h, query_size=N, key_size=enc_outputs.shape[-1]).to(s_prev.dtype)
    attention.load_state_dict({"W_q.weight": W_q, "W_k.weight": W_k, "w_v.weight": w_v[None]})
    attention.eval()
    c = attention(s_prev[:, None], enc_outputs, enc_outputs, src_valid_lens)[:, 0]  # (B, N)
    alpha = attention.attention_weights[:, 0]  # (B, S)
    e = torch.tanh((s_prev @ W_q.T)[:, None, :] + enc_outputs @ W_k.T) @ w_v  # (B, S)
    return e, alpha, c


def _scores(s_prev, enc_outputs, W_q, W_k, w_v, tanh=True):
    features = (s_prev @ W_q.T)[:, None, :] + enc_outputs @ W_k.T  # (B, S, h)
    return (torch.tanh(features) if tanh else features) @ w_v  # (B, S)


def _keep(src_valid_lens, S, extra=0):
    return torch.arange(S) < (src_valid_lens[:, None] + extra)  # (B, S)


def _step(e, keep, enc_outputs, dim=-1):
    alpha = torch.softmax(e.masked_fill(~keep, float("-inf")), dim=dim).nan_to_num(0.0)
    return e, alpha, (alpha[:, :, None] * enc_outputs).sum(1)


def _bs_no_tanh(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = _scores(s_prev, enc_outputs, W_q, W_k, w_v, tanh=False)
    return _step(e, _keep(src_valid_lens, e.shape[1]), enc_outputs)


def _bs_unmasked(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = _scores(s_prev, enc_outputs, W_q, W_k, w_v)
    return _step(e, torch.ones_like(e, dtype=torch.bool), enc_outputs)


def _bs_zeroed_after_softmax(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = _scores(s_prev, enc_outputs, W_q, W_k, w_v)
    alpha = torch.softmax(e, -1) * _keep(src_valid_lens, e.shape[1])
    return e, alpha, (alpha[:, :, None] * enc_outputs).sum(1)


def _bs_off_by_one(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = _scores(s_prev, enc_outputs, W_q, W_k, w_v)
    return _step(e, _keep(src_valid_lens, e.shape[1], extra=1), enc_outputs)


def _bs_masked_e(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = _scores(s_prev, enc_outputs, W_q, W_k, w_v)
    keep = _keep(src_valid_lens, e.shape[1])
    _, alpha, c = _step(e, keep, enc_outputs)
    return e.masked_fill(~keep, float("-inf")), alpha, c


def _bs_swapped(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = _scores(s_prev, enc_outputs, W_k, W_q, w_v)
    return _step(e, _keep(src_valid_lens, e.shape[1]), enc_outputs)


def _bs_scaled(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e = _scores(s_prev, enc_outputs, W_q, W_k, w_v) / math.sqrt(W_q.shape[0])
    return _step(e, _keep(src_valid_lens, e.shape[1]), enc_outputs)


def _bs_projected_context(s_prev, enc_outputs, src_valid_lens, W_q, W_k, w_v):
    e, alpha, _ = _step(_scores(s_prev, enc_outputs, W_q, W_k, w_v),
                        _keep(src_valid_lens, enc_outputs.shape[1]), enc_outputs)
    return e, alpha, (alpha[:, :, None] * (enc_outputs @ W_k.T)).sum(1)


def _bs_cases(rng, hidden):
    names = ("s_prev", "enc_outputs", "src_valid_lens", "W_q", "W_k", "w_v")
    cases = []

    def case(label, B, S, N, h, lens, dtype=torch.float32):
        args = (torch.randn(B, N, dtype=dtype), torch.randn(B, S, N, dtype=dtype),
                torch.tensor(lens), torch.randn(h, N, dtype=dtype), torch.randn(h, N, dtype=dtype),
                torch.randn(h, dtype=dtype))
        return Case(f"{label}: B={B}, S={S}, N={N}, h={h}, src_valid_lens={lens}", args,
                    arg_names=names)

    if not hidden:
        cases.append(case("no padding", 2, 3, 2, 3, [3, 3]))
        cases.append(case("padded sources", 2, 4, 3, 2, [4, 2]))
        cases.append(case("batch of one, one valid position", 1, 3, 2, 4, [1]))
        return cases
    S = 6
    cases.append(case("padded sources", 4, S, 5, 7, [rng.randint(1, S) for _ in range(3)] + [S]))
    cases.append(case("one source position", 2, 1, 3, 3, [1, 1]))
    cases.append(case("h equal to N", 3, 5, 4, 4, [5, 2, 3]))
    cases.append(case("float64", 2, 4, 3, 6, [2, 4], torch.float64))
    return cases


register(Question(
    qid="ch04.bahdanau_step", name="bahdanau_step", kind="function",
    title="One Bahdanau decoder step", reference=_bahdanau_step, cases=_bs_cases,
    mistakes=[
        Mistake("raw scores e returned after masking",
                "e is the unmasked score of every source position; the mask only decides "
                "which positions take part in the softmax.", _bs_masked_e),
        Mistake("padding positions not masked",
                "Positions from src_valid_lens[b] on are padding: they must get weight "
                "exactly 0 and the softmax must run over the valid positions only.", _bs_unmasked),
        Mistake("weights zeroed after the softmax",
                "Setting the padded weights to 0 after a softmax over every position leaves "
                "rows that sum to less than 1; mask the scores before the softmax.",
                _bs_zeroed_after_softmax),
        Mistake("valid length off by one",
                "Positions 0 .. src_valid_lens[b] - 1 are valid; position src_valid_lens[b] "
                "is already padding.", _bs_off_by_one),
        Mistake("missing tanh",
                "Additive attention applies tanh to W_q s + W_k h_i before the dot product with "
                "w_v.", _bs_no_tanh),
        Mistake("W_q and W_k swapped",
                "W_q projects the decoder state (the query) and W_k the encoder annotations "
                "(the keys).", _bs_swapped),
        Mistake("scores scaled by 1/sqrt(h)",
                "Additive attention has no 1/sqrt(d) factor; that belongs to dot-product "
                "attention.", _bs_scaled),
        Mistake("context built from the projected keys",
                "The context is a weighted sum of the annotations h_i themselves (the values), "
                "not of W_k h_i.", _bs_projected_context),
    ]))


# --- fixed_context_inputs ---------------------------------------------------------------------

def _fixed_context_inputs(embedded, context):
    T = embedded.shape[1]
    return torch.cat([embedded, context[:, None, :].expand(-1, T, -1)], dim=-1)


def _fci_context_first(embedded, context):
    T = embedded.shape[1]
    return torch.cat([context[:, None, :].expand(-1, T, -1), embedded], dim=-1)


def _fci_rows_mixed(embedded, context):
    B, T, _ = embedded.shape
    return torch.cat([embedded, context.repeat(T, 1).reshape(B, T, -1)], dim=-1)


def _fci_first_step_only(embedded, context):
    B, T, _ = embedded.shape
    tiled = torch.zeros(B, T, context.shape[-1], dtype=context.dtype)
    tiled[:, 0] = context
    return torch.cat([embedded, tiled], dim=-1)


def _fci_cases(rng, hidden):
    names = ("embedded", "context")
    sizes = ([(2, 3, 2, 3), (1, 1, 3, 2), (3, 2, 1, 2)] if not hidden else
             [(4, 5, 3, 6), (2, 1, 4, 4), (1, 6, 2, 3), (5, 3, 2, 1)])
    cases = []
    for i, (B, T, E, N) in enumerate(sizes):
        dtype = torch.float64 if hidden and i == 0 else torch.float32
        cases.append(Case(f"B={B}, T={T}, E={E}, N={N}", (torch.randn(B, T, E, dtype=dtype),
                                                           torch.randn(B, N, dtype=dtype)),
                          arg_names=names))
    return cases


register(Question(
    qid="ch04.fixed_context_inputs", name="fixed_context_inputs", kind="function",
    title="The fixed-context decoder's GRU input", reference=_fixed_context_inputs,
    cases=_fci_cases,
    mistakes=[
        Mistake("context placed before the embedding",
                "The decoder's GRU was built for [e(y_t); c]: the embedding takes the first E "
                "features and the context the last N.", _fci_context_first),
        Mistake("contexts of different batch rows mixed",
                "Each batch row must receive its own context at every step; check how the "
                "(B, N) context is turned into (B, T, N) when B > 1 and T > 1.", _fci_rows_mixed),
        Mistake("context only at the first step",
                "The fixed-context decoder sees the same c at every step t, not only at t = 0.",
                _fci_first_step_only),
    ]))


# --- grid_attention -----------------------------------------------------------------------------

def _grid_attention(feature_map, query):
    B, C, H, W = feature_map.shape
    cells = feature_map.flatten(2).transpose(1, 2)  # (B, H*W, C)
    attention = DotProductAttention()
    context = attention(query[:, None, :], cells, cells)[:, 0]  # (B, C)
    return attention.attention_weights[:, 0].reshape(B, H, W), context


def _ga(feature_map, query, scale=None, per_row=False, wrong_order=False):
    B, C, H, W = feature_map.shape
    scale = 1 / math.sqrt(C) if scale is None else scale
    scores = torch.einsum("bchw,bc->bhw", feature_map, query) * scale  # (B, H, W)
    if per_row:
        weights = torch.softmax(scores, dim=-1)
    else:
        weights = torch.softmax(scores.reshape(B, -1), dim=-1).reshape(B, H, W)
    context = torch.einsum("bhw,bchw->bc", weights, feature_map)
    if wrong_order:
        weights = weights.transpose(1, 2).reshape(B, H, W)
    return weights, context


def _ga_unscaled(feature_map, query):
    return _ga(feature_map, query, scale=1.0)


def _ga_per_row(feature_map, query):
    return _ga(feature_map, query, per_row=True)


def _ga_wrong_order(feature_map, query):
    return _ga(feature_map, query, wrong_order=True)


def _ga_scaled_by_cells(feature_map, query):
    return _ga(feature_map, query, scale=1 / math.sqrt(feature_map.shape[2] * feature_map.shape[3]))


def _ga_cases(rng, hidden):
    names = ("feature_map", "query")
    sizes = [(2, 3, 2, 3), (1, 4, 3, 2)] if not hidden else [(3, 5, 4, 3), (1, 2, 1, 5), (2, 6, 3, 3)]
    cases = []
    for B, C, H, W in sizes:
        cases.append(Case(f"feature_map ({B}, {C}, {H}, {W}), query ({B}, {C})",
                          (torch.randn(B, C, H, W), torch.randn(B, C) * 2), arg_names=names))
    if not hidden:
        fm = torch.zeros(1, 2, 2, 3)
        fm[0, :, 1, 0] = torch.tensor([3.0, 0.0])  # one cell that matches the query well
        fm[0, :, 0, 2] = torch.tensor([0.0, 1.0])
        cases.append(Case("one cell aligned with the query (row 1, column 0)",
                          (fm, torch.tensor([[2.0, 0.0]])), arg_names=names))
    return cases


register(Question(
    qid="ch04.grid_attention", name="grid_attention", kind="function",
    title="Attention over a feature map", reference=_grid_attention, cases=_ga_cases,
    mistakes=[
        Mistake("missing 1/sqrt(C) scaling",
                "The scores are the dot products divided by sqrt(C), the number of channels.",
                _ga_unscaled),
        Mistake("scaled by the number of cells instead of the channels",
                "The 1/sqrt factor uses the width of the query and key vectors, C, not H*W.",
                _ga_scaled_by_cells),
        Mistake("softmax over each grid row separately",
                "The query chooses among all H*W cells at once: one softmax over the whole grid, "
                "so the weights of each (H, W) grid sum to 1.", _ga_per_row),
        Mistake("weights reshaped in the wrong cell order",
                "Cell (i, j) of the weights must be the cell at row i, column j of the feature "
                "map; check the order in which the spatial axes were flattened and reshaped.",
                _ga_wrong_order),
    ]))
