"""GPU readiness without a GPU: every model runs forward and backward on PyTorch's ``meta`` device.

A meta tensor has a shape, a dtype and no data: any read of its values (``.item()``,
``.tolist()``, ``bool(t)``, ``int(t)``) fails, as it would force a host-device copy (a
synchronisation) on a GPU. Checks that read values (token-id and ``valid_lens`` ranges) run on
CPU tensors, where they cost nothing, or everywhere inside ``qc.value_checks()``; on an
accelerator the forward path never waits for the device.
"""
from __future__ import annotations

import pytest
import torch

import qkvcourse as qc

META = torch.device("meta")


def _backward(*outputs):
    total = sum(o.float().sum() for o in outputs if o is not None)
    total.backward()


def test_masked_softmax_with_valid_lens_on_meta():
    X = torch.empty(2, 3, 5, device=META, requires_grad=True)
    lens = torch.empty(2, dtype=torch.long, device=META)
    _backward(qc.masked_softmax(X, lens))
    lens2 = torch.empty(2, 3, dtype=torch.long, device=META)
    _backward(qc.masked_softmax(X, lens2))


@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_attention_with_valid_lens_on_meta(need_weights):
    with META:
        mha = qc.MultiHeadAttention(16, 4, dropout=0.1)
        X = torch.empty(2, 5, 16, requires_grad=True)
        lens = torch.empty(2, dtype=torch.long)
    _backward(mha(X, X, X, lens, need_weights=need_weights))


def test_additive_attention_with_valid_lens_on_meta():
    with META:
        att = qc.AdditiveAttention(8, 0.1, query_size=6, key_size=4)
        q, k, v = torch.empty(2, 3, 6), torch.empty(2, 5, 4), torch.empty(2, 5, 7, requires_grad=True)
        lens = torch.empty(2, dtype=torch.long)
    _backward(att(q, k, v, lens))


def test_transformer_encoder_decoder_on_meta():
    with META:
        model = qc.make_transformer(qc.TransformerConfig(11, 13, num_hiddens=16, ffn_num_hiddens=32,
                                                         num_heads=4))
        src = torch.empty(2, 6, dtype=torch.long)
        tgt = torch.empty(2, 5, dtype=torch.long)
        lens = torch.empty(2, dtype=torch.long)
    _backward(model(src, tgt, lens))


def test_gpt_training_step_and_cached_generation_step_on_meta():
    with META:
        model = qc.GPT(qc.GPTConfig(vocab_size=20, max_len=16, num_layers=2, num_heads=2, d_model=16))
        idx = torch.empty(3, 8, dtype=torch.long)
        targets = torch.empty(3, 8, dtype=torch.long)
    logits, loss = model(idx, targets)
    _backward(loss)
    with torch.no_grad():
        _, past = model.forward_with_cache(idx)
        step, past = model.forward_with_cache(idx[:, -1:], past)
        following = model.next_token_logits(idx)  # the last-position shortcut
    assert step.shape == (3, 1, 20) and past[0][0].shape == (3, 2, 9, 8)
    assert following.shape == (3, 20)


def test_bert_with_valid_lens_on_meta():
    with META:
        model = qc.make_bert(qc.BERTConfig(vocab_size=30, num_hiddens=16, ffn_num_hiddens=32,
                                           num_heads=2, num_blks=2, max_len=16))
        tokens = torch.empty(2, 10, dtype=torch.long)
        segments = torch.empty(2, 10, dtype=torch.long)
        lens = torch.empty(2, dtype=torch.long)
        pred_positions = torch.empty(2, 3, dtype=torch.long)
    encoded, mlm, nsp = model(tokens, segments, lens, pred_positions)
    _backward(encoded, mlm, nsp)


def test_span_loss_on_meta():
    """BERT's span loss refuses an answer at a masked position by reading the logits: on the
    CPU, not on an accelerator (it was a synchronisation per training step)."""
    from qkvcourse.losses import MASKED_LOGIT, span_loss

    with META:
        start_logits = torch.empty(2, 7, requires_grad=True)
        end_logits = torch.empty(2, 7, requires_grad=True)
        start, end = torch.empty(2, dtype=torch.long), torch.empty(2, dtype=torch.long)
    _backward(span_loss(start_logits, end_logits, start, end))
    masked = torch.zeros(1, 4)
    masked[0, 0] = MASKED_LOGIT
    with pytest.raises(ValueError, match=r"start\[0\] = 0 is a masked position"):
        span_loss(masked, torch.zeros(1, 4), torch.tensor([0]), torch.tensor([1]))


