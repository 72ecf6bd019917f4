"""Bad input to the losses (qkvcourse.losses), the fine-tuning losses and helpers
(qkvcourse.finetune), zero-shot scoring (qkvcourse.zero_shot) and transfer_gpt
(qkvcourse.transfer): every refusal names the argument and what it received; int32 labels
and positions give the same losses as int64; tiny mlm_weights give the weighted mean."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

import qkvcourse as qc
from qkvcourse.bert import BERTConfig, make_bert
from qkvcourse.data.tasks import ClassificationExample, SpanExample, task_vocab
from qkvcourse.finetune import (BERTClassifier, BERTSpanExtractor, GPTClassifier,
                                bert_classification_loss, bert_span_inputs, bert_span_loss,
                                classification_labels, evaluate_spans, gpt_finetune_loss,
                                gpt_finetune_losses, gpt_lm_targets, make_loader)
from qkvcourse.gpt import GPT, GPTConfig
from qkvcourse.losses import bert_pretraining_loss, lm_loss, sequence_loss, span_loss
from qkvcourse.transfer import transfer_gpt
from qkvcourse.zero_shot import choose_continuation, continuation_log_probs
from helpers import raises

pytestmark = pytest.mark.usefixtures("one_thread")

V = 14  # the vocabulary of the tiny models


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(V, max_len=16, num_layers=1, num_heads=2, d_model=16, dropout=0.0))


def tiny_bert(seed=0):
    torch.manual_seed(seed)
    return make_bert(BERTConfig(V, num_hiddens=16, ffn_num_hiddens=32, num_heads=2, num_blks=1,
                                dropout=0.0, max_len=16))


@pytest.fixture(scope="module")
def gpt_batch():
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, V, (3, 6), generator=g)
    return idx, torch.tensor([6, 4, 5]), torch.tensor([0, 1, 1])


@pytest.fixture(scope="module")
def bert_batch():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, V, (3, 8), generator=g)
    segments = torch.zeros(3, 8, dtype=torch.long)
    segments[:, 4:] = 1
    return tokens, segments, torch.tensor([8, 7, 8]), torch.tensor([0, 1, 0])


def pretraining_args(**changes):
    g = torch.Generator().manual_seed(2)
    args = dict(mlm_Y_hat=torch.randn(2, 3, 5, generator=g),
                nsp_Y_hat=torch.randn(2, 2, generator=g),
                mlm_weights=torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
                mlm_labels=torch.randint(0, 5, (2, 3), generator=g),
                nsp_labels=torch.tensor([0, 1]))
    return {**args, **changes}


# -- 1. int32 labels and positions work (as int64), int16 ones are refused by name -----------

def test_span_loss_int32_positions_equal_int64():
    g = torch.Generator().manual_seed(3)
    s, e = torch.randn(2, 5, generator=g), torch.randn(2, 5, generator=g)
    start, end = torch.tensor([1, 2]), torch.tensor([2, 4])
    expected = F.cross_entropy(s, start) + F.cross_entropy(e, end)
    assert torch.equal(span_loss(s, e, start, end), expected)
    assert torch.equal(span_loss(s, e, start.int(), end.int()), expected)
    with raises(TypeError, "start", "torch.int16", "(2,)"):
        span_loss(s, e, start.short(), end)


def test_bert_classification_loss_int32_labels_equal_int64(bert_batch):
    model = BERTClassifier(tiny_bert(), 2, dropout=0.0)
    *inputs, labels = bert_batch
    expected = bert_classification_loss(model, (*inputs, labels))
    assert torch.equal(bert_classification_loss(model, (*inputs, labels.int())), expected)
    with raises(TypeError, "labels", "torch.int16", "(3,)"):
        bert_classification_loss(model, (*inputs, labels.short()))


def test_bert_span_loss_int32_positions_equal_int64():
    vocab = task_vocab([list("abcd")])
    examples = [SpanExample(["a"], ["b", "c", "d"], 0, 1),
                SpanExample(["b", "c"], ["a", "d"], 1, 1)]
    tokens, segments, valid_lens, offset, start, end = bert_span_inputs(examples, vocab, 8)
    torch.manual_seed(0)
    model = BERTSpanExtractor(make_bert(BERTConfig(len(vocab), num_hiddens=16, ffn_num_hiddens=32,
                                                   num_heads=2, num_blks=1, dropout=0.0,
                                                   max_len=16)))
    expected = bert_span_loss(model, (tokens, segments, valid_lens, offset, start, end))
    got = bert_span_loss(model, (tokens, segments, valid_lens, offset, start.int(), end.int()))
    assert torch.equal(got, expected)
    with raises(TypeError, "end", "torch.int16"):
        bert_span_loss(model, (tokens, segments, valid_lens, offset, start, end.short()))


def test_gpt_finetune_losses_int32_labels_equal_int64(gpt_batch):
    model = GPTClassifier(tiny_gpt(), 2, dropout=0.0)
    idx, lens, labels = gpt_batch
    expected = gpt_finetune_losses(model, (idx, lens, labels))
    got = gpt_finetune_losses(model, (idx, lens, labels.int()))
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    with raises(TypeError, "labels", "torch.int16", "(3,)"):
        gpt_finetune_loss(model, (idx, lens, labels.short()))


# -- 2. labels out of the classes' range ---------------------------------------------------

@pytest.mark.parametrize("bad", [[0, 1, 2], [0, 5, 1], [0, -1, 1]])
def test_gpt_finetune_loss_refuses_labels_outside_the_classes(gpt_batch, bad):
    model = GPTClassifier(tiny_gpt(), 2, dropout=0.0)
    idx, lens, _ = gpt_batch
    with raises(ValueError, "labels", "[0, 2)", f"from {min(bad)} to {max(bad)}"):
        gpt_finetune_loss(model, (idx, lens, torch.tensor(bad)))


@pytest.mark.parametrize("bad", [[0, 1, 2], [0, 5, 1], [0, -1, 1]])
def test_bert_classification_loss_refuses_labels_outside_the_classes(bert_batch, bad):
    model = BERTClassifier(tiny_bert(), 2, dropout=0.0)
    *inputs, _ = bert_batch
    with raises(ValueError, "labels", "[0, 2)", f"from {min(bad)} to {max(bad)}"):
        bert_classification_loss(model, (*inputs, torch.tensor(bad)))


# -- 3. mlm_weights: finite, and a weighted mean even for tiny weights ------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_bert_pretraining_loss_refuses_non_finite_weights(bad):
    weights = torch.tensor([[1.0, bad, 0.0], [1.0, 0.0, 0.0]])
    with raises(ValueError, "mlm_weights", "finite", "(2, 3)"):
        bert_pretraining_loss(**pretraining_args(mlm_weights=weights))


def test_bert_pretraining_loss_tiny_weights_give_the_weighted_mean():
    ones = pretraining_args()["mlm_weights"]
    unit = bert_pretraining_loss(**pretraining_args())
    for scale in (1e-9, 1e-3, 1e3):
        scaled = bert_pretraining_loss(**pretraining_args(mlm_weights=ones * scale))
        torch.testing.assert_close(scaled.mlm, unit.mlm)
    zero = bert_pretraining_loss(**pretraining_args(mlm_weights=torch.zeros(2, 3)))
    assert zero.mlm.item() == 0.0 and torch.equal(zero.loss, zero.nsp)


def _old_mlm(mlm_Y_hat, mlm_weights, mlm_labels):
    """The formula before the fix: the weight sum clamped to float32's eps."""
    V = mlm_Y_hat.shape[-1]
    per_token = F.cross_entropy(mlm_Y_hat.reshape(-1, V).float(), mlm_labels.reshape(-1).long(),
                                reduction="none")
    weights = mlm_weights.reshape(-1).to(per_token.dtype)
    return (per_token * weights).sum() / weights.sum().clamp_min(torch.finfo(weights.dtype).eps)


