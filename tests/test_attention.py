"""scaled_dot_product_attention, attention_reference, DotProductAttention and
AdditiveAttention against PyTorch's SDPA, d2l, and softmax computed here."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

import qkvcourse as qc

BACKENDS = ["explicit", "fused", "auto"]
TIGHT = dict(rtol=1e-5, atol=1e-6)


def attend_somewhere(mask: torch.Tensor) -> torch.Tensor:
    """Let every query attend to key 0, so PyTorch's reference has no fully masked row."""
    mask = mask.clone()
    mask[..., 0] = True
    return mask


def test_backends_really_choose_the_path(monkeypatch):
    """The backend switch must reach the decision (else every parity test is vacuous)."""
    from qkvcourse import attention as module
    calls = []
    real_reference, real_sdpa = module.attention_reference, F.scaled_dot_product_attention

    def spy_reference(*args, **kwargs):
        calls.append("explicit")
        return real_reference(*args, **kwargs)

    def spy_sdpa(*args, **kwargs):
        calls.append("fused")
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(module, "attention_reference", spy_reference)
    monkeypatch.setattr(module.F, "scaled_dot_product_attention", spy_sdpa)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    with qc.attention_backend("explicit"):
        qc.scaled_dot_product_attention(q, k, v)
    with qc.attention_backend("fused"):
        qc.scaled_dot_product_attention(q, k, v)
    qc.scaled_dot_product_attention(q, k, v)  # auto, no weights: fused
    qc.scaled_dot_product_attention(q, k, v, need_weights=True)  # auto, weights: explicit
    qc.MultiHeadAttention(8, 2, key_size=4, value_size=4, query_size=4)(q, k, v)
    qc.MultiHeadAttention(8, 2, query_size=4, key_size=4, value_size=4,
                          need_weights=True)(q, k, v)
    assert calls == ["explicit", "fused", "fused", "explicit", "fused", "explicit"]


def test_unknown_backend_is_rejected_and_backend_is_restored():
    with pytest.raises(ValueError, match="backend must be one of"):
        with qc.attention_backend("flash"):
            pass
    with pytest.raises(KeyError):
        with qc.attention_backend("explicit"):
            raise KeyError("boom")
    assert qc.use_fused_path(need_weights=False)  # back to "auto"


# -- parity with torch.nn.functional.scaled_dot_product_attention ---------------------------

SHAPES = [  # (batch dims, L, S, E, Ev)
    ((2,), 3, 5, 4, 4),
    ((2,), 5, 3, 4, 6),  # Ev != E, more queries than keys
    ((2, 3), 4, 4, 8, 8),
    ((2, 3), 2, 7, 6, 3),
    ((), 3, 4, 5, 2),  # 2-D inputs
]


def make_qkv(batch, L, S, E, Ev, dtype=torch.float32):
    return (torch.randn(*batch, L, E, dtype=dtype), torch.randn(*batch, S, E, dtype=dtype),
            torch.randn(*batch, S, Ev, dtype=dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_no_mask_matches_torch(backend, shape):
    q, k, v = make_qkv(*shape)
    with qc.attention_backend(backend):
        ours = qc.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v), **TIGHT)
    assert ours.shape == (*shape[0], shape[1], shape[4])


def mask_shapes(batch, L, S):
    """Shapes broadcastable to (*batch, L, S)."""
    shapes = [(*batch, L, S), (L, S), (S,), (1, S), (L, 1)]
    if batch:
        shapes += [(batch[0],) + (1,) * (len(batch) - 1) + (L, S), (*batch, 1, S)]
    if len(batch) == 2:
        shapes += [(batch[0], 1, 1, S), (1, batch[1], L, S)]
    return shapes


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_boolean_masks_match_torch(backend, shape):
    batch, L, S, E, Ev = shape
    q, k, v = make_qkv(*shape)
    for mask_shape in mask_shapes(batch, L, S):
        mask = torch.rand(mask_shape) > 0.5
        if mask_shape[-1] == S:
            mask = attend_somewhere(mask)
        else:
            mask = torch.ones(mask_shape, dtype=torch.bool)
        with qc.attention_backend(backend):
            ours = qc.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        # PyTorch's own fused kernel rejects a 1-D mask for 4-D inputs: give it (1, S)
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.reshape(-1, S)
                                                if mask.dim() == 1 else mask)
        torch.testing.assert_close(ours, theirs, **TIGHT, msg=f"mask shape {mask_shape}")
        # the mask changes the result (unless it is all True)
        if not mask.all():
            assert not torch.allclose(ours, F.scaled_dot_product_attention(q, k, v), atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_float_masks_match_torch(backend, shape):
    batch, L, S, E, Ev = shape
    q, k, v = make_qkv(*shape)
    for mask_shape in [(*batch, L, S), (L, S), (S,)]:
        mask = torch.randn(mask_shape)
        mask = mask.masked_fill(~attend_somewhere(torch.rand(mask_shape) > 0.4), float("-inf"))
        with qc.attention_backend(backend):
            ours = qc.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.reshape(-1, S)
                                                if mask.dim() == 1 else mask)
        torch.testing.assert_close(ours, theirs, **TIGHT, msg=f"mask shape {mask_shape}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L,S", [(5, 5), (3, 6), (6, 3), (1, 4)])
