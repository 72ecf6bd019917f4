"""Chapter 8 (efficient attention): blockwise attention with an online softmax, a
local-plus-global mask and grouped-query attention."""
from __future__ import annotations

import math

import torch

from ....attention import scaled_dot_product_attention
from ...core import Case
from ..registry import Mistake, Question, register


# --- blockwise_attention -------------------------------------------------------------------

def _blockwise_attention(query, key, value, block_size, is_causal=False):
    return scaled_dot_product_attention(query, key, value, is_causal=is_causal)


def _online(query, key, value, block_size, is_causal=False, *, scale=None, rescale_sum=True,
            rescale_acc=True, use_max=True, keep_partial=True, local_mask=False,
            bottom_right=False, strict=False):
    """The online softmax over blocks of keys, with switches for the usual mistakes.

    Deliberately plain: no guard against a row whose keys so far are all masked, so that the
    masks that leave such rows (bottom-right alignment, strict diagonal) give NaN like a
    student's loop does.
    """
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    m = torch.full(query.shape[:-1], -math.inf, dtype=query.dtype)
    if not use_max:
        m = torch.zeros_like(m)
    l = torch.zeros_like(m)
    acc = query.new_zeros(*query.shape[:-1], value.shape[-1])
    stop = S if keep_partial else S - S % block_size
    rows = torch.arange(L)[:, None]
    if bottom_right:
        rows = rows + (S - L)
    for start in range(0, stop, block_size):
        k_blk = key[..., start:start + block_size, :]
        v_blk = value[..., start:start + block_size, :]
        s = (query * scale) @ k_blk.transpose(-2, -1)
        if is_causal:
            cols = torch.arange(k_blk.shape[-2])[None, :]
            if not local_mask:
                cols = cols + start
            visible = cols < rows if strict else cols <= rows
            s = s.masked_fill(~visible, -math.inf)
        m_new = torch.maximum(m, s.amax(-1)) if use_max else m
        correction = torch.exp(m - m_new)
        p = torch.exp(s - m_new[..., None])
        l = (correction * l if rescale_sum else l) + p.sum(-1)
        acc = (correction[..., None] * acc if rescale_acc else acc) + p @ v_blk
        m = m_new
    return acc / l[..., None]


def _bw_sum_not_rescaled(query, key, value, block_size, is_causal=False):
    return _online(query, key, value, block_size, is_causal, rescale_sum=False)


def _bw_acc_not_rescaled(query, key, value, block_size, is_causal=False):
    return _online(query, key, value, block_size, is_causal, rescale_acc=False)


def _bw_nothing_rescaled(query, key, value, block_size, is_causal=False):
    return _online(query, key, value, block_size, is_causal, rescale_sum=False, rescale_acc=False)


def _bw_no_max(query, key, value, block_size, is_causal=False):
    return _online(query, key, value, block_size, is_causal, use_max=False)


def _bw_unscaled(query, key, value, block_size, is_causal=False):
    return _online(query, key, value, block_size, is_causal, scale=1.0)


def _bw_partial_dropped(query, key, value, block_size, is_causal=False):
    return _online(query, key, value, block_size, is_causal, keep_partial=False)


def _bw_local_mask(query, key, value, block_size, is_causal=False):
    return _online(query, key, value, block_size, is_causal, local_mask=True)


def _bw_bottom_right(query, key, value, block_size, is_causal=False):
    return _online(query, key, value, block_size, is_causal, bottom_right=True)


def _bw_strict(query, key, value, block_size, is_causal=False):
    return _online(query, key, value, block_size, is_causal, strict=True)


def _bw_not_causal(query, key, value, block_size, is_causal=False):
    return _online(query, key, value, block_size, False)


