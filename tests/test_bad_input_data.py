"""Bad input to the data builders (qkvcourse.data, qkvcourse.distributed): each is refused at
once, with an error that names the argument and the value received."""
import math
import random

import pytest
import torch
from helpers import raises

import qkvcourse as qc
from qkvcourse.data import (BERTPretrainingData, BPETokenizer, CharTokenizer, CopyTaskData,
                            SequenceTaskData, ShapeCaptionData, Vocab, bert_vocab, draw_shapes,
                            generate_date_pairs, make_classification_task, make_span_task,
                            mask_tokens, next_sentence_pairs, pad_batch, paragraphs,
                            random_string_pairs, train_val_split)
from qkvcourse.distributed import distributed_loader

SMALL = dict(num_train=4, num_val=1, num_test=1)
CORPUS = [[["a", "b"], ["c", "d"]], [["e", "f"], ["g"]]]


# 1. sizes of the translation data sets are checked when they are built -----------------------

@pytest.mark.parametrize("kwargs, exc, fragments", [
    (dict(num_train=0), ValueError, ("num_train", "got 0")),
    (dict(num_train=10.5), ValueError, ("num_train", "10.5")),
    (dict(num_train=True), ValueError, ("num_train", "True")),
    (dict(num_val=1.5), ValueError, ("num_val", "1.5")),
    (dict(num_test="3"), ValueError, ("num_test", "'3'")),
    (dict(batch_size=2.5), ValueError, ("batch_size", "2.5")),
    (dict(batch_size=False), ValueError, ("batch_size", "False")),
    (dict(styles=["{d}/{m}/{yyyy}"]), TypeError, ("styles", "DateStyle")),
])
def test_date_translation_sizes(kwargs, exc, fragments):
    with raises(exc, *fragments):
        qc.DateTranslationData(**{"num_train": 10, "num_val": 1, "num_test": 1, **kwargs})


@pytest.mark.parametrize("build, fragments", [
    (lambda: CopyTaskData(length=3, num_train=0), ("num_train", "got 0")),
    (lambda: CopyTaskData(length=3, batch_size=1.5, **SMALL), ("batch_size", "1.5")),
    (lambda: SequenceTaskData(num_train=2.0, num_val=0, num_test=0), ("num_train", "2.0")),
    (lambda: SequenceTaskData(min_len=2.5, num_train=2), ("min_len", "2.5")),
    (lambda: SequenceTaskData(num_train=2, batch_size=True), ("batch_size", "True")),
    (lambda: ShapeCaptionData(num_train=0, num_test=1), ("num_train", "got 0")),
    (lambda: ShapeCaptionData(num_train=1, num_test=1, grid=4.0), ("grid", "4.0")),
    (lambda: draw_shapes([], noise=math.nan), ("noise", "nan")),
    (lambda: random_string_pairs(2.5, 3), ("num_examples", "2.5")),
    (lambda: generate_date_pairs(3.5), ("num_examples", "3.5")),
])
def test_other_data_set_sizes(build, fragments):
    with raises(ValueError, *fragments):
        build()


def test_copy_task_with_empty_val_and_test_still_builds():  # chapter 4 builds one
    data = CopyTaskData(length=10, num_train=3, num_val=0, num_test=0, seed=0)
    assert len(next(iter(data.train_dataloader()))[0]) == 3


# 2. BERT's pretraining data ---------------------------------------------------------------------

def test_bert_pretraining_refuses_a_corpus_that_gives_no_example():
    with raises(ValueError, "paragraphs", "no example", "at least 2 sentences"):
        BERTPretrainingData([[["a", "b"]], [["c", "d"]]], max_len=10)


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(max_len=10.5), ("max_len", "10.5")),
    (dict(max_len=True), ("max_len", "True")),
    (dict(mask_prob=math.nan), ("mask_prob", "nan")),
    (dict(mask_prob=math.inf), ("mask_prob", "inf")),
    (dict(mask_prob="0.15"), ("mask_prob", "'0.15'")),
    (dict(mask_prob=1.0), ("mask_prob", "(0, 1)", "got 1.0")),
    (dict(min_freq=1.5), ("min_freq", "1.5")),
])
def test_bert_pretraining_arguments(kwargs, fragments):
    with raises(ValueError, *fragments):
        BERTPretrainingData(CORPUS, **{"max_len": 10, **kwargs})


