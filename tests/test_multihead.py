"""MultiHeadAttention against torch.nn.MultiheadAttention and d2l.MultiHeadAttention."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import qkvcourse as qc

TIGHT = dict(rtol=1e-5, atol=1e-6)
B, N, H = 2, 16, 4


def from_torch(mha: nn.MultiheadAttention, **sizes) -> qc.MultiHeadAttention:
    """Ours with the weights of a ``torch.nn.MultiheadAttention``."""
    bias = mha.in_proj_bias is not None
    ours = qc.MultiHeadAttention(mha.embed_dim, mha.num_heads, bias=bias, **sizes)
    if mha._qkv_same_embed_dim:
        weights = mha.in_proj_weight.chunk(3)
    else:
        weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
    biases = mha.in_proj_bias.chunk(3) if bias else (None,) * 3
    with torch.no_grad():
        for layer, weight, b in zip((ours.W_q, ours.W_k, ours.W_v), weights, biases):
            layer.weight.copy_(weight)
            if bias:
                layer.bias.copy_(b)
        ours.W_o.weight.copy_(mha.out_proj.weight)
        if bias:
            ours.W_o.bias.copy_(mha.out_proj.bias)
    return ours


def torch_mha(bias: bool, kdim=None, vdim=None) -> nn.MultiheadAttention:
    mha = nn.MultiheadAttention(N, H, bias=bias, batch_first=True, kdim=kdim, vdim=vdim).eval()
    if bias:  # PyTorch initialises the biases to 0, which would hide a missing bias
        with torch.no_grad():
            mha.in_proj_bias.normal_()
            mha.out_proj.bias.normal_()
    return mha


@pytest.fixture(params=[True, False], ids=["bias", "no_bias"])
def bias(request):
    return request.param


@pytest.mark.parametrize("backend", ["explicit", "fused", "auto"])
def test_self_attention_matches_torch(bias, backend):
    mha = torch_mha(bias)
    ours = from_torch(mha)
    X = torch.randn(B, 5, N)
    expected, expected_weights = mha(X, X, X, average_attn_weights=False)
    with qc.attention_backend(backend):
        torch.testing.assert_close(ours(X, X, X), expected, **TIGHT)
    ours.need_weights = True
    torch.testing.assert_close(ours(X, X, X), expected, **TIGHT)
    assert ours.attention_weights.shape == (B, H, 5, 5)
    torch.testing.assert_close(ours.attention_weights, expected_weights, **TIGHT)


def test_cross_attention_with_different_lengths_matches_torch(bias):
    mha = torch_mha(bias)
    ours = from_torch(mha, need_weights=True)
    queries, memory = torch.randn(B, 3, N), torch.randn(B, 7, N)
    expected, expected_weights = mha(queries, memory, memory, average_attn_weights=False)
    out = ours(queries, memory, memory)
    assert out.shape == (B, 3, N)
    torch.testing.assert_close(out, expected, **TIGHT)
    torch.testing.assert_close(ours.attention_weights, expected_weights, **TIGHT)


def test_query_key_value_sizes_match_torch_kdim_vdim(bias):
    mha = torch_mha(bias, kdim=6, vdim=10)
    ours = from_torch(mha, key_size=6, value_size=10)
    assert (ours.W_q.in_features, ours.W_k.in_features, ours.W_v.in_features) == (N, 6, 10)
    queries, keys, values = torch.randn(B, 3, N), torch.randn(B, 5, 6), torch.randn(B, 5, 10)
    expected, _ = mha(queries, keys, values)
    torch.testing.assert_close(ours(queries, keys, values), expected, **TIGHT)
    # query_size is the other way round: queries of another width
    mq = qc.MultiHeadAttention(N, H, query_size=3)
    assert mq.W_q.in_features == 3
    assert mq(torch.randn(B, 4, 3), torch.randn(B, 5, N), torch.randn(B, 5, N)).shape == (B, 4, N)


@pytest.mark.parametrize("backend", ["explicit", "fused"])
@pytest.mark.parametrize("lengths", [[7, 3], [1, 7]])
def test_key_padding_mask_equals_valid_lens(bias, backend, lengths):
    mha = torch_mha(bias)
    ours = from_torch(mha)
    queries, memory = torch.randn(B, 4, N), torch.randn(B, 7, N)
    valid_lens = torch.tensor(lengths)
    key_padding_mask = ~qc.valid_lens_to_mask(valid_lens, 7)[:, 0]  # True = ignore, (B, S)
    expected, expected_weights = mha(queries, memory, memory, key_padding_mask=key_padding_mask,
                                     average_attn_weights=False)
    with qc.attention_backend(backend):
        torch.testing.assert_close(ours(queries, memory, memory, valid_lens), expected, **TIGHT)
    ours.need_weights = True
    ours(queries, memory, memory, valid_lens)
    torch.testing.assert_close(ours.attention_weights, expected_weights, **TIGHT)
    assert torch.all(ours.attention_weights[1, :, :, lengths[1]:] == 0)


@pytest.mark.parametrize("backend", ["explicit", "fused"])
@pytest.mark.parametrize("mask_kind", ["2d", "3d"])
def test_attn_mask_matches_torch(bias, backend, mask_kind):
    mha = torch_mha(bias)
    ours = from_torch(mha)
    queries, memory = torch.randn(B, 4, N), torch.randn(B, 6, N)
    if mask_kind == "2d":
        attend = torch.rand(4, 6) > 0.5  # ours: True = attend
    else:
        attend = torch.rand(B, H, 4, 6) > 0.5
    attend[..., 0] = True
    # PyTorch's nn.MultiheadAttention: True = NOT allowed; a 3-D mask is (B*H, L, S)
    torch_mask = ~attend if mask_kind == "2d" else ~attend.reshape(B * H, 4, 6)
    expected, _ = mha(queries, memory, memory, attn_mask=torch_mask)
    with qc.attention_backend(backend):
        torch.testing.assert_close(ours(queries, memory, memory, attn_mask=attend), expected,
                                   **TIGHT)
    # float masks are added to the scores in both
    float_mask = torch.randn(4, 6)
    expected, _ = mha(queries, memory, memory, attn_mask=float_mask)
    with qc.attention_backend(backend):
        torch.testing.assert_close(ours(queries, memory, memory, attn_mask=float_mask), expected,
                                   **TIGHT)


@pytest.mark.parametrize("backend", ["explicit", "fused"])
def test_is_causal_matches_torch(bias, backend):
    mha = torch_mha(bias)
    ours = from_torch(mha)
    X = torch.randn(B, 6, N)
    causal = nn.Transformer.generate_square_subsequent_mask(6)  # float, -inf above the diagonal
    expected, _ = mha(X, X, X, attn_mask=causal, is_causal=True)
    with qc.attention_backend(backend):
        out = ours(X, X, X, is_causal=True)
    torch.testing.assert_close(out, expected, **TIGHT)
    # position 0 does not see the future: changing the last token leaves it alone
    X2 = X.clone()
    X2[:, -1] += 1
    with qc.attention_backend(backend):
        out2 = ours(X2, X2, X2, is_causal=True)
    torch.testing.assert_close(out2[:, :-1], out[:, :-1], **TIGHT)
    assert not torch.allclose(out2[:, -1], out[:, -1], atol=1e-4)


def test_valid_lens_and_is_causal_and_attn_mask_together_match_torch(bias):
    mha = torch_mha(bias)
    ours = from_torch(mha)
    X = torch.randn(B, 5, N)
    valid_lens = torch.tensor([5, 3])
    attend = torch.rand(5, 5) > 0.3
    attend.fill_diagonal_(True)
    disallowed = ~attend | ~qc.causal_mask(5)
    expected, _ = mha(X, X, X, attn_mask=disallowed,
                      key_padding_mask=~qc.valid_lens_to_mask(valid_lens, 5)[:, 0])
    for backend in ("explicit", "fused"):
        with qc.attention_backend(backend):
            out = ours(X, X, X, valid_lens, attn_mask=attend, is_causal=True)
        torch.testing.assert_close(out, expected, **TIGHT)


# -- against d2l -----------------------------------------------------------------------------

def d2l_pair(d2l, queries, keys, values, valid_lens, bias=False, **sizes):
    theirs = d2l.MultiHeadAttention(N, H, 0.0, bias=bias).eval()
    theirs(queries, keys, values, valid_lens)  # materialise the LazyLinear layers
    ours = qc.MultiHeadAttention(N, H, 0.0, bias=bias, need_weights=True, **sizes).eval()
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


@pytest.mark.parametrize("valid_lens", [None, torch.tensor([3, 2]), torch.tensor([[1, 6, 3], [2, 4, 6]])],
                         ids=["none", "1d", "2d"])
@pytest.mark.parametrize("bias_", [False, True], ids=["no_bias", "bias"])
def test_matches_d2l(d2l, valid_lens, bias_):
    queries, keys, values = torch.randn(B, 3, 5), torch.randn(B, 6, 7), torch.randn(B, 6, 9)
    theirs, ours = d2l_pair(d2l, queries, keys, values, valid_lens, bias=bias_,
                            query_size=5, key_size=7, value_size=9)
    expected = theirs(queries, keys, values, valid_lens)
    out = ours(queries, keys, values, valid_lens)
    torch.testing.assert_close(out, expected, **TIGHT)
    assert ours.attention_weights.shape == (B, H, 3, 6)
    # d2l keeps (B*H, L, S), heads folded into the batch, batch-major
    torch.testing.assert_close(ours.attention_weights.reshape(B * H, 3, 6),
                               theirs.attention.attention_weights, **TIGHT)
    with qc.attention_backend("fused"):
        torch.testing.assert_close(ours(queries, keys, values, valid_lens, need_weights=False),
                                   expected, **TIGHT)


def test_transpose_functions_match_d2l(d2l):
    theirs = d2l.MultiHeadAttention(N, H, 0.0)
    X = torch.randn(B, 5, N)
    folded = qc.transpose_qkv(X, H)
    assert folded.shape == (B * H, 5, N // H)
    torch.testing.assert_close(folded, theirs.transpose_qkv(X), rtol=0, atol=0)
    Y = torch.randn(B * H, 5, N // H)
    torch.testing.assert_close(qc.transpose_output(Y, H), theirs.transpose_output(Y),
                               rtol=0, atol=0)
    torch.testing.assert_close(qc.transpose_output(folded, H), X, rtol=0, atol=0)
    torch.testing.assert_close(qc.transpose_qkv(qc.transpose_output(Y, H), H), Y, rtol=0, atol=0)
    # row b*H + h is head h of batch row b: the feature block h*D:(h+1)*D
    D = N // H
    for b in range(B):
        for h in range(H):
            torch.testing.assert_close(folded[b * H + h], X[b, :, h * D:(h + 1) * D],
                                       rtol=0, atol=0)


def test_split_and_merge_heads_are_inverse():
    X = torch.randn(B, 5, N)
    heads = qc.split_heads(X, H)
    assert heads.shape == (B, H, 5, N // H)
    torch.testing.assert_close(qc.merge_heads(heads), X, rtol=0, atol=0)
    Y = torch.randn(B, H, 5, N // H)
    torch.testing.assert_close(qc.split_heads(qc.merge_heads(Y), H), Y, rtol=0, atol=0)
    torch.testing.assert_close(heads.reshape(B * H, 5, N // H), qc.transpose_qkv(X, H),
                               rtol=0, atol=0)
    # a time-major tensor seen batch-first (non-contiguous) splits the same way
    T = torch.randn(5, B, N)
    torch.testing.assert_close(qc.split_heads(T.transpose(0, 1), H),
                               qc.split_heads(T.transpose(0, 1).contiguous(), H), rtol=0, atol=0)


# -- paths, sizes, gradients -----------------------------------------------------------------

@pytest.mark.parametrize("valid_lens", [None, torch.tensor([4, 0]), torch.tensor([[1, 4, 2], [3, 0, 4]])],
                         ids=["none", "1d", "2d"])
def test_fused_and_explicit_paths_agree(valid_lens):
    ours = qc.MultiHeadAttention(N, H, bias=True)
    queries, kv = torch.randn(B, 3, N), torch.randn(B, 4, N)
    with qc.attention_backend("explicit"):
        explicit = ours(queries, kv, kv, valid_lens, is_causal=True)
    with qc.attention_backend("fused"):
        fused = ours(queries, kv, kv, valid_lens, is_causal=True)
    torch.testing.assert_close(fused, explicit, **TIGHT)
    auto_weights = ours(queries, kv, kv, valid_lens, is_causal=True, need_weights=True)
    torch.testing.assert_close(auto_weights, explicit, rtol=0, atol=0)
    assert ours.attention_weights.shape == (B, H, 3, 4)
    ours(queries, kv, kv, valid_lens)  # no weights asked: none kept
    assert ours.attention_weights is None


def test_fully_masked_query_gives_the_output_bias():
    ours = qc.MultiHeadAttention(N, H, bias=True)
    queries, kv = torch.randn(B, 3, N), torch.randn(B, 4, N)
    for backend in ("explicit", "fused"):
        with qc.attention_backend(backend):
            out = ours(queries, kv, kv, torch.tensor([0, 4]))
        torch.testing.assert_close(out[0], ours.W_o.bias.expand(3, N).detach(), rtol=0, atol=0)


def test_num_heads_and_sizes():
    ours = qc.MultiHeadAttention(24, 6, query_size=5, key_size=7, value_size=9, bias=True)
    assert (ours.W_q.in_features, ours.W_k.in_features, ours.W_v.in_features) == (5, 7, 9)
    assert all(layer.out_features == 24 for layer in (ours.W_q, ours.W_k, ours.W_v, ours.W_o))
    assert qc.num_parameters(ours) == (5 + 7 + 9 + 24) * 24 + 4 * 24
    assert qc.num_parameters(qc.MultiHeadAttention(24, 6)) == 4 * 24 * 24


@pytest.mark.parametrize("backend", ["explicit", "fused"])
def test_gradcheck_small_module(backend):
    ours = qc.MultiHeadAttention(4, 2, bias=True).double()
    queries = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    kv = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    valid_lens = torch.tensor([[5, 2, 0], [1, 3, 4]])
    with qc.attention_backend(backend):
        assert torch.autograd.gradcheck(lambda q, kv: ours(q, kv, kv, valid_lens), (queries, kv))
        params = dict(ours.named_parameters())
        names = list(params)

        def by_parameters(*values):
            return torch.func.functional_call(ours, dict(zip(names, values)),
                                              (queries.detach(), kv.detach(), kv.detach()),
                                              {"is_causal": True})

        assert torch.autograd.gradcheck(by_parameters, tuple(params.values()))


def test_dropout_only_in_training():
    ours = qc.MultiHeadAttention(N, H, dropout=0.5)
    X = torch.randn(B, 6, N)
    ours.train()
    assert not torch.allclose(ours(X, X, X), ours(X, X, X), atol=1e-4)
    ours.eval()
    torch.testing.assert_close(ours(X, X, X), ours(X, X, X), rtol=0, atol=0)


def test_one_stored_qkv_weight_with_views_and_d2l_state_dict_keys():
    """Issue 11: self-attention keeps one (3N, E) weight; W_q, W_k, W_v are views of it; the
    state dict keeps d2l's keys and order; no weight is concatenated per call."""
    torch.manual_seed(0)
    mha = qc.MultiHeadAttention(16, 4, bias=True)
    names = [n for n, _ in mha.named_parameters()]
    assert names == ["in_proj.weight", "in_proj.bias", "W_o.weight", "W_o.bias"]
    fused = mha.in_proj.weight
    for i, layer in enumerate((mha.W_q, mha.W_k, mha.W_v)):
        assert layer.weight._base is fused and torch.equal(layer.weight, fused[16 * i:16 * (i + 1)])
    assert list(mha.state_dict()) == ["W_q.weight", "W_q.bias", "W_k.weight", "W_k.bias",
                                      "W_v.weight", "W_v.bias", "W_o.weight", "W_o.bias"]
    other = qc.MultiHeadAttention(16, 4, bias=True)
    other.load_state_dict(mha.state_dict())
    x = torch.randn(2, 5, 16)
    assert torch.equal(other(x, x, x), mha(x, x, x))
    with torch.no_grad():  # writing through a view writes the stored weight
        other.W_k.weight.zero_()
    assert other.in_proj.weight[16:32].abs().sum() == 0
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        mha(x, x, x)
    assert not [e for e in prof.events() if e.name == "aten::cat"], "a per-call concatenation"