def test_bert_pretraining_loss_01_weights_bit_identical_to_the_old_formula():
    g = torch.Generator().manual_seed(4)
    for trial in range(50):
        B, P, Vm = (int(n) for n in torch.randint(1, 9, (3,), generator=g))
        mlm = torch.randn(B, P, Vm + 1, generator=g) * 4
        weights = (torch.rand(B, P, generator=g) < 0.6).float()
        if trial % 5 == 0:
            weights.zero_()  # all padding: 0 either way
        labels = torch.randint(0, Vm + 1, (B, P), generator=g)
        got = bert_pretraining_loss(mlm, torch.randn(B, 2, generator=g), weights, labels,
                                    torch.randint(0, 2, (B,), generator=g))
        assert torch.equal(got.mlm, _old_mlm(mlm, weights, labels))


# -- 4. lm_weight (and other real-number arguments) must be finite ---------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, -1, True, "0.5"])
def test_gpt_finetune_loss_refuses_bad_lm_weight(gpt_batch, bad):
    model = GPTClassifier(tiny_gpt(), 2, dropout=0.0)
    with raises(ValueError, "lm_weight", repr(bad)):
        gpt_finetune_loss(model, gpt_batch, lm_weight=bad)


@pytest.mark.parametrize("bad", [math.nan, -0.1, 1.5])
def test_sequence_loss_refuses_bad_label_smoothing(bad):
    with raises(ValueError, "label_smoothing", repr(bad)):
        sequence_loss(torch.randn(2, 3, 5), torch.ones(2, 3, dtype=torch.long), 0,
                      label_smoothing=bad)