@pytest.mark.parametrize("batch", [(2,), (2, 3)], ids=str)
def test_is_causal_matches_torch(backend, L, S, batch):
    q, k, v = make_qkv(batch, L, S, 8, 5)
    with qc.attention_backend(backend):
        ours = qc.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               **TIGHT)
    # query 0 sees key 0 only: its output is value 0
    torch.testing.assert_close(ours[..., 0, :], v[..., 0, :], **TIGHT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_is_causal_combined_with_masks(backend):
    q, k, v = make_qkv((2, 2), 4, 4, 8, 8)
    causal = qc.causal_mask(4, 4)
    bool_mask = torch.rand(2, 1, 4, 4) > 0.3
    bool_mask[..., 0] = True
    float_mask = torch.randn(4, 4)
    with qc.attention_backend(backend):
        ours_bool = qc.scaled_dot_product_attention(q, k, v, attn_mask=bool_mask, is_causal=True)
        ours_float = qc.scaled_dot_product_attention(q, k, v, attn_mask=float_mask, is_causal=True)
    torch.testing.assert_close(
        ours_bool, F.scaled_dot_product_attention(q, k, v, attn_mask=bool_mask & causal), **TIGHT)
    torch.testing.assert_close(
        ours_float, F.scaled_dot_product_attention(
            q, k, v, attn_mask=float_mask.masked_fill(~causal, float("-inf"))), **TIGHT)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [0.05, 1.0, 3.0])
def test_custom_scale_matches_torch(backend, scale):
    q, k, v = make_qkv((2, 2), 3, 4, 6, 5)
    mask = attend_somewhere(torch.rand(3, 4) > 0.5)
    with qc.attention_backend(backend):
        ours = qc.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    torch.testing.assert_close(
        ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale), **TIGHT)
    default = qc.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert not torch.allclose(ours, default, atol=1e-4)
    with qc.attention_backend(backend):
        explicit_default = qc.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                           scale=1 / math.sqrt(6))
    torch.testing.assert_close(explicit_default, default, **TIGHT)


# -- weights ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["explicit", "auto"])
def test_need_weights_returns_the_softmax_of_the_scores(backend):
    q, k, v = make_qkv((2, 3), 4, 5, 6, 7)
    mask = attend_somewhere(torch.rand(2, 1, 4, 5) > 0.5)
    with qc.attention_backend(backend):
        out, weights = qc.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3,
                                                       need_weights=True)
    scores = (q @ k.transpose(-1, -2)) * 0.3
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    assert weights.shape == (2, 3, 4, 5)
    torch.testing.assert_close(weights, expected, **TIGHT)
    torch.testing.assert_close(out, expected @ v, **TIGHT)
    assert torch.all(weights.masked_select(~mask.expand_as(weights)) == 0)


def test_need_weights_with_float_mask_and_causal():
    q, k, v = make_qkv((2,), 4, 4, 6, 3)
    float_mask = torch.randn(4, 4)
    _, weights = qc.scaled_dot_product_attention(q, k, v, attn_mask=float_mask, is_causal=True,
                                                 need_weights=True)
    scores = q @ k.transpose(-1, -2) / math.sqrt(6) + float_mask
    expected = torch.softmax(scores.masked_fill(~qc.causal_mask(4), float("-inf")), dim=-1)
    torch.testing.assert_close(weights, expected, **TIGHT)