def test_cross_attention_with_other_sizes_keeps_separate_projections():
    mha = qc.MultiHeadAttention(16, 4, key_size=8, value_size=8)
    assert mha.in_proj is None and isinstance(mha.W_q, torch.nn.Linear)


def test_gradient_clipping_sums_the_norm_in_d2l_layer_order():
    """The stored [W_q; W_k; W_v] must not change training: the clipping norm is summed over
    its thirds in the order separate layers had, bit for bit."""
    from qkvcourse.multihead import clip_gradients, gradients_in_d2l_order

    torch.manual_seed(0)
    model = qc.GPT(qc.GPTConfig(vocab_size=11, max_len=8, num_layers=2, num_heads=2, d_model=8))
    idx = torch.randint(0, 11, (3, 8))
    model(idx, idx)[1].backward()
    grads = gradients_in_d2l_order(model)
    mha = model.blks[0].attention.mha
    N = mha.num_hiddens
    separate = [mha.in_proj.weight.grad[:N], mha.in_proj.bias.grad[:N],
                mha.in_proj.weight.grad[N:2 * N], mha.in_proj.bias.grad[N:2 * N]]
    position = next(i for i, g in enumerate(grads) if g.data_ptr() == separate[0].data_ptr())
    assert all(torch.equal(a, b) for a, b in zip(grads[position:position + 4], separate))
    assert len(grads) == len(list(model.parameters())) + 4 * len(model.blks)  # 2 stored -> 6
    from qkvcourse.multihead import gradient_plan

    kept = gradients_in_d2l_order(model, gradient_plan(model))  # the trainer keeps the plan
    assert len(kept) == len(grads) and all(a.data_ptr() == b.data_ptr() and torch.equal(a, b)
                                           for a, b in zip(kept, grads))
    expected = torch.nn.utils.get_total_norm([g.clone() for g in grads])
    total = clip_gradients(model, max_norm=1e-3)
    assert torch.equal(total, expected)
    clipped = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert abs(clipped.item() - 1e-3) < 1e-6
