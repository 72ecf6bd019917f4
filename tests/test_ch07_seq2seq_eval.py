"""Chapter 7: SequenceTaskData, train_seq2seq with a fixed step budget and label smoothing, and
qkvcourse.seq2seq_eval's scores."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

import qkvcourse as qc
from qkvcourse.data.sequences import SequenceTaskData
from qkvcourse.seq2seq import train_seq2seq
from qkvcourse.seq2seq_eval import Seq2SeqScores, evaluate_seq2seq, scores_table


def small_transformer(data):
    V = len(data.tgt_vocab)
    return qc.make_transformer(qc.TransformerConfig(V, V, num_hiddens=32, ffn_num_hiddens=64,
                                                    num_heads=4, num_enc_blks=1, num_dec_blks=1,
                                                    dropout=0.0, max_len=32))


# -- data --------------------------------------------------------------------------------------

def test_reverse_and_copy_pairs():
    rev = SequenceTaskData("reverse", 5, 9, num_train=50, num_val=5, num_test=20, seed=3)
    cop = SequenceTaskData("copy", 5, 9, num_train=50, num_val=5, num_test=20, seed=3)
    for (s, t), (s2, t2) in zip(rev.train_pairs, cop.train_pairs):
        assert t == s[::-1] and s2 == t2 == s  # same strings for the same seed
        assert 5 <= len(s) <= 9 and set(s) <= set("abcdefghij")
    lengths = {len(s) for s, _ in rev.train_pairs}
    assert min(lengths) == 5 and max(lengths) == 9  # both ends are drawn


def test_deterministic_from_seed_and_tensors():
    a = SequenceTaskData(num_train=30, num_val=3, num_test=4, seed=1, min_len=4, max_len=6)
    b = SequenceTaskData(num_train=30, num_val=3, num_test=4, seed=1, min_len=4, max_len=6)
    c = SequenceTaskData(num_train=30, num_val=3, num_test=4, seed=2, min_len=4, max_len=6)
    assert a.train_pairs == b.train_pairs and a.train_pairs != c.train_pairs
    batch = a.train_tensors
    assert batch.src.shape == (30, 7)  # 6 characters + <eos>
    assert batch.tgt_in[:, 0].eq(a.tgt_vocab.bos_id).all()
    assert a.decode_targets(batch.tgt_out) == [t for _, t in a.train_pairs]
    assert len(a.src_vocab) == 14  # 4 special tokens + 10 symbols


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(task="sort"), "task"), (dict(min_len=0), "min_len"), (dict(min_len=5, max_len=4), "max_len"),
    (dict(symbols="aa"), "symbols"), (dict(symbols="a"), "symbols"), (dict(num_test=-1), "num_test")])
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        SequenceTaskData(**kwargs)


def test_label_smoothing_caps_the_optimal_confidence():
    """With smoothing ε over V classes, the loss is minimal at p(target) = 1 − ε + ε/V."""
    V, eps = 14, 0.1
    target = torch.tensor([3])

    def loss_at(p):
        rest = (1 - p) / (V - 1)
        probs = torch.full((1, V), rest)
        probs[0, 3] = p
        return F.cross_entropy(probs.log(), target, label_smoothing=eps).item()

    best = 1 - eps + eps / V
    assert loss_at(best) < loss_at(best + 0.02) and loss_at(best) < loss_at(best - 0.02)


# -- training and evaluation -------------------------------------------------------------------

def test_train_and_evaluate_learns_copying():
    data = SequenceTaskData("copy", 3, 5, num_train=512, num_val=8, num_test=64, seed=0,
                            batch_size=32, symbols="abcd")
    qc.seed_everything(0)
    model = small_transformer(data)
    before = evaluate_seq2seq(model, data)
    trainer = train_seq2seq(model, data, steps=150, validate=False, lr=1e-2, seed=0, device="cpu")
    assert trainer.step == 150 and trainer.settings["cpu_seconds"] > 0
    after = evaluate_seq2seq(model, data)
    assert after.token_accuracy > 0.9 > before.token_accuracy
    assert after.nll < before.nll and math.isclose(after.perplexity, math.exp(after.nll),
                                                   rel_tol=1e-6)
    assert len(after.position_accuracy) == 5 and 0 <= after.ece <= 1
    assert 0.9 < after.teacher_forced_accuracy <= 1
    assert 0 < after.confidence <= 1 and 0 <= after.exact_match <= after.token_accuracy + 1e-9


def test_label_smoothing_lowers_confidence_and_raises_nll():
    data = SequenceTaskData("copy", 3, 5, num_train=512, num_val=8, num_test=64, seed=0,
                            batch_size=32, symbols="abcd")
    scores = {}
    for eps in (0.0, 0.3):
        qc.seed_everything(0)
        model = small_transformer(data)
        train_seq2seq(model, data, steps=150, validate=False, lr=1e-2, label_smoothing=eps, seed=0, device="cpu")
        scores[eps] = evaluate_seq2seq(model, data)
    assert scores[0.3].confidence < scores[0.0].confidence
    assert scores[0.3].nll > scores[0.0].nll
    # with ε = 0.3 over 8 classes the model cannot be more confident than 1 − 0.3 + 0.3/8
    assert scores[0.3].confidence < 1 - 0.3 + 0.3 / 8 + 0.02


def test_works_with_the_rnn_and_rejects_bad_arguments():
    data = SequenceTaskData("reverse", 3, 4, num_train=64, num_val=8, num_test=8, seed=0,
                            batch_size=16)
    V = len(data.tgt_vocab)
    model = qc.make_rnn_seq2seq(V, V, attention=True)
    train_seq2seq(model, data, steps=3, validate=False, lr=1e-3, device="cpu")
    assert evaluate_seq2seq(model, data, split="val").exact_match >= 0.0
    with pytest.raises(ValueError, match="steps"):
        train_seq2seq(model, data, steps=0, validate=False, lr=1e-3)
    with pytest.raises(ValueError, match="label_smoothing"):
        train_seq2seq(model, data, steps=1, validate=False, lr=1e-3, label_smoothing=1.0)
    with pytest.raises(ValueError, match="split"):
        evaluate_seq2seq(model, data, split="train")


def test_scores_table():
    def fake(em):
        return Seq2SeqScores(em, em, [em], em, 0.1, 1.1, 0.9, 0.05)
    scores = {("a", 0): fake(0.5), ("a", 1): fake(0.7), ("b", 0): fake(0.2), ("b", 1): fake(0.2)}
    table = scores_table(scores, ["a", "b"], [0, 1], fields=("exact_match", "nll"))
    lines = table.splitlines()
    assert lines[0].split() == ["a", "b"]
    assert lines[1].split()[:4] == ["exact_match", "0.600", "±", "0.141"]
    assert "0.200 ± 0.000" in lines[1] and "over 2 seeds" in lines[-1]
