"""Sinusoidal, learned and rotary positions against d2l and independent references."""
from __future__ import annotations

import math

import pytest
import torch

import qkvcourse as qc


@pytest.mark.parametrize("num_hiddens,max_len", [(32, 1000), (20, 60), (2, 10), (128, 1000)])
def test_positional_encoding_matches_d2l(d2l, num_hiddens, max_len):
    ours = qc.PositionalEncoding(num_hiddens, dropout=0.0, max_len=max_len).eval()
    theirs = d2l.PositionalEncoding(num_hiddens, dropout=0.0, max_len=max_len).eval()
    X = torch.randn(2, max_len, num_hiddens)
    torch.testing.assert_close(ours(X), theirs(X), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.P, theirs.P, rtol=0, atol=1e-6)
    short = X[:, :7]
    torch.testing.assert_close(ours(short), theirs(short), rtol=0, atol=1e-6)


def test_sinusoidal_table_against_float64_formula():
    table = qc.sinusoidal_table(200, 16)
    i = torch.arange(200, dtype=torch.float64)[:, None]
    j = torch.arange(8, dtype=torch.float64)
    angles = i / 10000 ** (2 * j / 16)
    assert table.shape == (200, 16) and table.dtype == torch.float32
    torch.testing.assert_close(table[:, 0::2].double(), angles.sin(), rtol=0, atol=2e-5)
    torch.testing.assert_close(table[:, 1::2].double(), angles.cos(), rtol=0, atol=2e-5)
    # the relative-position property: P[i+k] is a fixed rotation of P[i] per frequency
    k = 5
    for jj in range(8):
        w = 1 / 10000 ** (2 * jj / 16)
        rotation = torch.tensor([[math.cos(k * w), -math.sin(k * w)],
                                 [math.sin(k * w), math.cos(k * w)]])
        pairs = table[:, 2 * jj:2 * jj + 2]  # (sin, cos) rows
        torch.testing.assert_close(pairs[:-k] @ rotation, pairs[k:], rtol=0, atol=1e-4)


def test_positional_encoding_adds_the_table_and_applies_dropout():
    encoding = qc.PositionalEncoding(8, dropout=0.5, max_len=20)
    X = torch.zeros(3, 10, 8)
    encoding.eval()
    torch.testing.assert_close(encoding(X), encoding.P[:, :10].expand(3, 10, 8), rtol=0, atol=0)
    encoding.train()
    dropped = encoding(X)
    zeros = dropped == 0
    assert zeros.float().mean() > 0.3
    torch.testing.assert_close(dropped[~zeros], 2 * encoding.P[:, :10].expand(3, 10, 8)[~zeros])


def test_positional_encoding_buffer_moves_with_to_and_is_not_saved():
    encoding = qc.PositionalEncoding(8, max_len=20)
    assert "P" in dict(encoding.named_buffers()) and "P" not in encoding.state_dict()
    assert qc.num_parameters(encoding) == 0
    moved = encoding.to(torch.float64)
    assert moved.P.dtype == torch.float64
    for device in qc.available_devices():
        on_device = qc.PositionalEncoding(8, max_len=20).to(device)
        assert on_device.P.device.type == device.type
        out = on_device(torch.zeros(2, 4, 8, device=device))
        assert out.device.type == device.type
    # the output keeps the input's dtype
    assert qc.PositionalEncoding(8)(torch.zeros(1, 3, 8, dtype=torch.float64)).dtype == torch.float64


def test_learned_positional_encoding_shapes_and_gradients():
    encoding = qc.LearnedPositionalEncoding(6, max_len=10)
    assert encoding.P.shape == (1, 10, 6) and encoding.P.requires_grad
    assert qc.num_parameters(encoding) == 60
    X = torch.randn(3, 4, 6)
    out = encoding(X)
    assert out.shape == (3, 4, 6)
    torch.testing.assert_close(out, X + encoding.P[:, :4], rtol=0, atol=0)
    out.pow(2).sum().backward()
    grad = encoding.P.grad
    torch.testing.assert_close(grad[0, :4], (2 * out).sum(0), rtol=1e-5, atol=1e-6)
    assert torch.all(grad[0, 4:] == 0)  # positions not used get no gradient
    assert "P" in encoding.state_dict()


# -- rotary ----------------------------------------------------------------------------------

