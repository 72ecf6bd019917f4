"""Chapter 4's copy task (qkvcourse.data.sequences) and training harness (train_seq2seq,
translate_sources): determinism, distinct splits, the batch format, metrics, a tiny run."""
from __future__ import annotations

import pytest
import torch

import qkvcourse as qc
from qkvcourse.data.sequences import CopyTaskData, random_string_pairs
from qkvcourse.metrics import token_accuracy
from qkvcourse.seq2seq import train_seq2seq, translate_sources

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pairs_are_deterministic_distinct_and_copies():
    a = random_string_pairs(200, length=6, seed=3)
    assert a == random_string_pairs(200, length=6, seed=3)
    assert a != random_string_pairs(200, length=6, seed=4)
    assert len({s for s, _ in a}) == 200
    assert all(s == t and len(s) == 6 and set(s) <= set("abcdefghij") for s, t in a)
    rev = random_string_pairs(50, length=7, seed=0, alphabet_size=3, reverse=True)
    assert all(t == s[::-1] for s, t in rev) and set("".join(s for s, _ in rev)) <= set("abc")


def test_pairs_bad_input():
    with pytest.raises(ValueError, match="length"):
        random_string_pairs(3, length=0)
    with pytest.raises(ValueError, match="alphabet_size"):
        random_string_pairs(3, length=2, alphabet_size=27)
    with pytest.raises(ValueError, match="num_examples"):
        random_string_pairs(10, length=1, alphabet_size=3)  # only 3 distinct strings exist


def test_copy_data_splits_and_batches():
    data = CopyTaskData(length=8, num_train=100, num_val=20, num_test=30, seed=1, batch_size=16)
    sources = [s for split in (data.train_pairs, data.val_pairs, data.test_pairs) for s, _ in split]
    assert len(sources) == len(set(sources)) == 150  # no string shared between splits
    batch = next(iter(data.train_dataloader()))
    assert batch.src.shape == (16, 9) and batch.tgt_in.shape == (16, 9)  # 8 letters + <eos>/<bos>
    assert (batch.src_valid_lens == 9).all()
    assert data.decode_targets(data.test_tensors.tgt_out) == [t for _, t in data.test_pairs]
    assert "copy" in repr(data) and "length=8" in repr(data)
    with pytest.raises(ValueError, match="num_train"):
        CopyTaskData(length=3, num_train=-1)


def test_train_seq2seq_learns_to_copy_short_strings_and_repeats():
    def run():
        data = CopyTaskData(length=4, num_train=1600, num_val=0, num_test=100, seed=0,
                            batch_size=32, alphabet_size=8)
        qc.seed_everything(0)
        config = qc.RNNSeq2SeqConfig(embed_size=16, num_hiddens=32, num_layers=1, dropout=0.0)
        model = qc.make_rnn_seq2seq(len(data.src_vocab), len(data.tgt_vocab), True, config)
        trainer = train_seq2seq(model, data, num_epochs=2, lr=1e-2, validate=False)
        sources, targets = zip(*data.test_pairs)
        return trainer, translate_sources(model, data, sources), list(targets)

    trainer, predictions, targets = run()
    assert trainer.step == 100  # 2 epochs of 50 batches
    assert token_accuracy(predictions, targets) > 0.6  # chance is 0.125
    assert run()[1] == predictions  # the same seed gives the same run


def test_train_seq2seq_respects_max_steps():
    data = CopyTaskData(length=2, num_train=64, num_val=8, num_test=8, seed=0, batch_size=8)
    model = qc.make_rnn_seq2seq(len(data.src_vocab), len(data.tgt_vocab), False,
                                qc.RNNSeq2SeqConfig(embed_size=4, num_hiddens=8, num_layers=1))
    trainer = train_seq2seq(model, data, num_epochs=3, max_steps=5)
    assert trainer.step == 5
    out = translate_sources(model, data, ["ab", "ba"], beam_size=2)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
