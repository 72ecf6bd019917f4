"""The generated fine-tuning tasks (qkvcourse.data.tasks): determinism, sizes, balance,
disjoint splits, the vocabulary, and the labels and answers checked against independent
readings of the text.

The classification labels are checked with a model of the world the sentences describe:
objects placed on a small grid, "north of" meaning a larger y, "east of" a larger x. A
hypothesis is entailed when it holds in every placement where the premise holds,
contradicted when it holds in none, unrelated otherwise. The span answers are checked by
re-reading the passage's sentences: the answer's sentence must be the fact the question
asks about (its person and its kind), found by matching words, not by the generator's
templates."""
from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest

from qkvcourse.data.tasks import (CLASSIFICATION_LABELS, FINETUNE_RESERVED_TOKENS,
                                  ClassificationExample, SpanExample, make_classification_task,
                                  make_span_task, task_vocab)
from qkvcourse.data.vocab import Vocab


def raises(exc, *fragments):
    """``pytest.raises`` requiring every fragment (literal text) somewhere in the message."""
    pattern = "(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)
    return pytest.raises(exc, match=pattern)


@pytest.fixture(scope="module")
def cls_task():
    return make_classification_task(seed=0)


@pytest.fixture(scope="module")
def span_task():
    return make_span_task(seed=0)


# -- classification --------------------------------------------------------------------------

def parse(sentence):
    """``the c1 s1 is D of the c2 s2`` -> ((c1, s1), D, (c2, s2)), read without the generator."""
    assert len(sentence) == 9, sentence
    the1, c1, s1, is_, direction, of, the2, c2, s2 = sentence
    assert (the1, is_, of, the2) == ("the", "is", "of", "the"), sentence
    return (c1, s1), direction, (c2, s2)


# direction -> (axis, sign): "a north of b" means y_a > y_b
DIRECTIONS = {"north": ("y", 1), "south": ("y", -1), "east": ("x", 1), "west": ("x", -1)}


def holds(world, statement):
    a, direction, b = statement
    axis, sign = DIRECTIONS[direction]
    k = 0 if axis == "x" else 1
    return sign * (world[a][k] - world[b][k]) > 0


def reference_label(example):
    """Entailed / contradicted / unrelated by enumerating placements on a 3 x 3 grid."""
    premise, hypothesis = parse(example.tokens_a), parse(example.tokens_b)
    objects = sorted({premise[0], premise[2], hypothesis[0], hypothesis[2]})
    cells = list(itertools.product(range(3), repeat=2))
    verdicts = set()
    for placement in itertools.product(cells, repeat=len(objects)):
        world = dict(zip(objects, placement))
        if holds(world, premise):
            verdicts.add(holds(world, hypothesis))
    assert verdicts, "a premise that no placement satisfies"
    if verdicts == {True}:
        return CLASSIFICATION_LABELS.index("entailed")
    if verdicts == {False}:
        return CLASSIFICATION_LABELS.index("contradicted")
    return CLASSIFICATION_LABELS.index("unrelated")


@pytest.mark.parametrize("hard", [False, True])
def test_classification_labels_follow_from_the_sentences(hard):
    task = make_classification_task(150, 60, 60, seed=4, hard=hard)
    kinds = Counter()
    for example in task.train + task.val + task.test:
        assert example.label == reference_label(example), example
        premise, hypothesis = parse(example.tokens_a), parse(example.tokens_b)
        kinds[example.label, hypothesis[0] == premise[0]] += 1
    # the easy task always swaps the objects; the hard one keeps the order for some
    # entailed and contradicted examples
    kept = kinds[0, True] + kinds[1, True]
    assert (kept > 20) if hard else (kept == 0)