def _blockwise_cases(rng, hidden):
    names = ("query", "key", "value", "block_size", "is_causal")
    # (batch dims, L, S, d, dv, block_size, is_causal, scale of the queries and keys)
    if not hidden:
        configs = [((1,), 3, 5, 2, 2, 2, False, 1.0), ((1,), 3, 5, 2, 2, 2, True, 1.0),
                   ((1, 2), 4, 4, 2, 3, 3, True, 1.0), ((1,), 2, 4, 2, 2, 2, False, 5.0)]
    else:
        configs = [((2, 2), 6, 6, 4, 4, 1, True, 1.0), ((3,), 4, 5, 4, 2, 8, False, 1.0),
                   ((1,), 6, 3, 4, 4, 2, True, 1.0), ((2,), 5, 7, 3, 5, 3, False, 1.0),
                   ((1, 3), 5, 9, 4, 4, 4, True, 6.0), ((2,), 1, 7, 4, 2, 3, True, 1.0),
                   ((1, 2), 7, 10, 4, 3, rng.randint(2, 4), True, 1.0)]
    cases = []
    for batch, L, S, d, dv, b, causal, magnitude in configs:
        q = torch.randn(*batch, L, d) * magnitude
        k = torch.randn(*batch, S, d) * magnitude
        v = torch.randn(*batch, S, dv)
        if magnitude > 1:
            # A key in the second block aligned with query 0, giving it a score of 200 (exp
            # overflows in float32 above 88) and a running maximum that changes between blocks
            q0 = q[..., 0, :]
            k[..., min(b, S - 1), :] = q0 * (200 * math.sqrt(d) / (q0 * q0).sum(-1, keepdim=True))
        label = f"query {tuple(q.shape)}, key {tuple(k.shape)}, block_size {b}, is_causal {causal}"
        if magnitude > 1:
            label += ", large scores"
        cases.append(Case(label, (q, k, v, b, causal), arg_names=names))
    return cases


register(Question(
    qid="ch08.blockwise_attention", name="blockwise_attention", kind="function",
    title="Blockwise attention with an online softmax", reference=_blockwise_attention,
    cases=_blockwise_cases,
    mistakes=[
        Mistake("running sum not rescaled when the maximum changes",
                "Terms added under an older, smaller maximum must be multiplied by "
                "exp(m_old - m_new) before new terms are added, in the sum of weights too.",
                _bw_sum_not_rescaled),
        Mistake("accumulated output not rescaled when the maximum changes",
                "The running weighted sum of values was built with the old maximum; it needs the "
                "same correction factor as the sum of weights.", _bw_acc_not_rescaled),
        Mistake("running sums not rescaled when the maximum changes",
                "Both the sum of weights and the weighted sum of values must be multiplied by "
                "exp(m_old - m_new) whenever the running maximum grows.", _bw_nothing_rescaled),
        Mistake("no running maximum",
                "Exponentials of large scores overflow in float32; subtracting the running "
                "maximum keeps every exponential at most 1.", _bw_no_max),
        Mistake("missing 1/sqrt(d) scaling",
                "The scores are divided by sqrt(d), d the width of the queries and keys.",
                _bw_unscaled),
        Mistake("last, shorter block of keys skipped",
                "When block_size does not divide S, the last block holds the remaining "
                "S mod block_size keys and must be processed too.", _bw_partial_dropped),
        Mistake("causal mask built from the key's index inside its block",
                "The causal test compares absolute positions: a key's position is the block's "
                "start plus its index inside the block.", _bw_local_mask),
        Mistake("causal mask aligned at the bottom-right corner",
                "With is_causal, query i sees keys 0..i (top-left alignment), even when L != S.",
                _bw_bottom_right),
        Mistake("diagonal excluded from the causal mask",
                "Query i may attend to key i itself; with the diagonal masked, query 0 sees no "
                "key at all.", _bw_strict),
        Mistake("causal mask ignored",
                "With is_causal=True, the keys after a query's own position must get no weight.",
                _bw_not_causal),
    ]))


# --- local_global_mask -----------------------------------------------------------------------

