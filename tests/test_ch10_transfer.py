"""qkvcourse.bert_transfer: the pretrained-vs-scratch harness of chapter 10."""
from __future__ import annotations

import random

import pytest
import torch

import qkvcourse as qc
from qkvcourse.data.bert_pretraining import BERTPretrainingData
from qkvcourse.bert_transfer import (ARMS, FinetuneRecipe, bert_for_task, finetune_bert,
                                     pretraining_metrics, pretraining_monitors, subset,
                                     transfer_run)
from qkvcourse.data.tasks import ClassificationExample, SpanExample, task_vocab
from qkvcourse.finetune import BERTClassifier, BERTSpanExtractor, classification_labels

WORDS = [f"w{i}" for i in range(20)]


def tiny_config(vocab_size, max_len=24):
    return qc.BERTConfig(vocab_size, num_hiddens=16, ffn_num_hiddens=32, num_heads=2,
                         num_blks=1, dropout=0.0, max_len=max_len)


@pytest.fixture(scope="module")
def data():
    rng = random.Random(0)
    paragraphs = [[[rng.choice(WORDS) for _ in range(rng.randint(2, 6))] for _ in range(3)]
                  for _ in range(20)]
    return BERTPretrainingData(paragraphs, max_len=24, seed=0)


def test_pretraining_metrics_match_the_loss_and_restore_the_mode(data):
    model = qc.make_bert(tiny_config(len(data.vocab)))
    model.train()
    loader = data.dataloader(16, shuffle=False)
    metrics = pretraining_metrics(model, loader)
    assert model.training
    assert set(metrics) == {"mlm_loss", "mlm_accuracy", "nsp_accuracy"}
    assert 0 <= metrics["mlm_accuracy"] <= 1 and 0 <= metrics["nsp_accuracy"] <= 1
    model.eval()
    batch = next(iter(data.dataloader(len(data), shuffle=False)))
    with torch.no_grad():
        _, mlm, nsp = model(batch.tokens, batch.segments, batch.valid_lens, batch.pred_positions)
        loss = qc.bert_pretraining_loss(mlm, nsp, batch.mlm_weights, batch.mlm_labels,
                                        batch.nsp_labels)
    assert metrics["mlm_loss"] == pytest.approx(float(loss.mlm), rel=1e-4)
    expected_nsp = float((nsp.argmax(-1) == batch.nsp_labels).float().mean())
    assert metrics["nsp_accuracy"] == pytest.approx(expected_nsp)


def test_pretraining_monitors_share_one_evaluation_per_step(data, monkeypatch):
    import qkvcourse.bert_transfer as bt
    calls = []
    real = bt.pretraining_metrics
    monkeypatch.setattr(bt, "pretraining_metrics",
                        lambda m, l: calls.append(1) or real(m, l))
    model = qc.make_bert(tiny_config(len(data.vocab)))
    monitors = pretraining_monitors(data.dataloader(32, shuffle=False), every=2)
    trainer = qc.Trainer(model, qc.bert_batch_loss, data.dataloader(8),
                         callbacks=list(monitors.values()),
                         config=qc.TrainerConfig(max_epochs=5, max_steps=4,
                                                 eval_every_epoch=False, progress=False))
    trainer.fit()
    assert monitors["mlm_loss"].steps == [2, 4] == monitors["nsp_accuracy"].steps
    assert len(calls) == 2  # one evaluation per recorded step, shared by the three