def test_value_checks_still_run_on_cpu_and_in_debug_mode():
    """The checks that read values are not gone: they run on CPU tensors, and on any device
    inside ``qc.value_checks()`` (here simulated on the CPU)."""
    model = qc.GPT(qc.GPTConfig(vocab_size=20, max_len=16, num_layers=1, num_heads=2, d_model=16))
    with pytest.raises(ValueError, match=r"idx token ids must lie in \[0, 20\)"):
        model(torch.tensor([[1, 25]]))
    X = torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match=r"valid_lens must lie in \[0, 5\]"):
        qc.masked_softmax(X, torch.tensor([2, 9]))
    assert qc.value_checks_enabled(torch.empty(1, device=META)) is False
    with qc.value_checks():
        assert qc.value_checks_enabled(torch.empty(1)) is True


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_explicit_path_has_no_nan_where_the_kernel_is_finite(dtype):
    """Scores of 200 x 200 x 16 overflow float16 (max 65504): the explicit path computes the
    softmax in float32, like PyTorch's kernel, instead of returning NaN."""
    q = torch.full((1, 2, 16), 200.0, dtype=dtype)
    k = torch.full((1, 3, 16), 200.0, dtype=dtype)
    v = torch.randn(1, 3, 4).to(dtype)
    fused = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float())
    with qc.attention_backend("explicit"):
        out, weights = qc.scaled_dot_product_attention(q, k, v, need_weights=True)
    assert out.dtype == dtype and weights.dtype == dtype
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    torch.testing.assert_close(out.float(), fused, atol=1e-2, rtol=1e-2)
    lens = torch.tensor([2])
    w = qc.masked_softmax(torch.full((1, 2, 3), 6e4, dtype=dtype) * 1, lens)
    assert torch.isfinite(w).all() and torch.allclose(w.float().sum(-1), torch.ones(1, 2), atol=1e-2)
    mha = qc.MultiHeadAttention(16, 2).to(dtype)
    x = torch.full((1, 4, 16), 30.0, dtype=dtype)
    assert torch.isfinite(mha(x, x, x, need_weights=True)).all()


def _gpt(dev):
    torch.manual_seed(0)
    model = qc.GPT(qc.GPTConfig(vocab_size=20, max_len=16, num_layers=2, num_heads=2,
                                d_model=16)).to(dev)
    return model, torch.randint(0, 20, (3, 8), device=dev)


def _gpt_training_and_cache(dev):
    model, idx = _gpt(dev)

    def run():
        model(idx, idx)[1].backward()
        with torch.no_grad():
            _, past = model.forward_with_cache(idx)
            model.forward_with_cache(idx[:, -1:], past)
            model.next_token_logits(idx)
    return run


def _gpt_generation(dev):
    model, idx = _gpt(dev)
    generator = torch.Generator(device=dev).manual_seed(0)

    def run():  # without eos_id: nothing decides to stop early, so nothing is read
        model.generate(idx, 5, do_sample=False)
        model.generate(idx, 5, top_k=5, top_p=0.9, generator=generator)
    return run


def _bert(dev):
    torch.manual_seed(0)
    model = qc.make_bert(qc.BERTConfig(vocab_size=30, num_hiddens=16, ffn_num_hiddens=32,
                                       num_heads=2, num_blks=2, max_len=16)).to(dev)
    tokens = torch.randint(0, 30, (2, 10), device=dev)
    segments = torch.zeros(2, 10, dtype=torch.long, device=dev)
    lens = torch.tensor([7, 10], device=dev)
    positions = torch.zeros(2, 3, dtype=torch.long, device=dev)
    return lambda: _backward(*model(tokens, segments, lens, positions))


def _span_loss(dev):
    from qkvcourse.losses import span_loss

    start_logits = torch.randn(2, 7, device=dev, requires_grad=True)
    end_logits = torch.randn(2, 7, device=dev, requires_grad=True)
    start, end = torch.tensor([1, 2], device=dev), torch.tensor([3, 2], device=dev)
    return lambda: span_loss(start_logits, end_logits, start, end).backward()


def _transformer(dev):
    torch.manual_seed(0)
    model = qc.make_transformer(qc.TransformerConfig(11, 13, num_hiddens=16, ffn_num_hiddens=32,
                                                     num_heads=4)).to(dev)
    src, tgt = torch.randint(0, 11, (2, 6), device=dev), torch.randint(0, 13, (2, 5), device=dev)
    lens = torch.tensor([3, 6], device=dev)
    return lambda: _backward(model(src, tgt, lens))