def _local_global_mask(n, window, global_positions):
    i = torch.arange(n)
    band = (i[:, None] - i[None, :]).abs() <= window
    g = torch.zeros(n, dtype=torch.bool)
    g[list(global_positions)] = True
    return band | g[:, None] | g[None, :]


def _lg_one_sided(n, window, global_positions):
    i = torch.arange(n)
    offset = i[:, None] - i[None, :]
    g = torch.zeros(n, dtype=torch.bool)
    g[list(global_positions)] = True
    return ((offset >= 0) & (offset <= window)) | g[:, None] | g[None, :]


def _lg_strict_window(n, window, global_positions):
    i = torch.arange(n)
    band = (i[:, None] - i[None, :]).abs() < window
    g = torch.zeros(n, dtype=torch.bool)
    g[list(global_positions)] = True
    return band | g[:, None] | g[None, :]


def _lg_rows_only(n, window, global_positions):
    i = torch.arange(n)
    g = torch.zeros(n, dtype=torch.bool)
    g[list(global_positions)] = True
    return ((i[:, None] - i[None, :]).abs() <= window) | g[:, None]


def _lg_columns_only(n, window, global_positions):
    i = torch.arange(n)
    g = torch.zeros(n, dtype=torch.bool)
    g[list(global_positions)] = True
    return ((i[:, None] - i[None, :]).abs() <= window) | g[None, :]


def _lg_and(n, window, global_positions):
    i = torch.arange(n)
    g = torch.zeros(n, dtype=torch.bool)
    g[list(global_positions)] = True
    return ((i[:, None] - i[None, :]).abs() <= window) | (g[:, None] & g[None, :])


def _lg_no_globals(n, window, global_positions):
    return _local_global_mask(n, window, [])


def _lg_cases(rng, hidden):
    if not hidden:
        values = [(5, 1, [0, 3]), (4, 0, []), (6, 1, [2])]
    else:
        n = rng.randint(9, 14)
        values = [(1, 0, []), (6, 5, []), (5, 9, [1]), (8, 2, [0, 7]), (7, 1, [3, 3]),
                  (n, 2, sorted(rng.sample(range(n), 3))), (3, 0, [0, 1, 2])]
    return [Case(f"n={n}, window={w}, global_positions={g}", (n, w, g),
                 arg_names=("n", "window", "global_positions")) for n, w, g in values]


register(Question(
    qid="ch08.local_global_mask", name="local_global_mask", kind="function",
    title="Local-plus-global attention mask", reference=_local_global_mask, cases=_lg_cases,
    mistakes=[
        Mistake("one-sided (causal) window",
                "The band is symmetric: query i sees the keys up to `window` positions before "
                "and after it.", _lg_one_sided),
        Mistake("window one position too narrow",
                "Keys at distance exactly `window` are inside the band; window = 0 must still "
                "let every token see itself.", _lg_strict_window),
        Mistake("global tokens see everyone but are not seen",
                "Every query also attends to the global tokens: their columns are all True, "
                "not only their rows.", _lg_rows_only),
        Mistake("global tokens are seen but see only their window",
                "A global token also attends to every key: its row is all True, not only its "
                "column.", _lg_columns_only),
        Mistake("global tokens only see each other",
                "A global token attends to every key and every query attends to it; combine "
                "the conditions with 'or', not 'and'.", _lg_and),
        Mistake("global positions ignored",
                "Each position in global_positions adds a full row and a full column of True.",
                _lg_no_globals),
    ]))


# --- grouped_query_attention ------------------------------------------------------------------

def _gqa(query, key, value, is_causal=False):
    group = query.shape[1] // key.shape[1]
    return scaled_dot_product_attention(query, key.repeat_interleave(group, dim=1),
                                        value.repeat_interleave(group, dim=1), is_causal=is_causal)


def _gqa_tiled(query, key, value, is_causal=False):
    group = query.shape[1] // key.shape[1]
    return scaled_dot_product_attention(query, key.repeat(1, group, 1, 1),
                                        value.repeat(1, group, 1, 1), is_causal=is_causal)