def test_classification_sizes_labels_and_vocab(cls_task):
    task = cls_task
    assert (len(task.train), len(task.val), len(task.test)) == (2000, 500, 500)
    assert task.label_names == ["entailed", "contradicted", "unrelated"]
    assert task.num_classes == 3
    for split in (task.train, task.val, task.test):
        counts = Counter(e.label for e in split)
        assert sorted(counts) == [0, 1, 2]
        assert max(counts.values()) - min(counts.values()) <= 1  # balanced
        assert all(isinstance(e, ClassificationExample) and e.tokens_b is not None
                   for e in split)
    # the vocabulary: specials, then the reserved tokens at ids 4..9, then train words
    assert task.vocab.idx_to_token[:10] == ["<pad>", "<bos>", "<eos>", "<unk>",
                                            *FINETUNE_RESERVED_TOKENS]
    train_words = {t for e in task.train for t in e.tokens_a + e.tokens_b}
    assert set(task.vocab.idx_to_token[10:]) == train_words
    for e in task.val + task.test:  # no unknown word in the held-out splits
        assert task.vocab.unk_id not in task.vocab[e.tokens_a + e.tokens_b]
    assert task.max_tokens() == 18


def test_classification_both_unrelated_kinds_occur(cls_task):
    other_axis = replaced = 0
    for e in cls_task.train:
        if e.label != 2:
            continue
        premise, hypothesis = parse(e.tokens_a), parse(e.tokens_b)
        same_objects = {premise[0], premise[2]} == {hypothesis[0], hypothesis[2]}
        other_axis += same_objects
        replaced += not same_objects
    assert other_axis > 250 and replaced > 250


def test_classification_splits_hold_out_object_pairs(cls_task):
    def pairs(split):
        return {frozenset((parse(e.tokens_a)[0], parse(e.tokens_a)[2])) for e in split}

    train, val, test = pairs(cls_task.train), pairs(cls_task.val), pairs(cls_task.test)
    assert not (train & val) and not (train & test) and not (val & test)
    # every object of a test premise was seen in training, only not with its partner
    train_objects = set().union(*train)
    assert set().union(*test) <= train_objects
    premises = {tuple(e.tokens_a) for e in cls_task.train}
    assert not premises & {tuple(e.tokens_a) for e in cls_task.test}


def test_classification_is_deterministic_per_seed():
    a = make_classification_task(300, 50, 50, seed=7)
    b = make_classification_task(300, 50, 50, seed=7)
    c = make_classification_task(300, 50, 50, seed=8)
    assert (a.train, a.val, a.test) == (b.train, b.val, b.test)
    assert a.vocab.idx_to_token == b.vocab.idx_to_token
    assert a.train != c.train and a.test != c.test
    empty = make_classification_task(0, 0, 0)
    assert (empty.train, empty.val, empty.test) == ([], [], [])


# -- span extraction -------------------------------------------------------------------------

def sentences(passage):
    """The passage's sentences with the index of their first token."""
    out, start = [], 0
    for i, token in enumerate(passage):
        if token == ".":
            out.append((start, passage[start:i + 1]))
            start = i + 1
    assert start == len(passage), "a passage ends with a full stop"
    return out


# a question in its own words -> the kind of fact it asks for
OWN_WORDS = {("where", "does", "live"): "city", ("what", "does", "do"): "job",
             ("how", "old", "is"): "age", ("what", "pet", "does", "have"): "pet",
             ("what", "does", "like", "doing"): "hobby"}


def read_question(question):
    """(kind, person) of a question, read from its words."""
    assert question[-1] == "?", question
    words = question[:-1]
    if words[:3] == ["what", "is", "the"] and words[4] == "of" and len(words) == 6:
        return words[3], words[5]
    for frame, kind in OWN_WORDS.items():
        rest = [w for w in words if w not in frame]
        if len(rest) == 1 and [w for w in words if w in frame] == list(frame):
            return kind, rest[0]
    raise AssertionError(f"unknown question {question}")


