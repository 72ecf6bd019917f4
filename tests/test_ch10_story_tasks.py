"""The story-domain fine-tuning tasks of chapter 10 (qkvcourse.data.bert_story_tasks) and the
trimmed batches of BERTPretrainingData."""
from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

import qkvcourse as qc
from qkvcourse.data.bert_pretraining import BERTPretrainingData, bert_vocab
from qkvcourse.data import load_offline_corpus, paragraphs
from qkvcourse.data.bert_story_tasks import (STORY_PAIR_LABELS, make_story_pair_task,
                                             make_story_span_task, story_tokenize)
from qkvcourse.data.corpus import _OBJECTS
from qkvcourse.data.vocab import Vocab


@pytest.fixture(scope="module")
def vocab():
    text = load_offline_corpus("stories", num_chars=200_000)
    return bert_vocab([story_tokenize(s) for p in paragraphs(text) for s in p])


def test_story_tokenize():
    assert story_tokenize('Tom said: "Look!"') == ["tom", "said", ":", '"', "look", "!", '"']


def test_pair_task_is_balanced_disjoint_in_vocab_and_deterministic(vocab):
    task = make_story_pair_task(vocab, num_train=101, num_val=20, num_test=50, seed=3)
    assert (len(task.train), len(task.val), len(task.test)) == (101, 20, 50)
    assert task.label_names == list(STORY_PAIR_LABELS) and task.num_classes == 2
    for split in (task.train, task.val, task.test):
        counts = Counter(e.label for e in split)
        assert abs(counts[0] - counts[1]) <= 1
    keys = [(tuple(e.tokens_a), tuple(e.tokens_b)) for e in task.train + task.val + task.test]
    assert len(set(keys)) == len(keys)
    assert all(t in vocab for e in task.train for t in e.tokens_a + e.tokens_b)
    again = make_story_pair_task(vocab, num_train=101, num_val=20, num_test=50, seed=3)
    assert again.train == task.train and again.test == task.test
    other = make_story_pair_task(vocab, num_train=101, num_val=20, num_test=50, seed=4)
    assert other.train != task.train


def test_pair_label_says_whether_b_talks_about_the_object_of_a(vocab):
    # the short name of each object (map, key, box, ...) or, for the bottle, its message
    clue = {story_tokenize(thing)[-1] if short != "bottle" else "inside":
            "message" if short == "bottle" else short for thing, short, _ in _OBJECTS}
    task = make_story_pair_task(vocab, num_train=200, num_val=0, num_test=0, seed=0)
    for e in task.train:
        found = e.tokens_a.index("found")
        thing_last = next(t for t in e.tokens_a[found:] if t in clue)
        fits = clue[thing_last] in e.tokens_b
        assert fits == (e.label == 0), (e.tokens_a, e.tokens_b, e.label)


@pytest.mark.parametrize("hard", [False, True])
def test_span_task_answers_are_right_and_fit_the_kind(vocab, hard):
    task = make_story_span_task(vocab, num_train=200, num_val=10, num_test=50, seed=1,
                                same_kind_distractor=hard)
    names = 0
    for e in task.train + task.test:
        assert 0 <= e.answer_start <= e.answer_end < len(e.passage)
        assert all(t in vocab for t in e.question + e.passage)
        name = next(t for t in e.question if t not in
                    {"what", "was", "it", "that", "loved", "afraid", "of", "had", "found",
                     "where", "when", "?"})
        sentence_start = max([i + 1 for i, t in enumerate(e.passage[:e.answer_start])
                              if t == "."], default=0)
        sentence_end = e.passage.index(".", e.answer_end)
        assert name in e.passage[sentence_start:sentence_end]  # the answer is about them
        people = {t for i, t in enumerate(e.passage) if i + 1 < len(e.passage)
                  and e.passage[i + 1] in ("loved", "found")}
        names += len(people)
        assert len(people) == (2 if hard else 1)
    keys = [(tuple(e.question), tuple(e.passage)) for e in task.train + task.val + task.test]
    assert len(set(keys)) == len(keys)
    T = task.max_tokens() + 3
    assert T <= 64  # fits the chapter's pretrained positions
    inputs = qc.bert_span_inputs(task.train, vocab, T)
    assert inputs[0].shape == (200, T)


def test_story_tasks_check_their_arguments(vocab):
    with pytest.raises(TypeError, match="Vocab"):
        make_story_pair_task(["a"], num_train=2)
    with pytest.raises(ValueError, match="num_train"):
        make_story_span_task(vocab, num_train=-1)
    with pytest.raises(ValueError, match="not in vocab"):
        make_story_pair_task(Vocab([["the"]], reserved_tokens=["<cls>", "<sep>"]), num_train=2)


def test_pretraining_batches_are_trimmed_to_their_longest_example():
    rng = random.Random(0)
    words = [f"w{i}" for i in range(30)]
    paragraphs_ = [[[rng.choice(words) for _ in range(rng.randint(2, 6))]
                    for _ in range(4)] for _ in range(40)]
    data = BERTPretrainingData(paragraphs_, max_len=32, seed=0)
    trimmed = list(data.dataloader(8, shuffle=False))
    full = list(data.dataloader(8, shuffle=False, trim=False))
    for a, b in zip(trimmed, full):
        T = int(b.valid_lens.max())
        assert a.tokens.shape == (b.tokens.shape[0], T) and b.tokens.shape[1] == 32
        assert torch.equal(a.tokens, b.tokens[:, :T]) and torch.equal(a.segments, b.segments[:, :T])
        assert bool((b.tokens[:, T:] == data.vocab.pad_id).all())
        for name in ("valid_lens", "pred_positions", "mlm_weights", "mlm_labels", "nsp_labels"):
            assert torch.equal(getattr(a, name), getattr(b, name))
    model = qc.make_bert(qc.BERTConfig(len(data.vocab), num_hiddens=16, ffn_num_hiddens=32,
                                       num_heads=2, num_blks=1, dropout=0.0, max_len=32)).eval()
    with torch.no_grad():
        loss_trimmed = qc.bert_batch_loss(model, trimmed[0])
        loss_full = qc.bert_batch_loss(model, full[0])
    torch.testing.assert_close(loss_trimmed, loss_full, rtol=1e-5, atol=1e-5)
