"""Chapter 1's second worked example (issue 9): the printed numbers of softmax(QKᵀ)V and
softmax(QKᵀ/√d)V on fixed 3 × 4 / 3 × 5 matrices, pinned against the package's explicit
path, its fused path and a softmax written out here."""
from __future__ import annotations

import math

import pytest
import torch

import qkvcourse as qc

Q = [[0.3, -2.0, 0.4, 6.0], [-1.0, 1.5, 0.2, 3.0], [0.3, -1.0, 0.2, 1.0]]
K = [[-0.5, 1.7, 0.3, 4.0], [0.4, -1.5, 0.3, 5.5], [-1.0, -3.5, 1.0, 4.0]]
V = [[0.0, 9.0, 0.0, -5.0, 1.2], [4.0, 0.1, 0.1, 0.1, 0.0], [-0.3, 0.0, 0.3, 10.0, 0.1]]

# First rows as printed in the chapter (and quoted in the issue), to the printed digits.
SCORES_ROW0 = [20.57, 36.24, 31.10]
WEIGHTS_ROW0 = [1.5562e-07, 9.9418e-01, 5.8236e-03]
OUTPUT_ROW0 = [3.9750, 0.0994, 0.1012, 0.1577, 0.0006]
SCALED_WEIGHTS_ROW0 = [3.6738e-04, 9.2856e-01, 7.1068e-02]
SCALED_OUTPUT_ROW0 = [3.6929, 0.0962, 0.1142, 0.8017, 0.0075]


def tensors(dtype):
    return (torch.tensor(Q, dtype=dtype), torch.tensor(K, dtype=dtype),
            torch.tensor(V, dtype=dtype))


def by_hand(q, k, v, scale):
    """softmax written out with exp and a sum, no library softmax."""
    s = [[scale * sum(a * b for a, b in zip(qi, kj)) for kj in k] for qi in q]
    w = [[math.exp(x - max(row)) / sum(math.exp(y - max(row)) for y in row) for x in row]
         for row in s]
    out = [[sum(w[i][j] * v[j][c] for j in range(len(v))) for c in range(len(v[0]))]
           for i in range(len(q))]
    return s, w, out


def test_printed_numbers_match_an_independent_computation():
    s, w, out = by_hand(Q, K, V, 1.0)
    assert [round(x, 2) for x in s[0]] == SCORES_ROW0
    assert [float(f"{x:.4e}") for x in w[0]] == WEIGHTS_ROW0
    assert [round(x, 4) for x in out[0]] == OUTPUT_ROW0
    _, w, out = by_hand(Q, K, V, 1 / math.sqrt(4))
    assert [float(f"{x:.4e}") for x in w[0]] == SCALED_WEIGHTS_ROW0
    assert [round(x, 4) for x in out[0]] == SCALED_OUTPUT_ROW0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("scale, weights_row0, output_row0", [
    (1.0, WEIGHTS_ROW0, OUTPUT_ROW0), (None, SCALED_WEIGHTS_ROW0, SCALED_OUTPUT_ROW0)],
    ids=["unscaled", "scaled"])
def test_package_reproduces_the_example(dtype, scale, weights_row0, output_row0):
    q, k, v = tensors(dtype)
    out, w = qc.scaled_dot_product_attention(q, k, v, scale=scale, need_weights=True)
    ref_out, ref_w = qc.attention_reference(q, k, v, scale=scale)
    fused = qc.scaled_dot_product_attention(q, k, v, scale=scale)  # no weights: fused kernel
    _, w_hand, out_hand = by_hand(Q, K, V, 1 / math.sqrt(4) if scale is None else scale)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w, torch.tensor(w_hand, dtype=dtype), **tol)
    torch.testing.assert_close(out, torch.tensor(out_hand, dtype=dtype), **tol)
    torch.testing.assert_close(ref_w, w, **tol)
    torch.testing.assert_close(ref_out, out, **tol)
    torch.testing.assert_close(fused, out, **tol)
    # the digits printed in the chapter
    torch.testing.assert_close(w[0], torch.tensor(weights_row0, dtype=dtype),
                               rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(out[0], torch.tensor(output_row0, dtype=dtype),
                               rtol=0, atol=6e-5)


def test_scaling_takes_the_square_root_of_weight_ratios():
    """Dividing scores by 2 (d = 4) turns every ratio of weights into its square root."""
    q, k, v = tensors(torch.float64)
    _, w = qc.scaled_dot_product_attention(q, k, v, scale=1.0, need_weights=True)
    _, ws = qc.scaled_dot_product_attention(q, k, v, need_weights=True)
    ratios, scaled_ratios = w[:, :, None] / w[:, None, :], ws[:, :, None] / ws[:, None, :]
    torch.testing.assert_close(scaled_ratios, ratios.sqrt(), rtol=1e-10, atol=0)
    assert (ws.amax(-1) < w.amax(-1)).all()  # every query's lookup is softer