def _gqa_values_tiled(query, key, value, is_causal=False):
    group = query.shape[1] // key.shape[1]
    return scaled_dot_product_attention(query, key.repeat_interleave(group, dim=1),
                                        value.repeat(1, group, 1, 1), is_causal=is_causal)


def _gqa_unscaled(query, key, value, is_causal=False):
    group = query.shape[1] // key.shape[1]
    return scaled_dot_product_attention(query, key.repeat_interleave(group, dim=1),
                                        value.repeat_interleave(group, dim=1), is_causal=is_causal,
                                        scale=1.0)


def _gqa_not_causal(query, key, value, is_causal=False):
    return _gqa(query, key, value, False)


def _gqa_bottom_right(query, key, value, is_causal=False):
    if not is_causal:
        return _gqa(query, key, value)
    L, S = query.shape[-2], key.shape[-2]
    mask = torch.ones(L, S, dtype=torch.bool).tril(S - L)
    group = query.shape[1] // key.shape[1]
    return scaled_dot_product_attention(query, key.repeat_interleave(group, dim=1),
                                        value.repeat_interleave(group, dim=1), attn_mask=mask)


def _gqa_cases(rng, hidden):
    names = ("query", "key", "value", "is_causal")
    # (B, H, G, L, S, D, Dv, is_causal)
    if not hidden:
        configs = [(1, 4, 2, 2, 3, 2, 2, False), (1, 4, 2, 3, 4, 2, 2, True),
                   (1, 2, 1, 2, 3, 2, 2, False)]
    else:
        configs = [(2, 3, 3, 3, 4, 4, 4, False), (2, 6, 3, 2, 5, 4, 3, False),
                   (1, 6, 2, 4, 4, 2, 2, True), (1, 4, 2, 3, 5, 4, 4, True),
                   (2, 8, 4, 3, 3, 2, 5, True), (1, 4, 1, 1, 6, 8, 4, False)]
    cases = []
    for B, H, G, L, S, D, Dv, causal in configs:
        q, k, v = torch.randn(B, H, L, D), torch.randn(B, G, S, D), torch.randn(B, G, S, Dv)
        cases.append(Case(f"H={H} query heads, G={G} key-value heads, L={L}, S={S}, "
                          f"is_causal {causal}", (q, k, v, causal), arg_names=names))
    H, G = (3, 2) if not hidden else (6, 4)  # G does not divide H: the function must refuse
    q, k, v = torch.randn(1, H, 2, 2), torch.randn(1, G, 3, 2), torch.randn(1, G, 3, 2)
    cases.append(Case(f"H={H} query heads, G={G} key-value heads (G does not divide H)",
                      (q, k, v, False), arg_names=names, raises="ValueError"))
    return cases


register(Question(
    qid="ch08.grouped_query_attention", name="grouped_query_attention", kind="function",
    title="Grouped-query attention", reference=_gqa, cases=_gqa_cases,
    mistakes=[
        Mistake("query heads grouped in the wrong order",
                "Consecutive query heads share a key-value head (heads 0..H/G-1 use head 0, "
                "the next H/G use head 1, ...); tiling the G heads end to end pairs query "
                "head h with key-value head h mod G instead.", _gqa_tiled),
        Mistake("keys and values expanded differently",
                "Each query head must read the keys and the values of the same key-value head.",
                _gqa_values_tiled),
        Mistake("missing 1/sqrt(d) scaling",
                "The scores are divided by sqrt(D), the width of the queries and keys.",
                _gqa_unscaled),
        Mistake("causal mask ignored",
                "With is_causal=True, query i may attend only to keys 0..i.", _gqa_not_causal),
        Mistake("causal mask aligned at the bottom-right corner",
                "Here is_causal means what it means for qc.scaled_dot_product_attention: query i "
                "sees keys 0..i (top-left alignment), even when L != S.", _gqa_bottom_right),
    ]))