def test_fused_backend_refuses_to_return_weights():
    q, k, v = make_qkv((2,), 3, 3, 4, 4)
    with qc.attention_backend("fused"):
        with pytest.raises(RuntimeError, match="fused"):
            qc.scaled_dot_product_attention(q, k, v, need_weights=True)
        with pytest.raises(RuntimeError, match="fused"):
            qc.DotProductAttention()(q, k, v)  # need_weights=True by default, as in d2l


def test_attention_reference_returns_weights_before_dropout():
    q, k, v = make_qkv((2,), 3, 6, 4, 4)
    out, weights = qc.attention_reference(q, k, v)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)
    torch.testing.assert_close(weights, expected, **TIGHT)
    torch.testing.assert_close(out, expected @ v, **TIGHT)


# -- dropout ---------------------------------------------------------------------------------

def test_dropout_in_the_explicit_path_zeroes_weights():
    q, k, v = make_qkv((2,), 8, 16, 4, 5)
    clean = qc.scaled_dot_product_attention(q, k, v)
    torch.manual_seed(123)
    with qc.attention_backend("explicit"):
        out, weights = qc.scaled_dot_product_attention(q, k, v, dropout_p=0.5, need_weights=True)
    assert not torch.allclose(out, clean, atol=1e-3)
    torch.manual_seed(123)
    dropped = F.dropout(weights, 0.5)  # the same draw as inside the call
    assert (dropped == 0).sum() > 0.3 * dropped.numel()
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], weights[kept] * 2)
    torch.testing.assert_close(out, dropped @ v, **TIGHT)
    # the returned weights are those before dropout
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 8))


def test_dropout_in_the_fused_path_changes_the_output():
    q, k, v = make_qkv((2,), 8, 16, 4, 5)
    with qc.attention_backend("fused"):
        a = qc.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
        b = qc.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    clean = qc.scaled_dot_product_attention(q, k, v)
    assert not torch.allclose(a, clean, atol=1e-3) and not torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize("need_weights", [True, False])
def test_modules_in_eval_mode_are_deterministic(need_weights):
    q, k, v = make_qkv((2,), 6, 7, 4, 5)
    attention = qc.DotProductAttention(dropout=0.5, need_weights=need_weights)
    additive = qc.AdditiveAttention(8, dropout=0.5, query_size=4, key_size=4)
    reference = qc.DotProductAttention(dropout=0.0, need_weights=need_weights)(q, k, v)
    attention.train()
    a, b = attention(q, k, v), attention(q, k, v)
    assert not torch.allclose(a, b, atol=1e-3)  # dropout is active in training
    c, d = additive(q, k, v), additive(q, k, v)
    assert not torch.allclose(c, d, atol=1e-3)
    attention.eval()
    additive.eval()
    torch.testing.assert_close(attention(q, k, v), reference, rtol=0, atol=0)
    torch.testing.assert_close(attention(q, k, v), attention(q, k, v), rtol=0, atol=0)
    torch.testing.assert_close(additive(q, k, v), additive(q, k, v), rtol=0, atol=0)
    torch.testing.assert_close(additive(q, k, v), additive.attention_weights @ v, **TIGHT)


# -- gradients -------------------------------------------------------------------------------

def test_gradcheck_attention_reference():
    q, k, v = (t.requires_grad_() for t in make_qkv((2,), 3, 4, 5, 2, dtype=torch.float64))
    bool_mask = attend_somewhere(torch.rand(3, 4) > 0.5)
    float_mask = torch.randn(2, 3, 4, dtype=torch.float64)
    for mask in (None, bool_mask, float_mask):
        assert torch.autograd.gradcheck(
            lambda q, k, v: qc.attention_reference(q, k, v, mask, scale=0.7), (q, k, v))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_module_paths(backend):
    q, k, v = (t.requires_grad_() for t in make_qkv((2, 2), 3, 4, 5, 2, dtype=torch.float64))
    valid_lens = torch.tensor([[1, 4, 0], [2, 3, 4]])  # includes a fully masked query
    attention = qc.DotProductAttention(need_weights=False)
    with qc.attention_backend(backend):
        assert torch.autograd.gradcheck(lambda q, k, v: attention(q, k, v, valid_lens), (q, k, v))
        assert torch.autograd.gradcheck(
            lambda q, k, v: qc.scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v))


