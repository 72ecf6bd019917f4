"""masked_softmax, valid_lens_to_mask and causal_mask against d2l and a naive reference."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qkvcourse as qc


def d2l_masked_softmax(d2l, X, valid_lens):
    # d2l's masked_softmax writes -1e6 into its input in place: give it a copy.
    return d2l.masked_softmax(X.clone(), valid_lens)


def naive_masked_softmax(X, valid_lens=None, mask=None):
    """Row by row, in Python floats: softmax over the kept keys, 0 elsewhere, 0-rows if none."""
    X64 = X.detach().double()
    keep = torch.ones(X.shape, dtype=torch.bool)
    if mask is not None:
        keep &= mask.expand(X.shape).cpu()
    out = torch.zeros(X.shape, dtype=torch.float64)
    K = X.shape[-1]
    for index in itertools.product(*(range(n) for n in X.shape[:-1])):
        b, i = index[0], index[-1]  # batch row, query
        if valid_lens is not None:
            length = int(valid_lens[b] if valid_lens.dim() == 1 else valid_lens[b, i])
        else:
            length = K
        kept = [j for j in range(K) if j < length and bool(keep[index + (j,)])]
        if not kept:
            continue
        top = max(float(X64[index + (j,)]) for j in kept)
        exps = {j: math.exp(float(X64[index + (j,)]) - top) for j in kept}
        total = sum(exps.values())
        for j in kept:
            out[index + (j,)] = exps[j] / total
    return out


def test_d2l_is_imported_without_leaving_a_fake_torchvision(d2l):
    import importlib.util
    import sys
    assert callable(d2l.masked_softmax) and d2l.masked_softmax.__module__ == "d2l.torch"
    module = sys.modules.get("torchvision")
    assert module is None or module.__spec__ is not None
    importlib.util.find_spec("torchvision")  # what transformers does: must not raise


# -- parity with d2l -----------------------------------------------------------------------

@pytest.mark.parametrize("valid_lens", [
    torch.tensor([2, 3]),
    torch.tensor([4, 1]),
    torch.tensor([[1, 3, 4], [2, 4, 1]]),
])
def test_matches_d2l_for_positive_valid_lens(d2l, valid_lens):
    X = torch.randn(2, 3, 4)
    ours = qc.masked_softmax(X, valid_lens)
    theirs = d2l_masked_softmax(d2l, X, valid_lens)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # and the masked keys really are excluded, not merely small
    mask = qc.valid_lens_to_mask(valid_lens, 4).expand(2, 3, 4)
    assert torch.all(ours[~mask] == 0)


def test_matches_d2l_without_valid_lens(d2l):
    X = torch.randn(3, 5, 7)
    torch.testing.assert_close(qc.masked_softmax(X), d2l_masked_softmax(d2l, X, None),
                               rtol=0, atol=1e-6)


def test_does_not_modify_its_input():
    X = torch.randn(2, 3, 4)
    before = X.clone()
    qc.masked_softmax(X, torch.tensor([1, 2]), mask=torch.rand(2, 3, 4) > 0.5)
    assert torch.equal(X, before)


@pytest.mark.parametrize("valid_lens", [torch.tensor([0, 3]), torch.tensor([[0, 2, 4], [1, 0, 0]])])
def test_valid_len_zero_differs_from_d2l_as_documented(d2l, valid_lens):
    X = torch.randn(2, 3, 4)
    ours = qc.masked_softmax(X, valid_lens)
    theirs = d2l_masked_softmax(d2l, X, valid_lens)
    lengths = valid_lens if valid_lens.dim() == 2 else valid_lens[:, None].expand(2, 3)
    empty = lengths == 0  # (B, Q)
    # d2l: a row with no valid key gets uniform weights (every score is -1e6)
    torch.testing.assert_close(theirs[empty], torch.full_like(theirs[empty], 0.25))
    # ours: zeros, no NaN
    assert torch.all(ours[empty] == 0)
    assert torch.isfinite(ours).all()
    # the other rows agree
    torch.testing.assert_close(ours[~empty], theirs[~empty], rtol=0, atol=1e-6)


# -- boolean masks, combinations, 4-D -------------------------------------------------------

@pytest.mark.parametrize("mask_shape", [(2, 3, 5), (3, 5), (5,), (2, 1, 5), (1, 3, 1)])
def test_boolean_mask(mask_shape):
    X = torch.randn(2, 3, 5)
    mask = torch.rand(mask_shape) > 0.4
    weights = qc.masked_softmax(X, mask=mask)
    full = mask.expand(X.shape)
    assert torch.all(weights[~full] == 0)
    torch.testing.assert_close(weights, naive_masked_softmax(X, mask=mask).float(),
                               rtol=0, atol=1e-6)
    # an all-True mask is no mask
    torch.testing.assert_close(qc.masked_softmax(X, mask=torch.ones(mask_shape, dtype=torch.bool)),
                               torch.softmax(X, -1), rtol=0, atol=1e-7)


def test_valid_lens_and_mask_are_combined_by_logical_and():
    X = torch.randn(2, 3, 5)
    valid_lens = torch.tensor([[3, 5, 2], [4, 1, 5]])
    mask = torch.tensor([True, False, True, True, True])  # never attend to key 1
    weights = qc.masked_softmax(X, valid_lens, mask=mask)
    keep = qc.valid_lens_to_mask(valid_lens, 5) & mask
    assert torch.all(weights[~keep] == 0)
    assert torch.all(weights[keep] > 0)
    torch.testing.assert_close(weights, naive_masked_softmax(X, valid_lens, mask).float(),
                               rtol=0, atol=1e-6)
    # query (1, 1) has only key 0, which the mask allows: all weight on it
    assert weights[1, 1, 0] == 1


@pytest.mark.parametrize("valid_lens", [torch.tensor([3, 0]), torch.tensor([[1, 2, 3], [4, 0, 2]])])
def test_four_d_scores_with_valid_lens_apply_to_every_head(valid_lens):
    X = torch.randn(2, 4, 3, 5)  # (B, H, Q, K)
    weights = qc.masked_softmax(X, valid_lens)
    assert weights.shape == X.shape
    torch.testing.assert_close(weights, naive_masked_softmax(X, valid_lens).float(),
                               rtol=0, atol=1e-6)
    # the same as folding the heads into the batch, d2l style
    folded = X.reshape(8, 3, 5)
    lens = torch.repeat_interleave(valid_lens, 4, dim=0)
    torch.testing.assert_close(weights.reshape(8, 3, 5), qc.masked_softmax(folded, lens),
                               rtol=0, atol=0)


def test_fully_masked_rows_are_zero_with_finite_gradients():
    X = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1] = False
    valid_lens = torch.tensor([4, 0])  # batch row 1: every query fully masked
    weights = qc.masked_softmax(X, valid_lens, mask=mask)
    assert torch.all(weights[0, 1] == 0) and torch.all(weights[1] == 0)
    sums = weights.sum(-1)
    torch.testing.assert_close(sums[0, [0, 2]], torch.ones(2))
    (weights * torch.randn(2, 3, 4)).sum().backward()
    assert torch.isfinite(X.grad).all()
    # scores that cannot affect the output get no gradient
    assert torch.all(X.grad[0, 1] == 0) and torch.all(X.grad[1] == 0)
    assert X.grad[0, 0].abs().sum() > 0


def test_rows_sum_to_one_and_are_nonnegative():
    X = torch.randn(4, 6, 9) * 10
    valid_lens = torch.randint(1, 10, (4, 6))
    weights = qc.masked_softmax(X, valid_lens)
    assert torch.all(weights >= 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 6))


def test_extreme_scores_do_not_overflow():
    X = torch.tensor([[[1e30, -1e30, 0.0], [3e38, 3e38, -3e38]]])
    weights = qc.masked_softmax(X, torch.tensor([2]))
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights, torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_fully_masked_rows(dtype):
    X = torch.randn(2, 3, 4).to(dtype)
    weights = qc.masked_softmax(X, torch.tensor([0, 2]))
    assert weights.dtype == dtype
    assert torch.isfinite(weights).all()
    assert torch.all(weights[0] == 0)
    torch.testing.assert_close(weights[1].sum(-1).float(), torch.ones(3), rtol=0, atol=1e-2)


# -- property tests --------------------------------------------------------------------------

@st.composite
def masked_softmax_cases(draw):
    four_d = draw(st.booleans())
    B, Q, K = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 6))
    shape = (B, draw(st.integers(1, 3)), Q, K) if four_d else (B, Q, K)
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(shape, generator=g) * draw(st.sampled_from([0.1, 1.0, 30.0]))
    kind = draw(st.sampled_from(["none", "1d", "2d"]))
    valid_lens = None
    if kind == "1d":
        valid_lens = torch.randint(0, K + 1, (B,), generator=g)
    elif kind == "2d":
        valid_lens = torch.randint(0, K + 1, (B, Q), generator=g)
    mask = None
    if draw(st.booleans()):
        # a shape that broadcasts to X: each axis full or 1, possibly fewer leading axes
        mask_shape = tuple(n if draw(st.booleans()) else 1 for n in shape)
        mask_shape = mask_shape[draw(st.integers(0, len(shape) - 1)):]
        mask = torch.rand(mask_shape, generator=g) < draw(st.sampled_from([0.3, 0.7, 1.0]))
    return X, valid_lens, mask


@settings(max_examples=50, deadline=None)
@given(masked_softmax_cases())
def test_property_masked_softmax(case):
    X, valid_lens, mask = case
    weights = qc.masked_softmax(X, valid_lens, mask=mask)
    reference = naive_masked_softmax(X, valid_lens, mask)
    assert weights.shape == X.shape
    assert torch.all(weights >= 0)
    keep = reference > 0
    masked = torch.ones(X.shape, dtype=torch.bool)
    if mask is not None:
        masked &= mask.expand(X.shape)
    if valid_lens is not None:
        lens_mask = qc.valid_lens_to_mask(valid_lens, X.shape[-1])
        masked &= lens_mask.unsqueeze(1) if X.dim() == 4 else lens_mask
    assert torch.all(weights[~masked] == 0), "a masked entry got weight"
    rows = masked.any(-1)
    torch.testing.assert_close(weights.sum(-1)[rows], torch.ones(int(rows.sum())))
    assert torch.all(weights.sum(-1)[~rows] == 0)
    torch.testing.assert_close(weights.double(), reference, rtol=0, atol=1e-6)
    assert keep.sum() <= masked.sum()


# -- gradients -------------------------------------------------------------------------------

@pytest.mark.parametrize("valid_lens", [None, torch.tensor([2, 0]), torch.tensor([[1, 4, 3], [0, 2, 4]])])
def test_gradcheck(valid_lens):
    X = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, True, False, True])
    assert torch.autograd.gradcheck(lambda x: qc.masked_softmax(x, valid_lens, mask=mask), (X,))
    assert torch.autograd.gradgradcheck(lambda x: qc.masked_softmax(x, valid_lens), (X,))


# -- mask builders ---------------------------------------------------------------------------

def test_valid_lens_to_mask():
    mask = qc.valid_lens_to_mask(torch.tensor([0, 2, 4]), 4)
    assert mask.shape == (3, 1, 4) and mask.dtype == torch.bool
    expected = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask[:, 0], expected)
    mask2 = qc.valid_lens_to_mask(torch.tensor([[1, 3], [0, 2]]), 3)
    assert mask2.shape == (2, 2, 3)
    assert torch.equal(mask2, torch.tensor([[[1, 0, 0], [1, 1, 1]], [[0, 0, 0], [1, 1, 0]]],
                                           dtype=torch.bool))


@pytest.mark.parametrize("L,S", [(4, 4), (3, 5), (5, 3), (1, 6)])
def test_causal_mask_matches_sdpa_is_causal(L, S):
    mask = qc.causal_mask(L, S)
    assert mask.shape == (L, S) and mask.dtype == torch.bool
    for i in range(L):
        for j in range(S):
            assert bool(mask[i, j]) == (j <= i)
    q, k, v = torch.randn(2, L, 8), torch.randn(2, S, 8), torch.randn(2, S, 3)
    torch.testing.assert_close(
        torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert torch.equal(qc.causal_mask(L), torch.ones(L, L, dtype=torch.bool).tril())