@pytest.mark.parametrize("cls", [GPTClassifier, BERTClassifier])
@pytest.mark.parametrize("bad", [math.nan, 1.0, -0.1])
def test_classifiers_refuse_bad_dropout(cls, bad):
    base = tiny_gpt() if cls is GPTClassifier else tiny_bert()
    with raises(ValueError, "dropout", repr(bad)):
        cls(base, 2, dropout=bad)


# -- 5. empty batches and sequences are errors, not NaN or a silent 0 -------------------------

@pytest.mark.parametrize("call, name", [
    (lambda: bert_pretraining_loss(torch.randn(0, 3, 5), torch.randn(0, 2), torch.ones(0, 3),
                                   torch.zeros(0, 3, dtype=torch.long),
                                   torch.zeros(0, dtype=torch.long)), "mlm_Y_hat"),
    (lambda: span_loss(torch.randn(0, 5), torch.randn(0, 5), torch.zeros(0, dtype=torch.long),
                       torch.zeros(0, dtype=torch.long)), "start_logits"),
    (lambda: span_loss(torch.randn(2, 0), torch.randn(2, 0), torch.zeros(2, dtype=torch.long),
                       torch.zeros(2, dtype=torch.long)), "start_logits"),
    (lambda: lm_loss(torch.randn(0, 3, 5), torch.zeros(0, 3, dtype=torch.long)), "targets"),
    (lambda: lm_loss(torch.randn(2, 0, 5), torch.zeros(2, 0, dtype=torch.long)), "targets"),
    (lambda: sequence_loss(torch.randn(2, 0, 5), torch.zeros(2, 0, dtype=torch.long), 0),
     "targets"),
    (lambda: sequence_loss(torch.randn(0, 3, 5), torch.zeros(0, 3, dtype=torch.long), 0),
     "targets"),
])
def test_losses_refuse_empty_batches(call, name):
    with raises(ValueError, name, "empty"):
        call()


def test_finetune_losses_refuse_empty_batches(gpt_batch, bert_batch):
    gpt = GPTClassifier(tiny_gpt(), 2, dropout=0.0)
    idx, lens, labels = gpt_batch
    with raises(ValueError, "idx", "empty", "(0, 6)"):
        gpt_finetune_loss(gpt, (idx[:0], lens[:0], labels[:0]))
    bert = BERTClassifier(tiny_bert(), 2, dropout=0.0)
    tokens, segments, valid_lens, labels = bert_batch
    with raises(ValueError, "tokens", "empty", "(0, 8)"):
        bert_classification_loss(bert, (tokens[:0], segments[:0], valid_lens[:0], labels[:0]))
    span = BERTSpanExtractor(tiny_bert())
    empty = torch.zeros(0, dtype=torch.long)
    with raises(ValueError, "tokens", "empty", "(0, 8)"):
        bert_span_loss(span, (tokens[:0], segments[:0], valid_lens[:0], empty, empty, empty))


def test_all_ignored_targets_still_give_zero():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    assert lm_loss(logits, torch.full((2, 3), -100)).item() == 0.0
    assert sequence_loss(logits, torch.zeros(2, 3, dtype=torch.long), pad_id=0).item() == 0.0


# -- 6. float (and bool) ids are refused, not truncated --------------------------------------

@pytest.mark.parametrize("prompts, continuations, name", [
    ([[1, 2]], [[3.7]], "continuations[0][0]"),
    ([[1, 2.0]], [[3]], "prompts[0][1]"),
    ([[True, 2]], [[3]], "prompts[0][0]"),
    ([torch.tensor([1.0, 2.0])], [[3]], "prompts[0]"),
])
def test_continuation_log_probs_refuses_non_integer_ids(prompts, continuations, name):
    with raises(TypeError, name):
        continuation_log_probs(tiny_gpt(), prompts, continuations)


