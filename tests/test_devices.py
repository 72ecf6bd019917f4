"""Every layer on every device present; on an accelerator in bf16, against the CPU in float32.

On a CPU-only machine only the ``cpu`` cases are collected. The comparison is always
with a float32 CPU result computed from the *same* (already rounded) inputs and weights,
so the tolerance measures the device's arithmetic, not the rounding of the inputs.
"""
from __future__ import annotations

import copy

import pytest
import torch

import qkvcourse as qc
from conftest import dtype_for, tolerance


def on(device, dtype, *tensors):
    """The tensors rounded to ``dtype`` and moved to ``device``, plus float32 CPU copies of
    the rounded values (the reference's inputs)."""
    moved = [t.to(dtype).to(device) if t.is_floating_point() else t.to(device) for t in tensors]
    reference = [t.to(dtype).float() if t.is_floating_point() else t for t in tensors]
    return moved, reference


def close(actual, expected, dtype):
    assert actual.dtype == dtype, actual.dtype
    torch.testing.assert_close(actual.float().cpu(), expected, **tolerance(dtype))


def module_pair(module: torch.nn.Module, device, dtype):
    """``module`` on ``device`` in ``dtype``, and a float32 CPU copy with the same (rounded)
    weights."""
    reference = copy.deepcopy(module).to(dtype).float().cpu()
    return module.to(device, dtype), reference


def test_devices_list_starts_with_the_cpu():
    devices = qc.available_devices()
    assert devices[0] == torch.device("cpu")
    assert (torch.device("cuda") in devices) == torch.cuda.is_available()
    assert len(set(devices)) == len(devices)


# -- masking and attention functions ---------------------------------------------------------

def test_masked_softmax_on_device(device):
    dtype = dtype_for(device)
    valid_lens = torch.tensor([[1, 4, 0], [2, 3, 4]])
    mask = torch.rand(2, 1, 3, 4) > 0.3
    (X, lens_d, mask_d), (X_ref, _, _) = on(device, dtype, torch.randn(2, 2, 3, 4), valid_lens, mask)
    out = qc.masked_softmax(X, lens_d, mask=mask_d)
    assert out.device.type == device.type
    close(out, qc.masked_softmax(X_ref, valid_lens, mask=mask), dtype)
    assert torch.all(out[1, :, 1:].sum(-1) > 0) and torch.all(out[0, :, 2] == 0)
    # valid_lens and mask may stay on the CPU
    close(qc.masked_softmax(X, valid_lens, mask=mask), qc.masked_softmax(X_ref, valid_lens, mask=mask),
          dtype)


@pytest.mark.parametrize("backend", ["explicit", "fused"])
def test_scaled_dot_product_attention_on_device(device, backend):
    dtype = dtype_for(device)
    mask = torch.rand(2, 1, 5, 7) > 0.4
    mask[0, 0, 3] = False  # a fully masked query
    (q, k, v, mask_d), (q_r, k_r, v_r, _) = on(
        device, dtype, torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4), mask)
    float_mask = torch.randn(5, 7)
    with qc.attention_backend(backend):
        for kwargs, ref_kwargs in [
            ({}, {}),
            ({"attn_mask": mask_d}, {"attn_mask": mask}),
            ({"is_causal": True}, {"is_causal": True}),
            ({"attn_mask": float_mask.to(device, dtype)}, {"attn_mask": float_mask.to(dtype).float()}),
            ({"attn_mask": mask_d, "is_causal": True, "scale": 0.5},
             {"attn_mask": mask, "is_causal": True, "scale": 0.5}),
        ]:
            out = qc.scaled_dot_product_attention(q, k, v, **kwargs)
            assert out.device.type == device.type
            with qc.attention_backend("explicit"):
                expected = qc.scaled_dot_product_attention(q_r, k_r, v_r, **ref_kwargs)
            close(out, expected, dtype)
        out = qc.scaled_dot_product_attention(q, k, v, attn_mask=mask_d)
        assert torch.all(out[0, :, 3] == 0)


@pytest.mark.parametrize("backend", ["explicit", "fused"])
def test_fully_masked_rows_have_finite_gradients_on_device(device, backend):
    dtype = dtype_for(device)
    mask = torch.rand(2, 4, 6, 6) > 0.5
    mask[..., 0] = True
    mask[:, :, 2] = False  # query 2 attends to nothing, in every head
    mask[1] = False  # batch row 1 attends to nothing at all
    leaves = [torch.randn(2, 4, 6, 16, device=device, dtype=dtype, requires_grad=True)
              for _ in range(3)]
    with qc.attention_backend(backend):
        out = qc.scaled_dot_product_attention(*leaves, attn_mask=mask.to(device))
    assert torch.isfinite(out).all()
    assert torch.all(out[:, :, 2] == 0) and torch.all(out[1] == 0)
    (out.float() * torch.randn(out.shape, device=device)).sum().backward()
    for t in leaves:
        assert torch.isfinite(t.grad).all()
    assert torch.all(leaves[0].grad[:, :, 2] == 0)


# -- modules ---------------------------------------------------------------------------------