@pytest.mark.parametrize("backend", ["explicit", "fused"])
@pytest.mark.parametrize("mask_kind", ["bool", "float", "valid_lens"])
def test_fully_masked_rows_give_zero_outputs_and_finite_grads(backend, mask_kind):
    q, k, v = (t.requires_grad_() for t in make_qkv((2,), 3, 4, 5, 6))
    keep = torch.ones(2, 3, 4, dtype=torch.bool)
    keep[0, 1] = False
    keep[1] = False
    with qc.attention_backend(backend):
        if mask_kind == "bool":
            out = qc.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        elif mask_kind == "float":
            float_mask = torch.zeros(2, 3, 4).masked_fill(~keep, float("-inf"))
            out = qc.scaled_dot_product_attention(q, k, v, attn_mask=float_mask)
        else:
            keep = torch.ones(2, 3, 4, dtype=torch.bool)
            keep[0, 1] = False
            keep[1] = False
            out = qc.DotProductAttention(need_weights=False)(
                q, k, v, valid_lens=torch.tensor([[4, 0, 4], [0, 0, 0]]))
    assert torch.isfinite(out).all()
    assert torch.all(out[0, 1] == 0) and torch.all(out[1] == 0)
    expected = F.scaled_dot_product_attention(q[:1, [0, 2]], k[:1], v[:1])
    torch.testing.assert_close(out[:1, [0, 2]], expected, **TIGHT)
    (out * torch.randn_like(out)).sum().backward()
    for name, t in (("q", q), ("k", k), ("v", v)):
        assert torch.isfinite(t.grad).all(), name
    assert torch.all(q.grad[0, 1] == 0) and torch.all(q.grad[1] == 0)
    assert torch.all(v.grad[1] == 0) and q.grad[0, 0].abs().sum() > 0