@pytest.mark.parametrize("prompts, continuations, name, value", [
    ([[1, 2]], [[V]], "continuations[0][0]", str(V)),
    ([[-1, 2]], [[3]], "prompts[0][0]", "-1"),
])
def test_continuation_log_probs_refuses_ids_outside_the_vocabulary(prompts, continuations, name,
                                                                    value):
    with raises(ValueError, name, f"[0, {V})", value):
        continuation_log_probs(tiny_gpt(), prompts, continuations)


def test_choose_continuation_refuses_a_string_of_candidates():
    with raises(TypeError, "candidates", "str"):
        choose_continuation(tiny_gpt(), [1, 2], "ab")


@pytest.mark.parametrize("token_map, error, fragments", [
    ([0.9, 1.9], TypeError, ("token_map[0]", "0.9")),
    ([0, True], TypeError, ("token_map[1]", "True")),
    (torch.tensor([0.0, 1.0]), TypeError, ("token_map", "torch.float32")),
    ("01", TypeError, ("token_map", "str")),
    ([0, -2], ValueError, ("token_map[1]", f"[0, {V})", "-2")),
    ([0, V], ValueError, ("token_map[1]", str(V))),
    ([], ValueError, ("token_map", "empty")),
])
def test_transfer_gpt_refuses_bad_token_maps(token_map, error, fragments):
    with raises(error, *fragments):
        transfer_gpt(tiny_gpt(), token_map=token_map)


def test_transfer_gpt_accepts_new_tokens_and_integer_tensors():
    source = tiny_gpt()
    a = transfer_gpt(source, token_map=[3, -1, 5])
    b = transfer_gpt(source, token_map=torch.tensor([3, -1, 5]))
    assert a.config.vocab_size == b.config.vocab_size == 3
    assert torch.equal(a.token_embedding.weight[[0, 2]], source.token_embedding.weight[[3, 5]])
    assert torch.equal(b.token_embedding.weight[[0, 2]], source.token_embedding.weight[[3, 5]])


def test_transfer_gpt_accepts_numpy_arrays_and_generators():
    import numpy as np
    source = tiny_gpt()
    a = transfer_gpt(source, token_map=np.array([3, -1, 5]))
    b = transfer_gpt(source, token_map=(j for j in [3, -1, 5]))
    for model in (a, b):
        assert torch.equal(model.token_embedding.weight[[0, 2]],
                           source.token_embedding.weight[[3, 5]])
    with raises(TypeError, "token_map[0]", "0.5"):
        transfer_gpt(source, token_map=np.array([0.5, 1.0]))


# -- the same families elsewhere in the fine-tuning helpers ---------------------------------

def test_finetune_helpers_refuse_truthy_flags_floats_and_bad_sizes(gpt_batch):
    data = (torch.zeros(4), torch.zeros(4))
    with raises(TypeError, "shuffle", "'no'"):
        make_loader(data, 2, shuffle="no")
    with raises(TypeError, "seed", "1.5"):
        make_loader(data, 2, seed=1.5)
    with raises(TypeError, "examples[1].label", "1.7"):
        classification_labels([ClassificationExample(["a"], None, 0),
                               ClassificationExample(["b"], None, 1.7)])
    vocab = task_vocab([list("abcd")])
    with raises(TypeError, "examples[0].answer_start", "0.5"):
        bert_span_inputs([SpanExample(["a"], ["b", "c"], 0.5, 1)], vocab, 8)
    idx, lens, _ = gpt_batch
    with raises(TypeError, "idx", "torch.float32"):
        gpt_lm_targets(idx.float(), lens)
    with raises(ValueError, "ignore_index", "0.5"):
        gpt_lm_targets(idx, lens, ignore_index=0.5)
    with raises(ValueError, "pad_id", "None"):
        sequence_loss(torch.randn(2, 3, 5), torch.ones(2, 3, dtype=torch.long), None)
    with raises(ValueError, "max_answer_len", "0"):
        evaluate_spans(BERTSpanExtractor(tiny_bert()), [], max_answer_len=0)
    with raises(ValueError, "batch sizes", "mlm_Y_hat", "nsp_Y_hat"):
        bert_pretraining_loss(**pretraining_args(nsp_Y_hat=torch.randn(3, 2),
                                                 nsp_labels=torch.tensor([0, 1, 0])))
    assert qc.bert_pretraining_loss is bert_pretraining_loss