def test_bert_rng_must_be_a_random_source():
    vocab = bert_vocab([s for p in CORPUS for s in p])
    with raises(TypeError, "rng", "random.Random", "NoneType"):
        next_sentence_pairs(CORPUS, 10, rng=None)
    with raises(TypeError, "rng", "random.Random", "int"):
        mask_tokens(["<cls>", "a", "b"], vocab, rng=0)
    with raises(TypeError, "vocab", "list"):
        mask_tokens(["<cls>", "a"], ["a"], random.Random(0))
    with raises(TypeError, "tokens", "string"):
        mask_tokens("a b", vocab, random.Random(0))
    data = BERTPretrainingData(CORPUS, max_len=10)
    with raises(ValueError, "batch_size", "0.5"):
        data.dataloader(batch_size=0.5)
    with raises(TypeError, "shuffle", "'yes'"):
        data.dataloader(shuffle="yes")


# 3. distributed_loader --------------------------------------------------------------------------

def test_distributed_loader_refuses_an_empty_dataset():
    with raises(ValueError, "dataset", "empty"):
        distributed_loader(torch.utils.data.TensorDataset(torch.zeros(0)), 2)
    with raises(TypeError, "dataset", "length"):
        distributed_loader(iter([1, 2]), 2)
    with raises(TypeError, "drop_last", "1"):
        distributed_loader(list(range(4)), 2, drop_last=1)
    with raises(TypeError, "seed", "bool"):
        distributed_loader(list(range(4)), 2, seed=True)


# 4. pad_batch -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, exc, fragments", [
    (([[1]], 0.5), {}, ValueError, ("pad_id", "0.5")),
    (([[1]], "0"), {}, ValueError, ("pad_id", "'0'")),
    (([[1]], True), {}, ValueError, ("pad_id", "True")),
    (([[1], [2.0]], 0), {}, TypeError, ("sequences_of_ids[1]", "2.0")),
    (([[1]], 0), dict(max_len=2.5), ValueError, ("max_len", "2.5")),
    ((5, 0), {}, TypeError, ("sequences_of_ids", "int")),
])
def test_pad_batch(args, kwargs, exc, fragments):
    with raises(exc, *fragments):
        pad_batch(*args, **kwargs)


def test_pad_batch_pads_label_rows_with_a_negative_id():
    # Label rows padded with IGNORE_INDEX (-100), which the losses skip, are a valid use
    padded, lens = pad_batch([[1, -100], [3]], -100)
    assert padded.tolist() == [[1, -100], [3, -100]] and lens.tolist() == [2, 1]


# 5. vocabularies and tokenizers -----------------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, exc, fragments", [
    ((["a", "a"],), dict(min_freq=1.5), ValueError, ("min_freq", "1.5")),
    ((["a", "a"],), dict(min_freq=True), ValueError, ("min_freq", "True")),
    ((["a", "a"],), dict(min_freq="1"), ValueError, ("min_freq", "'1'")),
    ((5,), {}, TypeError, ("tokens_or_token_lists", "int")),
])
def test_vocab(args, kwargs, exc, fragments):
    with raises(exc, *fragments):
        Vocab(*args, **kwargs)


def test_vocab_flags():
    vocab = Vocab(["a"])
    with raises(TypeError, "add_eos", "1"):
        vocab.encode(["a"], add_eos=1)
    with raises(TypeError, "strip_special", "None"):
        vocab.decode([4], strip_special=None)


def test_char_tokenizer_unk_token_must_not_be_a_character():
    with raises(ValueError, "unk_token", "'a'"):
        CharTokenizer(list("abc"), unk_token="a")
    with raises(ValueError, "unk_token", "''"):
        CharTokenizer(list("abc"), unk_token="")


@pytest.mark.parametrize("merges, exc, fragments", [
    ([(1.0, 2.0)], TypeError, ("merges[0]", "1.0")),
    ([(True, False)], TypeError, ("merges[0]", "True")),
    ([(97, 98), ("a", "b")], TypeError, ("merges[1]", "'a'")),
    ([97], TypeError, ("merges[0]", "97")),
    (5, TypeError, ("merges", "int")),
])
def test_bpe_merges(merges, exc, fragments):
    with raises(exc, *fragments):
        BPETokenizer(merges=merges)


def test_bpe_encode_allow_special_is_a_flag():
    with raises(TypeError, "allow_special", "'no'"):
        BPETokenizer().encode("hi", allow_special="no")


# other flags and counts of qkvcourse.data -------------------------------------------------------

@pytest.mark.parametrize("build, fragments", [
    (lambda: make_classification_task(3, 3, 3, hard=1), ("hard", "1")),
    (lambda: make_span_task(3, 3, 3, same_kind_distractor="no"), ("same_kind_distractor",)),
    (lambda: paragraphs("A b. C d.", one_per_line=1), ("one_per_line", "1")),
    (lambda: train_val_split("abc\n\ndef", at_paragraph=None), ("at_paragraph", "None")),
    (lambda: qc.DateTranslationData(**SMALL).train_dataloader(shuffle=0), ("shuffle", "0")),
])
def test_flags(build, fragments):
    with raises(TypeError, *fragments):
        build()