def test_dot_product_attention_on_device(device):
    dtype = dtype_for(device)
    valid_lens = torch.tensor([3, 6])
    (q, k, v, lens_d), (q_r, k_r, v_r, _) = on(
        device, dtype, torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 5), valid_lens)
    for need_weights in (True, False):
        attention = qc.DotProductAttention(need_weights=need_weights).to(device)
        reference = qc.DotProductAttention(need_weights=True)
        close(attention(q, k, v, lens_d), reference(q_r, k_r, v_r, valid_lens), dtype)
        if need_weights:
            assert attention.attention_weights.device.type == device.type
            close(attention.attention_weights, reference.attention_weights, dtype)


def test_additive_attention_on_device(device):
    dtype = dtype_for(device)
    valid_lens = torch.tensor([[1, 2, 5, 3], [5, 4, 3, 2]])
    ours, reference = module_pair(qc.AdditiveAttention(16, query_size=6, key_size=3), device, dtype)
    (q, k, v, lens_d), (q_r, k_r, v_r, _) = on(
        device, dtype, torch.randn(2, 4, 6), torch.randn(2, 5, 3), torch.randn(2, 5, 7), valid_lens)
    close(ours(q, k, v, lens_d), reference(q_r, k_r, v_r, valid_lens), dtype)
    close(ours.attention_weights, reference.attention_weights, dtype)


@pytest.mark.parametrize("backend", ["explicit", "fused"])
def test_multi_head_attention_on_device(device, backend):
    dtype = dtype_for(device)
    ours, reference = module_pair(qc.MultiHeadAttention(32, 4, bias=True, key_size=12), device,
                                  dtype)
    valid_lens = torch.tensor([[1, 7, 3], [0, 2, 7]])
    (q, kv, v, lens_d), (q_r, kv_r, v_r, _) = on(
        device, dtype, torch.randn(2, 3, 32), torch.randn(2, 7, 12), torch.randn(2, 7, 32),
        valid_lens)
    with qc.attention_backend(backend):
        out = ours(q, kv, v, lens_d, is_causal=True)
        with qc.attention_backend("explicit"):
            expected = reference(q_r, kv_r, v_r, valid_lens, is_causal=True)
    close(out, expected, dtype)
    out.float().pow(2).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in ours.parameters())


def test_positional_encodings_on_device(device):
    dtype = dtype_for(device)
    (X,), (X_r,) = on(device, dtype, torch.randn(2, 50, 16))
    for module in (qc.PositionalEncoding(16, max_len=60), qc.LearnedPositionalEncoding(16, max_len=60)):
        ours, reference = module_pair(module.eval(), device, dtype)
        out = ours(X)
        assert out.device.type == device.type
        close(out, reference(X_r), dtype)
    rope = qc.RotaryEmbedding(16).to(device)
    close(rope(X, offset=5), qc.RotaryEmbedding(16)(X_r, offset=5), dtype)


def test_nadaraya_watson_on_device(device):
    # 1-D regression is not a bf16 workload: float32 everywhere (no TF32 in these ops)
    x, y, x_test, _ = qc.make_regression_data(n_train=30, n_test=20)
    for kernel in qc.KERNELS:
        p, w = qc.nadaraya_watson(x_test.to(device), x.to(device), y.to(device), kernel, 0.5)
        p_ref, w_ref = qc.nadaraya_watson(x_test, x, y, kernel, 0.5)
        assert p.device.type == device.type
        torch.testing.assert_close(w.cpu(), w_ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(p.cpu(), p_ref, rtol=1e-5, atol=1e-5)
    model = qc.NadarayaWatson(0.5).to(device)
    mask = qc.leave_one_out_mask(30, device=device)
    assert mask.device.type == device.type
    losses = qc.fit_bandwidth(model, x.to(device), y.to(device), epochs=20)
    reference = qc.NadarayaWatson(0.5)
    ref_losses = qc.fit_bandwidth(reference, x, y, epochs=20)
    assert losses == pytest.approx(ref_losses, rel=1e-4)
    assert model.bandwidth == pytest.approx(reference.bandwidth, rel=1e-4)


# -- device choice ---------------------------------------------------------------------------

def test_get_device_honours_qkv_device(monkeypatch):
    monkeypatch.setenv("QKV_DEVICE", "cpu")
    assert qc.get_device() == torch.device("cpu")
    monkeypatch.setenv("QKV_DEVICE", "meta")  # any device name is passed through
    assert qc.get_device() == torch.device("meta")
    assert qc.get_device("cpu") == torch.device("cpu")  # an explicit argument wins
    # unset (or empty): CUDA, then MPS, then the CPU
    expected = "cuda" if torch.cuda.is_available() else qc.available_devices()[-1].type
    monkeypatch.setenv("QKV_DEVICE", "")
    assert qc.get_device().type == expected
    monkeypatch.delenv("QKV_DEVICE")
    assert qc.get_device().type == expected
    assert qc.get_device("meta") == torch.device("meta")


def test_seed_everything_repeats_draws():
    qc.seed_everything(7)
    a = torch.randn(3), torch.rand(1).item()
    qc.seed_everything(7)
    b = torch.randn(3), torch.rand(1).item()
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    qc.seed_everything(8)
    assert not torch.equal(torch.randn(3), a[0])