def _rnn_seq2seq(dev, attention):
    torch.manual_seed(0)
    config = qc.RNNSeq2SeqConfig(embed_size=8, num_hiddens=16, num_layers=2, dropout=0.1)
    model = qc.make_rnn_seq2seq(9, 11, attention, config).to(dev)
    src, tgt = torch.randint(0, 9, (3, 6), device=dev), torch.randint(0, 11, (3, 5), device=dev)
    lens = torch.tensor([6, 2, 4], device=dev)
    return lambda: _backward(model(src, tgt, lens))


def _attention_layers(dev):
    torch.manual_seed(0)
    mha = qc.MultiHeadAttention(16, 4, dropout=0.1).to(dev)
    additive = qc.AdditiveAttention(8, 0.1, query_size=6, key_size=4).to(dev)
    X = torch.randn(2, 5, 16, device=dev, requires_grad=True)
    q, k, v = (torch.randn(2, 3, 6, device=dev), torch.randn(2, 5, 4, device=dev),
               torch.randn(2, 5, 7, device=dev))
    lens = torch.tensor([3, 5], device=dev)

    def run():
        _backward(mha(X, X, X, lens), mha(X, X, X, lens, need_weights=True))
        _backward(additive(q, k, v, lens), qc.masked_softmax(X, lens))
    return run


def _trainer_step(dev):
    """One optimiser step of qc.Trainer with clipping (bf16 autocast on CUDA, no scaler)."""
    from qkvcourse.trainer import move_to_device

    model, idx = _gpt(dev)
    batches = [(idx.cpu(), idx.cpu())]
    trainer = qc.Trainer(model, lambda m, b: m(b[0], b[1])[1], batches,
                         config=qc.TrainerConfig(max_epochs=1, device=dev, grad_clip_norm=1.0,
                                                 precision="bf16" if dev.type == "cuda" else "fp32",
                                                 progress=False))
    batch = move_to_device(batches[0], dev)
    return lambda: trainer._optimiser_step(batch)


SYNC_FREE = {"gpt training and KV cache": _gpt_training_and_cache,
             "gpt generation": _gpt_generation, "bert": _bert, "span loss": _span_loss,
             "transformer": _transformer,
             "rnn seq2seq, plain": lambda dev: _rnn_seq2seq(dev, attention=False),
             "rnn seq2seq, bahdanau": lambda dev: _rnn_seq2seq(dev, attention=True),
             "attention layers": _attention_layers, "trainer step": _trainer_step}


@pytest.mark.parametrize("case", SYNC_FREE)
def test_sync_free_cases_run_on_the_cpu(case):
    """The cases of the CUDA test below, run here so that their own code is exercised."""
    SYNC_FREE[case](torch.device("cpu"))()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", SYNC_FREE)
def test_models_never_synchronise_with_the_host_on_cuda(case):
    """Every model's forward and backward (and generation, and a trainer step) under
    torch.cuda.set_sync_debug_mode('error'): any host synchronisation raises."""
    run = SYNC_FREE[case](torch.device("cuda"))  # building may synchronise; running may not
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _graph_breaks(fn, *args):
    import torch._dynamo as dynamo
    dynamo.reset()
    explanation = dynamo.explain(fn)(*args)
    return explanation.graph_break_count, [str(r.reason)[:120] for r in explanation.break_reasons]


def test_no_graph_breaks_under_torch_compile():
    """A value read (a range check) would break torch.compile's graph, as it would stall a GPU:
    none runs while compiling, so each model traces as one graph."""
    torch.manual_seed(0)
    gpt = qc.GPT(qc.GPTConfig(vocab_size=20, max_len=16, num_layers=2, num_heads=2, d_model=16))
    idx = torch.randint(0, 20, (2, 8))
    assert _graph_breaks(gpt, idx, idx) == (0, [])
    assert _graph_breaks(gpt.eval().next_token_logits, idx) == (0, [])
    model = qc.make_transformer(qc.TransformerConfig(20, 20, d_model=16, num_heads=2,
                                                     ffn_num_hiddens=32))
    src, tgt, lens = torch.randint(0, 20, (3, 7)), torch.randint(0, 20, (3, 5)), torch.tensor([7, 3, 5])
    assert _graph_breaks(model, src, tgt, lens) == (0, [])
    bert = qc.make_bert(qc.BERTConfig(vocab_size=30, d_model=16, ffn_num_hiddens=32,
                                      num_heads=2, num_layers=2, max_len=16))
    tokens, segments = torch.randint(0, 30, (2, 9)), torch.zeros(2, 9, dtype=torch.long)
    assert _graph_breaks(bert, tokens, segments, torch.tensor([9, 6]),
                         torch.tensor([[1, 2], [3, 4]])) == (0, [])
