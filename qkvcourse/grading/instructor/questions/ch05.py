"""Chapter 5 (multi-head attention): splitting and merging heads, multi-head attention with
plain weight tensors."""
from __future__ import annotations

import math

import torch

from ....masking import masked_softmax
from ....multihead import merge_heads, split_heads
from ...core import Case
from ..registry import Mistake, Question, register


# --- split_heads ---------------------------------------------------------------------------

def _split_heads(X, num_heads):
    return split_heads(X, num_heads)


def _split_reshape_only(X, num_heads):
    """Reshape straight to (B, H, T, D): the right shape, with the memory read in the wrong order."""
    B, T, N = X.shape
    return X.reshape(B, num_heads, T, N // num_heads)


def _split_strided(X, num_heads):
    """Cut the features as (D, H) instead of (H, D): head h gets features h, h + H, h + 2H, ..."""
    B, T, N = X.shape
    return X.reshape(B, T, N // num_heads, num_heads).permute(0, 3, 1, 2)


def _split_no_transpose(X, num_heads):
    """Stops at (B, T, H, D): the head axis is not moved in front of the time axis."""
    B, T, N = X.shape
    return X.reshape(B, T, num_heads, N // num_heads)


def _split_swapped_last(X, num_heads):
    """Moves the head axis forward but also swaps T and D: (B, H, D, T)."""
    B, T, N = X.shape
    return X.reshape(B, T, num_heads, N // num_heads).permute(0, 2, 3, 1)


def _split_cases(rng, hidden):
    names = ("X", "num_heads")
    if not hidden:
        # X = arange so that the feedback shows where every feature went
        sizes = [(1, 3, 4, 2), (2, 2, 6, 3), (2, 3, 6, 2)]
    else:
        sizes = [(1, 1, 4, 2), (3, 5, 8, 1), (2, 4, 12, 4), (1, 3, 6, 6), (2, 6, 12, 3)]
    cases = []
    for B, T, N, H in sizes:
        X = torch.arange(B * T * N, dtype=torch.float32).reshape(B, T, N) if not hidden \
            else torch.randn(B, T, N)
        cases.append(Case(f"X {(B, T, N)}, num_heads={H}", (X, H), arg_names=names))
    return cases


register(Question(
    qid="ch05.split_heads", name="split_heads", kind="function",
    title="Splitting the features into heads", reference=_split_heads, cases=_split_cases,
    atol=0.0, rtol=0.0,
    mistakes=[
        Mistake("reshaped to (B, H, T, D) without a transpose",
                "A reshape keeps the memory order (token by token), so reshaping straight to "
                "(B, H, T, D) mixes tokens into the head blocks; first cut the feature axis into "
                "(H, D), then move the head axis in front of the time axis.",
                _split_reshape_only),
        Mistake("features cut as (D, H) instead of (H, D)",
                "Head h must receive the contiguous block of features h*D .. (h+1)*D - 1; cutting "
                "the feature axis as (D, H) gives head h every H-th feature instead.",
                _split_strided),
        Mistake("head axis not moved in front of the time axis",
                "The result must be (B, H, T, D), with the heads on axis 1 so that each "
                "(batch row, head) pair is an independent attention problem.",
                _split_no_transpose),
        Mistake("time and feature axes swapped",
                "Only the head axis moves; inside a head the tokens stay on axis -2 and the D "
                "features on axis -1.", _split_swapped_last),
    ]))


# --- merge_heads ---------------------------------------------------------------------------

def _merge_heads(X):
    return merge_heads(X)


def _merge_reshape_only(X):
    """reshape(B, T, H*D) without the transpose: right shape, wrong content."""
    B, H, T, D = X.shape
    return X.reshape(B, T, H * D)


def _merge_interleaved(X):
    """Concatenates as (D, H) instead of (H, D): the features of the heads are interleaved."""
    B, H, T, D = X.shape
    return X.permute(0, 2, 3, 1).reshape(B, T, H * D)


def _merge_wrong_transpose(X):
    """Swaps T and D instead of H and T before the reshape."""
    B, H, T, D = X.shape
    return X.transpose(2, 3).reshape(B, T, H * D)


def _merge_cases(rng, hidden):
    if not hidden:
        sizes = [(1, 2, 3, 2), (2, 3, 2, 2), (1, 2, 2, 3)]
    else:
        sizes = [(1, 1, 3, 4), (2, 4, 1, 2), (3, 2, 5, 3), (2, 6, 4, 1), (1, 3, 3, 3)]
    cases = []
    for B, H, T, D in sizes:
        X = torch.arange(B * H * T * D, dtype=torch.float32).reshape(B, H, T, D) if not hidden \
            else torch.randn(B, H, T, D)
        cases.append(Case(f"X (B, H, T, D) = {(B, H, T, D)}", (X,), arg_names=("X",)))
    # a non-contiguous input, as it comes out of a batched matmul on transposed tensors
    X = torch.randn(2, 3, 2, 4).transpose(2, 3) if hidden else \
        torch.arange(24, dtype=torch.float32).reshape(2, 2, 3, 2).transpose(2, 3)
    cases.append(Case(f"a non-contiguous X of shape {tuple(X.shape)}", (X,), arg_names=("X",)))
    return cases


register(Question(
    qid="ch05.merge_heads", name="merge_heads", kind="function",
    title="Merging the heads back", reference=_merge_heads, cases=_merge_cases,
    atol=0.0, rtol=0.0,
    mistakes=[
        Mistake("reshaped without a transpose",
                "(B, H, T, D) memory is ordered head by head, so a plain reshape to (B, T, H*D) "
                "puts features of several tokens of one head into one output row; the head axis "
                "must first move next to the feature axis.", _merge_reshape_only),
        Mistake("heads interleaved instead of concatenated",
                "Output row t must be head 0's D features of token t, then head 1's, and so on "
                "(a concatenation); ordering the axes as (D, H) before the reshape interleaves "
                "the heads feature by feature.", _merge_interleaved),
        Mistake("time and feature axes swapped instead of heads and time",
                "Before flattening, the tokens must be on axis 1 and the (head, feature) pairs "
                "behind them; swapping the last two axes leaves the heads in front of the tokens.",
                _merge_wrong_transpose),
    ]))


# --- multihead_attention -------------------------------------------------------------------

def _mha(queries, keys, values, W_q, W_k, W_v, W_o, num_heads, valid_lens=None, *,
         scale_width=None, lens_mode="right", use_W_o=True, merge=merge_heads,
         transpose_weights=True, zero_empty=True):
    """Reference and, through the keyword switches, the mistakes."""
    H = num_heads
    N = W_q.shape[0]
    lin = (lambda X, W: X @ W.T) if transpose_weights else (lambda X, W: X @ W)
    q = split_heads(lin(queries, W_q), H)  # (B, H, L, D)
    k = split_heads(lin(keys, W_k), H)  # (B, H, S, D)
    v = split_heads(lin(values, W_v), H)  # (B, H, S, D)
    D = N // H if scale_width is None else scale_width(N, H)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D)  # (B, H, L, S)
    B = q.shape[0]
    if valid_lens is None or lens_mode == "ignore":
        weights = torch.softmax(scores, -1)
    elif lens_mode == "right":
        weights = masked_softmax(scores, valid_lens)
    else:  # "tile": d2l's (B*H) layout with repeat instead of repeat_interleave
        folded = scores.reshape(B * H, *scores.shape[2:])  # row b*H + h
        dims = (H,) if valid_lens.dim() == 1 else (H, 1)
        lens = valid_lens.repeat(*dims)  # row r gets the lengths of batch row r % B
        weights = masked_softmax(folded, lens).reshape(scores.shape)
    if not zero_empty:
        weights = weights.masked_fill(weights.sum(-1, keepdim=True) == 0, float("nan"))
    out = merge(weights @ v)  # (B, L, N)
    return lin(out, W_o) if use_W_o else out


def _mha_reference(queries, keys, values, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
    return _mha(queries, keys, values, W_q, W_k, W_v, W_o, num_heads, valid_lens)


def _mha_variant(**switches):
    def impl(queries, keys, values, W_q, W_k, W_v, W_o, num_heads, valid_lens=None):
        return _mha(queries, keys, values, W_q, W_k, W_v, W_o, num_heads, valid_lens, **switches)
    return impl


def _mha_cases(rng, hidden):
    names = ("queries", "keys", "values", "W_q", "W_k", "W_v", "W_o", "num_heads", "valid_lens")
    cases = []

    def add(B, L, S, dq, dk, dv, N, H, lens_kind, note=""):
        q, k, v = torch.randn(B, L, dq), torch.randn(B, S, dk), torch.randn(B, S, dv)
        Ws = [torch.randn(N, d) / math.sqrt(d) for d in (dq, dk, dv, N)]
        if lens_kind is None:
            lens = None
        elif lens_kind == "rows":
            lens = torch.tensor([rng.randint(1, S) for _ in range(B)])
            if B > 1 and len(set(lens.tolist())) == 1:  # different rows, so row mix-ups show
                lens[0] = S if lens[0] < S else 1
        elif lens_kind == "queries":
            lens = torch.tensor([[rng.randint(1, S) for _ in range(L)] for _ in range(B)])
        else:  # "empty": per-query lengths with a query that sees no key
            lens = torch.tensor([[rng.randint(1, S) for _ in range(L)] for _ in range(B)])
            lens[0, -1] = 0
        shown = "None" if lens is None else f"{tuple(lens.shape)} = {lens.tolist()}"
        label = (f"B={B}, L={L}, S={S}, dq={dq}, dk={dk}, dv={dv}, N={N}, num_heads={H}, "
                 f"valid_lens {shown}{note}")
        cases.append(Case(label, (q, k, v, *Ws, H, lens), arg_names=names))

    if not hidden:
        add(2, 2, 3, 4, 4, 4, 4, 2, None)
        add(2, 2, 3, 3, 5, 2, 4, 2, "rows")
        add(2, 3, 2, 4, 4, 4, 6, 3, "queries")
    else:
        add(1, 4, 4, 8, 8, 8, 8, 4, None)
        add(3, 2, 5, 6, 3, 4, 8, 2, "rows")
        add(2, 3, 4, 4, 4, 4, 4, 4, "rows", " (one head per feature, D = 1)")
        add(2, 4, 3, 5, 5, 5, 6, 1, "queries", " (a single head)")
        add(2, 3, 5, 4, 6, 5, 8, 4, "queries")
        add(2, 3, 4, 6, 6, 6, 6, 3, "empty", " (a query with valid length 0)")
    return cases


register(Question(
    qid="ch05.multihead_attention", name="multihead_attention", kind="function",
    title="Multi-head attention with plain tensors", reference=_mha_reference, cases=_mha_cases,
    atol=1e-5, rtol=1e-4,
    mistakes=[
        Mistake("scores scaled by 1/sqrt(N) instead of 1/sqrt(N/H)",
                "Each head computes dot products of D = N/H features, so the scale that keeps "
                "their variance near 1 uses the per-head width, not the model width.",
                _mha_variant(scale_width=lambda N, H: N)),
        Mistake("valid lengths given to the wrong heads",
                "Every head of batch row b must use row b's lengths. With the heads folded into "
                "the batch axis, rows b*H .. b*H + H - 1 all belong to batch row b, so each "
                "length is repeated for H consecutive rows; tiling the whole list H times hands "
                "the lengths to the wrong rows.", _mha_variant(lens_mode="tile")),
        Mistake("valid_lens ignored",
                "Keys beyond a query's valid length must get zero weight in every head.",
                _mha_variant(lens_mode="ignore")),
        Mistake("output projection W_o missing",
                "After the heads are concatenated back to width N, the result is mixed by W_o; "
                "without it the heads never exchange information.",
                _mha_variant(use_W_o=False)),
        Mistake("heads merged without a transpose",
                "Reshaping (B, H, L, D) straight to (B, L, N) mixes the outputs of different "
                "queries; move the head axis next to the feature axis before flattening.",
                _mha_variant(merge=_merge_reshape_only)),
        Mistake("weights applied without transposing",
                "The weights are in nn.Linear's (out, in) layout, so a projection computes "
                "X W^T, not X W.", _mha_variant(transpose_weights=False)),
        Mistake("NaN for a query that sees no key",
                "A query with valid length 0 attends to nothing: its weights must be zeros "
                "(so its output is W_o applied to zeros), never NaN.",
                _mha_variant(zero_empty=False)),
    ]))