def test_span_answers_are_the_asked_fact(span_task):
    forms = Counter()
    for example in span_task.train[:500] + span_task.test:
        assert isinstance(example, SpanExample)
        kind, person = read_question(example.question)
        forms[example.question[2] == "the"] += 1
        answer = example.passage[example.answer_start:example.answer_end + 1]
        assert answer == example.answer and 1 <= len(answer) <= 3
        assert "." not in answer and person not in answer
        # exactly one sentence states this person's fact of this kind: the answer's
        matches = [(start, sentence) for start, sentence in sentences(example.passage)
                   if sentence[:5] == ["the", kind, "of", person, "is"]]
        assert len(matches) == 1, example
        start, sentence = matches[0]
        assert (example.answer_start, example.answer_end) == (start + 5, start + len(sentence) - 2)
        # a distractor: a fact of the same kind about someone else
        others = [s for _, s in sentences(example.passage) if s[1] == kind and s[3] != person]
        assert others, example
    assert min(forms.values()) > 200  # both ways of asking


def test_span_passages_sizes_and_vocab(span_task):
    task = span_task
    assert (len(task.train), len(task.val), len(task.test)) == (2000, 500, 500)
    lengths = Counter(len(e.answer) for e in task.train)
    assert set(lengths) == {1, 2, 3}
    facts = Counter(len(sentences(e.passage)) for e in task.train)
    assert set(facts) == {4, 5, 6}
    assert task.vocab.idx_to_token[4:10] == list(FINETUNE_RESERVED_TOKENS)
    for e in task.val + task.test:
        assert task.vocab.unk_id not in task.vocab[e.question + e.passage]
    assert 20 < task.max_tokens() <= 60
    # the answer starts at every kind of place, not always in the same sentence
    first_sentence = sum(e.answer_start < sentences(e.passage)[1][0] for e in task.train)
    assert 200 < first_sentence < 800


def test_span_splits_are_disjoint_and_deterministic():
    a = make_span_task(400, 100, 100, seed=3)
    b = make_span_task(400, 100, 100, seed=3)
    c = make_span_task(400, 100, 100, seed=4)
    assert (a.train, a.val, a.test) == (b.train, b.val, b.test)
    assert a.train != c.train
    keys = [{(tuple(e.question), tuple(e.passage)) for e in split}
            for split in (a.train, a.val, a.test)]
    assert sum(map(len, keys)) == 600  # no example twice, in one split or two
    short = make_span_task(50, 5, 5, seed=0, num_people=(2, 2), num_facts=(2, 3))
    assert {len(sentences(e.passage)) for e in short.train} == {2, 3}
    easy = make_span_task(50, 5, 5, seed=0, num_people=(1, 1), num_facts=(3, 5),
                          same_kind_distractor=False)
    for e in easy.train:
        kind, person = read_question(e.question)
        assert [s[1] for _, s in sentences(e.passage)].count(kind) == 1
        assert {s[3] for _, s in sentences(e.passage)} == {person}


def test_task_vocab():
    vocab = task_vocab([["a", "b"], ["b"]])
    assert isinstance(vocab, Vocab)
    assert vocab.idx_to_token == ["<pad>", "<bos>", "<eos>", "<unk>", *FINETUNE_RESERVED_TOKENS,
                                  "b", "a"]


def test_bad_arguments():
    with raises(ValueError, "num_train", "-1"):
        make_classification_task(num_train=-1)
    with raises(ValueError, "num_val", "2.5"):
        make_span_task(num_val=2.5)
    with raises(TypeError, "seed", "str"):
        make_classification_task(seed="0")
    with raises(ValueError, "num_people", "(1, 2)"):
        make_span_task(10, 1, 1, num_people=(1, 2))
    with raises(ValueError, "num_facts", "(5, 4)"):
        make_span_task(10, 1, 1, num_facts=(5, 4))
    with raises(ValueError, "num_facts", "(2, 6)", "<= 5"):
        make_span_task(10, 1, 1, num_people=(1, 1), num_facts=(2, 6), same_kind_distractor=False)