def rope_reference(x: torch.Tensor, offset: int = 0, base: float = 10000.0) -> torch.Tensor:
    """Pairs (x[2j], x[2j+1]) as complex numbers, times exp(i m θ_j), in float64."""
    *_, T, D = x.shape
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], D // 2, 2).contiguous())
    m = torch.arange(offset, offset + T, dtype=torch.float64)[:, None]  # (T, 1)
    theta = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # (D/2,)
    rotated = z * torch.polar(torch.ones_like(m * theta), m * theta)
    return torch.view_as_real(rotated).reshape(x.shape)


@pytest.mark.parametrize("shape", [(7, 8), (2, 5, 16), (2, 3, 6, 4)], ids=str)
@pytest.mark.parametrize("offset", [0, 3, 100])
def test_rotary_matches_complex_reference(shape, offset):
    rope = qc.RotaryEmbedding(shape[-1])
    x = torch.randn(shape)
    out = rope(x, offset=offset)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out.double(), rope_reference(x, offset), rtol=0, atol=1e-5)


def test_rotary_base_and_first_position():
    x = torch.randn(2, 4, 8)
    rope = qc.RotaryEmbedding(8, base=100.0)
    torch.testing.assert_close(rope(x).double(), rope_reference(x, base=100.0), rtol=0, atol=1e-5)
    torch.testing.assert_close(rope(x)[:, 0], x[:, 0], rtol=0, atol=0)  # position 0: no rotation
    assert not torch.allclose(rope(x), qc.RotaryEmbedding(8)(x), atol=1e-3)


def test_rotary_offset_rotates_at_the_true_position():
    rope = qc.RotaryEmbedding(8)
    x = torch.randn(2, 10, 8)
    full = rope(x)
    torch.testing.assert_close(rope(x[:, 6:], offset=6), full[:, 6:], rtol=0, atol=1e-6)
    torch.testing.assert_close(rope(x[:, 9:10], offset=9), full[:, 9:10], rtol=0, atol=1e-6)
    assert not torch.allclose(rope(x[:, 6:]), full[:, 6:], atol=1e-3)


def test_rotary_preserves_norms():
    rope = qc.RotaryEmbedding(16)
    x = torch.randn(3, 50, 16)
    torch.testing.assert_close(rope(x, offset=17).norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)
    # and each pair's norm separately: it is a rotation per pair
    pairs = rope(x).reshape(3, 50, 8, 2).norm(dim=-1)
    torch.testing.assert_close(pairs, x.reshape(3, 50, 8, 2).norm(dim=-1), rtol=1e-5, atol=1e-5)


def test_rotary_scores_depend_only_on_relative_position():
    D = 16
    rope = qc.RotaryEmbedding(D)
    q, k = torch.randn(D, dtype=torch.float64), torch.randn(D, dtype=torch.float64)

    def score(m, n):
        rq = rope(q.float()[None], offset=m)[0].double()
        rk = rope(k.float()[None], offset=n)[0].double()
        return float(rq @ rk)

    for m, n in [(0, 3), (5, 8), (20, 23), (2, 0), (12, 10)]:
        shift = 7
        assert score(m, n) == pytest.approx(score(m + shift, n + shift), abs=1e-4)
    assert score(0, 3) != pytest.approx(score(0, 4), abs=1e-3)
    # ⟨R_m q, R_n k⟩ = ⟨q, R_{n-m} k⟩
    assert score(4, 9) == pytest.approx(score(0, 5), abs=1e-4)


def test_rotary_inside_attention_is_shift_invariant():
    rope = qc.RotaryEmbedding(8)
    q, k, v = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    a = qc.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
    b = qc.scaled_dot_product_attention(rope(q, offset=11), rope(k, offset=11), v, is_causal=True)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_rotary_buffer_moves_and_works_in_low_precision():
    rope = qc.RotaryEmbedding(8).to(torch.float64)
    assert "inv_freq" not in rope.state_dict()
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    out = qc.RotaryEmbedding(8)(x, offset=2)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), rope_reference(x.float(), 2), rtol=0, atol=3e-2)


def test_positional_encoding_offset_matches_a_slice_of_the_full_sequence():
    import qkvcourse as qc
    pe = qc.PositionalEncoding(8, 0.0, max_len=20).eval()
    X = torch.randn(2, 10, 8)
    full = pe(X)
    torch.testing.assert_close(pe(X[:, 4:7], offset=4), full[:, 4:7])
    with pytest.raises(ValueError, match=r"shape \(2, 5, 8\)\) after offset 16 .* max_len=20"):
        pe(X[:, :5], offset=16)
    with pytest.raises(ValueError, match="offset must be an integer >= 0, got -1"):
        pe(X, offset=-1)