def test_explicit_and_fused_agree_on_gradients():
    q, k, v = make_qkv((2, 2), 5, 6, 8, 4)
    mask = attend_somewhere(torch.rand(2, 1, 5, 6) > 0.5)
    mask[0, 0, 2] = False  # one fully masked query
    grads = {}
    for backend in ("explicit", "fused"):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        with qc.attention_backend(backend):
            out = qc.scaled_dot_product_attention(*leaves, attn_mask=mask)
        out.pow(2).sum().backward()
        grads[backend] = (out.detach(), *(t.grad for t in leaves))
    for a, b in zip(grads["explicit"], grads["fused"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# -- DotProductAttention and AdditiveAttention against d2l ----------------------------------

VALID_LENS = [None, torch.tensor([2, 6]), torch.tensor([[1, 3, 6, 2], [5, 1, 2, 6]])]


@pytest.mark.parametrize("valid_lens", VALID_LENS, ids=["none", "1d", "2d"])
def test_dot_product_attention_matches_d2l(d2l, valid_lens):
    queries, keys, values = torch.randn(2, 4, 5), torch.randn(2, 6, 5), torch.randn(2, 6, 3)
    theirs = d2l.DotProductAttention(dropout=0.0).eval()
    expected = theirs(queries, keys, values, valid_lens)
    ours = qc.DotProductAttention(dropout=0.0).eval()
    torch.testing.assert_close(ours(queries, keys, values, valid_lens), expected, **TIGHT)
    torch.testing.assert_close(ours.attention_weights, theirs.attention_weights, **TIGHT)
    with qc.attention_backend("fused"):
        fused = qc.DotProductAttention(need_weights=False)
        torch.testing.assert_close(fused(queries, keys, values, valid_lens), expected, **TIGHT)
        assert fused.attention_weights is None


@pytest.mark.parametrize("valid_lens", [torch.tensor([2, 6]), torch.tensor([[1, 3, 6, 2], [5, 1, 2, 6]])])
def test_dot_product_attention_4d_equals_d2l_with_heads_folded(d2l, valid_lens):
    H = 3
    queries, keys, values = torch.randn(2, H, 4, 5), torch.randn(2, H, 6, 5), torch.randn(2, H, 6, 3)
    ours = qc.DotProductAttention()
    out = ours(queries, keys, values, valid_lens)
    theirs = d2l.DotProductAttention(0.0)
    expected = theirs(queries.reshape(6, 4, 5), keys.reshape(6, 6, 5), values.reshape(6, 6, 3),
                      torch.repeat_interleave(valid_lens, H, dim=0))
    torch.testing.assert_close(out.reshape(6, 4, 3), expected, **TIGHT)
    torch.testing.assert_close(ours.attention_weights.reshape(6, 4, 6), theirs.attention_weights,
                               **TIGHT)


def copy_additive_weights(ours, theirs):
    with torch.no_grad():
        ours.W_q.weight.copy_(theirs.W_q.weight)
        ours.W_k.weight.copy_(theirs.W_k.weight)
        ours.w_v.weight.copy_(theirs.w_v.weight)


@pytest.mark.parametrize("valid_lens", VALID_LENS[1:], ids=["1d", "2d"])
def test_additive_attention_matches_d2l(d2l, valid_lens):
    queries, keys, values = torch.randn(2, 4, 20), torch.randn(2, 6, 2), torch.randn(2, 6, 3)
    theirs = d2l.AdditiveAttention(num_hiddens=8, dropout=0.0).eval()
    theirs(queries, keys, values, valid_lens)  # materialise the LazyLinear weights
    expected = theirs(queries, keys, values, valid_lens)

    ours = qc.AdditiveAttention(num_hiddens=8, dropout=0.0, query_size=20, key_size=2).eval()
    assert not any(isinstance(m, torch.nn.modules.lazy.LazyModuleMixin) for m in ours.modules())
    copy_additive_weights(ours, theirs)
    torch.testing.assert_close(ours(queries, keys, values, valid_lens), expected, **TIGHT)
    torch.testing.assert_close(ours.attention_weights, theirs.attention_weights, **TIGHT)
    assert ours.attention_weights.shape == (2, 4, 6)

    lazy = qc.AdditiveAttention(num_hiddens=8, dropout=0.0).eval()
    lazy(queries, keys, values, valid_lens)  # materialise
    lazy.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(lazy(queries, keys, values, valid_lens), expected, **TIGHT)
    torch.testing.assert_close(lazy.attention_weights, theirs.attention_weights, **TIGHT)


def test_additive_attention_without_valid_lens_and_with_zero_length():
    queries, keys, values = torch.randn(2, 3, 4), torch.randn(2, 5, 6), torch.randn(2, 5, 2)
    attention = qc.AdditiveAttention(7, query_size=4, key_size=6)
    out = attention(queries, keys, values)
    scores = attention.w_v(torch.tanh(attention.W_q(queries)[:, :, None]
                                      + attention.W_k(keys)[:, None])).squeeze(-1)
    torch.testing.assert_close(attention.attention_weights, torch.softmax(scores, -1), **TIGHT)
    torch.testing.assert_close(out, torch.softmax(scores, -1) @ values, **TIGHT)
    out = attention(queries, keys, values, torch.tensor([0, 5]))
    assert torch.all(out[0] == 0) and torch.isfinite(out).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("valid_lens", [torch.tensor([2, 6]), torch.tensor([[1, 3, 6, 2], [5, 1, 2, 6]])],
                         ids=["1d", "2d"])
def test_valid_lens_combined_with_attn_mask(backend, valid_lens):
    queries, keys, values = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 6, 5), torch.randn(2, 3, 6, 2)
    lens_mask = qc.valid_lens_to_mask(valid_lens, 6)[:, None]  # (B, 1, 1|L, S)
    float_mask = torch.randn(4, 6)
    bool_mask = attend_somewhere(torch.rand(3, 4, 6) > 0.4)
    attention = qc.DotProductAttention(need_weights=False)
    with qc.attention_backend(backend):
        out_float = attention(queries, keys, values, valid_lens, attn_mask=float_mask)
        out_bool = attention(queries, keys, values, valid_lens, attn_mask=bool_mask)
    torch.testing.assert_close(out_float, F.scaled_dot_product_attention(
        queries, keys, values, attn_mask=float_mask.masked_fill(~lens_mask, float("-inf"))), **TIGHT)
    torch.testing.assert_close(out_bool, F.scaled_dot_product_attention(
        queries, keys, values, attn_mask=bool_mask & lens_mask), **TIGHT)


def test_causal_only_fast_path_matches_explicit_and_torch():
    """is_causal with no other mask goes straight to PyTorch's flag; same numbers."""
    torch.manual_seed(3)
    for L, S in ((5, 5), (3, 6), (6, 3)):
        q, k, v = torch.randn(2, 2, L, 8), torch.randn(2, 2, S, 8), torch.randn(2, 2, S, 4)
        with qc.attention_backend("explicit"):
            explicit = qc.scaled_dot_product_attention(q, k, v, is_causal=True)
        fused = qc.scaled_dot_product_attention(q, k, v, is_causal=True)
        reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        torch.testing.assert_close(fused, reference, rtol=0, atol=0)
        torch.testing.assert_close(explicit, reference, rtol=1e-5, atol=1e-6)
