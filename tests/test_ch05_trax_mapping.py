"""Chapter 5's reading of Trax's AttentionQKV (issue 9): qc.MultiHeadAttention equals
Serial(Parallel(Dense, Dense, Dense), PureAttention(n_heads), Dense) assembled from its own
W_q, W_k, W_v, split/attend/merge and W_o; values are split per head; valid_lens masks by
position, not by score."""
from __future__ import annotations

import math

import pytest
import torch

import qkvcourse as qc


def pure_attention(q, k, v, valid_lens, n_heads):
    """Trax's PureAttention: no parameters; split heads, attend with the mask, join heads."""
    q, k, v = (qc.split_heads(t, n_heads) for t in (q, k, v))  # (B, H, L|S, D)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, L, S)
    if valid_lens is not None:
        keep = qc.valid_lens_to_mask(valid_lens, k.shape[2]).unsqueeze(1)  # (B, 1, 1|L, S)
        scores = scores.masked_fill(~keep, float("-inf"))
    return qc.merge_heads(torch.softmax(scores, dim=-1) @ v)  # (B, L, N)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cross", [True, False], ids=["cross", "self"])
@pytest.mark.parametrize("valid_lens", [None, torch.tensor([5, 2]), torch.tensor([[1, 5, 3], [2, 2, 4]])],
                         ids=["no-mask", "per-row", "per-query"])
def test_serial_parallel_pure_attention_dense_is_multihead_attention(bias, cross, valid_lens):
    torch.manual_seed(0)
    N, H = 16, 4
    layer = qc.MultiHeadAttention(N, H, bias=bias).eval()
    X_q = torch.randn(2, 3, N)
    X_kv = torch.randn(2, 5, N) if cross else X_q
    if not cross and valid_lens is not None:
        valid_lens = valid_lens.clamp(max=3)
    with torch.no_grad():
        projected = [dense(x) for dense, x in zip((layer.W_q, layer.W_k, layer.W_v),
                                                  (X_q, X_kv, X_kv))]
        serial = layer.W_o(pure_attention(*projected, valid_lens, H))
        ours = layer(X_q, X_kv, X_kv, valid_lens)
        ours_explicit = layer(X_q, X_kv, X_kv, valid_lens, need_weights=True)
    torch.testing.assert_close(serial, ours, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(serial, ours_explicit, rtol=1e-5, atol=1e-6)


def test_values_are_split_per_head():
    torch.manual_seed(0)
    layer = qc.MultiHeadAttention(12, 3, need_weights=True).eval()
    X = torch.randn(2, 5, 12)
    with torch.no_grad():
        q, k, v = layer.project(X, X, X)
        torch.testing.assert_close(v, qc.split_heads(layer.W_v(X), 3))
        assert v.shape == (2, 3, 5, 4)
        # changing head 2's block of projected values leaves heads 0 and 1 untouched
        out = qc.scaled_dot_product_attention(q, k, v)
        v2 = v.clone()
        v2[:, 2] += 1.0
        out2 = qc.scaled_dot_product_attention(q, k, v2)
    torch.testing.assert_close(out[:, :2], out2[:, :2])
    assert not torch.allclose(out[:, 2], out2[:, 2])


def test_valid_lens_keeps_first_positions_not_highest_scores():
    scores = torch.tensor([[[0.5, 1.0, 0.2, 4.0, 5.0, 3.0]]])
    weights = qc.masked_softmax(scores, torch.tensor([3]))
    assert weights[0, 0].nonzero().flatten().tolist() == [0, 1, 2]
    assert (weights[0, 0, 3:] == 0).all()
    torch.testing.assert_close(weights[0, 0, :3], torch.softmax(scores[0, 0, :3], dim=-1))