def test_bert_for_task_loads_freezes_and_initialises(data):
    config = tiny_config(len(data.vocab))
    source = qc.make_bert(config)
    state = source.state_dict()
    model = bert_for_task(config, state, "classifier", 3, freeze_encoder=True, seed=1)
    assert isinstance(model, BERTClassifier)
    for name, p in model.bert.state_dict().items():
        assert torch.equal(p, state[name]), name  # every pretrained weight kept, pooler too
    assert not any(p.requires_grad for p in model.bert.encoder.parameters())
    assert all(p.requires_grad for p in model.bert.hidden.parameters())
    assert model.classifier.weight.std() > 0.1  # PyTorch's default, not std 0.02
    bert_init = bert_for_task(config, None, "classifier", 3, head_init="bert", seed=1)
    assert bert_init.classifier.weight.std() < 0.03 and bert_init.bert.hidden[0].weight.std() < 0.03
    scratch = bert_for_task(config, None, "classifier", 3, seed=1)
    assert scratch.bert.hidden[0].weight.std() > 0.1
    assert not torch.equal(scratch.bert.encoder.token_embedding.weight,
                           state["encoder.token_embedding.weight"])
    again = bert_for_task(config, None, "classifier", 3, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(scratch.parameters(), again.parameters()))
    span = bert_for_task(config, state, "span")
    assert isinstance(span, BERTSpanExtractor)
    with pytest.raises(ValueError, match="head"):
        bert_for_task(config, None, "tagger")
    with pytest.raises(ValueError, match="num_classes"):
        bert_for_task(config, None, "classifier")
    with pytest.raises(ValueError, match="head_init"):
        bert_for_task(config, None, "span", head_init="xavier")


def test_subset_is_seeded_and_checked():
    tensors = (torch.arange(10), torch.arange(10) * 2)
    a, b = subset(tensors, 4, seed=0)
    assert torch.equal(b, a * 2) and len(set(a.tolist())) == 4
    assert torch.equal(subset(tensors, 4, seed=0)[0], a)
    with pytest.raises(ValueError, match="n must be"):
        subset(tensors, 11, seed=0)


def _classification_data(vocab_words, n, seed):
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        label = rng.randrange(2)
        first = "w0" if label else "w1"
        examples.append(ClassificationExample([first] + rng.sample(vocab_words, 3),
                                              rng.sample(vocab_words, 3), label))
    return examples


def test_finetune_trains_only_the_trainable_parameters_for_the_steps(data):
    vocab = task_vocab([WORDS])
    config = tiny_config(len(vocab))
    train = _classification_data(WORDS, 64, 0)
    tensors = (*qc.bert_classification_inputs(train, vocab, 12), classification_labels(train))
    frozen = bert_for_task(config, qc.make_bert(config).state_dict(), "classifier", 2,
                           freeze_encoder=True)
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    finetune_bert(frozen, tensors, FinetuneRecipe(num_steps=3), seed=0)
    after = frozen.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith("bert.encoder"))
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])
    model = bert_for_task(config, None, "classifier", 2)
    trainer = finetune_bert(model, tensors, FinetuneRecipe(num_steps=60, lr=3e-3), seed=0)
    assert trainer.step == 60


def test_transfer_run_returns_a_held_out_score_for_every_arm():
    vocab = task_vocab([WORDS])
    config = tiny_config(len(vocab))
    pretrained = qc.make_bert(config).state_dict()
    train, test = _classification_data(WORDS, 40, 0), _classification_data(WORDS, 20, 1)
    as_tensors = lambda ex: (*qc.bert_classification_inputs(ex, vocab, 12),  # noqa: E731
                             classification_labels(ex))
    run = transfer_run(config, pretrained, as_tensors(train), as_tensors(test),
                       FinetuneRecipe(num_steps=2), "classifier", 2)
    for arm in ARMS:
        value = run(arm, 16, 0)
        assert 0.0 <= value <= 1.0 and value * 20 == pytest.approx(round(value * 20))
    assert run("pretrained", 16, 0) == run("pretrained", 16, 0)  # seeded
    with pytest.raises(ValueError, match="arm must be"):
        run("random", 16, 0)
    spans = [SpanExample(["w1", "?"], ["w2", "w3", "w4"], 1, 2) for _ in range(8)]
    span_tensors = qc.bert_span_inputs(spans, vocab, 10)
    span_run = transfer_run(config, pretrained, span_tensors, span_tensors,
                            FinetuneRecipe(num_steps=2), "span", max_answer_len=2)
    assert 0.0 <= span_run("scratch", 8, 1) <= 1.0
