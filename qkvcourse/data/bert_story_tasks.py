"""Fine-tuning tasks in the words of the offline stories (chapter 10, BERT).

A model pretrained on :func:`~qkvcourse.data.corpus.generate_stories` knows the stories'
words, names and sentence patterns. To measure what that knowledge is worth, the tasks
of this module are written with the same grammar tables (names, found objects, places,
loves and fears), so that every token is in the pretraining vocabulary: only the
*labels* are new. They return the task classes of :mod:`qkvcourse.data.tasks`
(:class:`~qkvcourse.data.tasks.ClassificationTask`,
:class:`~qkvcourse.data.tasks.SpanTask`), so the fine-tuning inputs of
:mod:`qkvcourse.finetune` take them unchanged. The vocabulary is the caller's (the
pretraining one); the tokens are those of :func:`story_tokenize`, lower-case words and
single punctuation marks.

Sentence-pair classification, :func:`make_story_pair_task`
-----------------------------------------------------------
Does the second sentence go with the first? Sentence A tells that the hero found an
object, sentence B is what the stories say about an object next::

    one foggy morning , tom found a golden key in the garden .
    on the key was a little note : " bring me to the old lighthouse . "     fits
    the map showed the way to the old lighthouse .                          does not fit

The label (``fits`` / ``does not fit``, balanced) depends only on whether the object
of A is the object B talks about, which the stories name with different words
(``a bottle with a message inside`` ... ``the message said``). The names, times,
places and destinations vary freely. The splits share no pair of sentences.

Span extraction, :func:`make_story_span_task`
----------------------------------------------
SQuAD-like questions on the stories' sentences about what a character loves and fears
and what they found::

    passage:  tom loved building boats , but he was afraid of spiders . one rainy
              afternoon , tom found an old map behind the old barn .
    question: what was tom afraid of ?
    answer:   spiders

Questions, in words of the stories: ``what was it that X loved ?``, ``what was X afraid
of ?``, ``what had X found ?``, ``where had X found it ?``, ``when had X found it ?``. By
default (``same_kind_distractor=False``) the passage holds the character's two sentences
and the kind of question alone locates the answer. With ``same_kind_distractor=True`` it
holds the same kind of sentence about *two* characters (two ``loved ... afraid of``
sentences, or two ``found`` sentences), so the model must also match the name, as in
the hard variant of :func:`~qkvcourse.data.tasks.make_span_task`.
"""
from __future__ import annotations

import random
import re

from .corpus import _DESTINATIONS, _FEARS, _FIND_PLACES, _LOVES, _NAMES, _OBJECTS, _TIMES, _cap
from .._validate import check_flag, check_seed
from .tasks import (ClassificationExample, ClassificationTask, SpanExample, SpanTask,
                    _check_sizes)
from .vocab import Vocab

__all__ = ["STORY_PAIR_LABELS", "STORY_QUESTIONS", "make_story_pair_task",
           "make_story_span_task", "story_tokenize"]

STORY_PAIR_LABELS = ("fits", "does not fit")
FITS, DOES_NOT_FIT = 0, 1
STORY_QUESTIONS = ("love", "fear", "thing", "place", "time")  # the kinds of question
_QUESTION_WORDS = {"love": "what was it that {} loved ?", "fear": "what was {} afraid of ?",
                   "thing": "what had {} found ?", "place": "where had {} found it ?",
                   "time": "when had {} found it ?"}  # only words of the stories


def story_tokenize(sentence: str) -> list[str]:
    """Lower-case words and single punctuation marks: ``"Tom found X."`` -> ``[tom, found,
    x, .]`` (the tokens of chapter 10)."""
    return re.findall(r"[a-z]+|[^\sa-z]", sentence.lower())


def _check_vocab(vocab) -> None:
    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab must be a qkvcourse Vocab, got {type(vocab).__name__}")


def _check_in_vocab(examples, vocab: Vocab, fields) -> None:
    for e in examples:
        for f in fields:
            missing = [t for t in getattr(e, f) if t not in vocab]
            if missing:
                raise ValueError(f"the task uses {missing[0]!r}, not in vocab: build the "
                                 "vocabulary from the stories (load_offline_corpus('stories'))")


def _distinct_splits(rng: random.Random, make, key, sizes, labels=None) -> list[list]:
    """Splits of ``sizes`` examples ``make(rng, i)``, no example (by ``key``) twice."""
    seen: set = set()
    splits = []
    for s, n in enumerate(sizes):
        split: list = []
        while len(split) < n:
            example = make(rng, None if labels is None else labels[s][len(split)])
            k = key(example)
            if k not in seen:
                seen.add(k)
                split.append(example)
        splits.append(split)
    return splits


# -- sentence pairs: does B go with A? --------------------------------------------------------

def _pair_example(rng: random.Random, label: int) -> ClassificationExample:
    name, (pron, _, _) = rng.choice(_NAMES)
    obj = rng.randrange(len(_OBJECTS))
    a = f"{rng.choice(_TIMES)}, {name} found {_OBJECTS[obj][0]} {rng.choice(_FIND_PLACES)}."
    if label == DOES_NOT_FIT:
        obj = rng.choice([i for i in range(len(_OBJECTS)) if i != obj])
    b = _OBJECTS[obj][2].format(dest=rng.choice(_DESTINATIONS), name=name, Pron=_cap(pron))
    return ClassificationExample(story_tokenize(a), story_tokenize(b), label)


def make_story_pair_task(vocab: Vocab, num_train: int = 1024, num_val: int = 200,
                         num_test: int = 500, seed: int = 0) -> ClassificationTask:
    """The pair task of the module docstring: does sentence B go with sentence A?

    Args:
        vocab: the vocabulary of the pretraining stories (every token must be in it).
        num_train, num_val, num_test: examples per split; the labels are balanced (their
            counts differ by at most one) and no pair is in two splits.
        seed: the seed of the generator.

    Returns:
        A :class:`~qkvcourse.data.tasks.ClassificationTask` with ``label_names`` ``["fits",
        "does not fit"]`` and ``vocab``.
    """
    _check_vocab(vocab)
    _check_sizes(num_train=num_train, num_val=num_val, num_test=num_test)
    check_seed("seed", seed)
    rng = random.Random(seed)
    sizes = (num_train, num_val, num_test)
    labels = []
    for n in sizes:
        split_labels = [i % 2 for i in range(n)]
        rng.shuffle(split_labels)
        labels.append(split_labels)
    train, val, test = _distinct_splits(rng, _pair_example,
                                        lambda e: (tuple(e.tokens_a), tuple(e.tokens_b)),
                                        sizes, labels)
    _check_in_vocab(train + val + test, vocab, ("tokens_a", "tokens_b"))
    return ClassificationTask(train, val, test, list(STORY_PAIR_LABELS), vocab, seed)


# -- span extraction --------------------------------------------------------------------------

def _character(rng: random.Random, name: str, pron: str) -> dict:
    """The two sentences about one character, as token lists, and the answer spans:
    ``spans[kind] = (sentence index, start, end)``, inclusive, inside the sentence."""
    love, fear = story_tokenize(rng.choice(_LOVES)), story_tokenize(rng.choice(_FEARS))
    head = story_tokenize(f"{name} loved")
    s1 = head + love + story_tokenize(f", but {pron} was afraid of") + fear + ["."]
    time, thing = story_tokenize(rng.choice(_TIMES)), story_tokenize(rng.choice(_OBJECTS)[0])
    pre = time + story_tokenize(f", {name} found")
    s2 = pre + thing + story_tokenize(rng.choice(_FIND_PLACES)) + ["."]
    spans = {
        "love": (0, len(head), len(head) + len(love) - 1),
        "fear": (0, len(s1) - 1 - len(fear), len(s1) - 2),
        "time": (1, 0, len(time) - 1),
        "thing": (1, len(pre), len(pre) + len(thing) - 1),
        "place": (1, len(pre) + len(thing), len(s2) - 2),
    }
    return {"sentences": (s1, s2), "spans": spans}


def _span_example(rng: random.Random, same_kind_distractor: bool) -> SpanExample:
    (name, (pron, _, _)), (other, (other_pron, _, _)) = rng.sample(_NAMES, 2)
    kind = rng.choice(STORY_QUESTIONS)
    asked = _character(rng, name, pron)
    which, start, end = asked["spans"][kind]
    if same_kind_distractor:  # the same kind of sentence about someone else
        parts = [(asked["sentences"][which], True),
                 (_character(rng, other, other_pron)["sentences"][which], False)]
    else:  # the character's two sentences: the kind of question locates the answer
        parts = [(s, i == which) for i, s in enumerate(asked["sentences"])]
    rng.shuffle(parts)
    passage: list[str] = []
    for sentence, holds_answer in parts:
        if holds_answer:
            answer_start, answer_end = start + len(passage), end + len(passage)
        passage += sentence
    question = story_tokenize(_QUESTION_WORDS[kind].format(name))
    return SpanExample(question, passage, answer_start, answer_end)


def make_story_span_task(vocab: Vocab, num_train: int = 1024, num_val: int = 200,
                         num_test: int = 500, seed: int = 0, *,
                         same_kind_distractor: bool = False) -> SpanTask:
    """The span task of the module docstring, deterministic from ``seed``.

    Args:
        vocab: the vocabulary of the pretraining stories (every token must be in it).
        num_train, num_val, num_test: examples per split; no example is in two splits.
        seed: the seed of the generator.
        same_kind_distractor: the passage holds the same kind of sentence about two
            characters, so the name in the question must be matched (the hard variant);
            by default it holds the asked character's two sentences.

    Returns:
        A :class:`~qkvcourse.data.tasks.SpanTask` with ``vocab``.
    """
    _check_vocab(vocab)
    _check_sizes(num_train=num_train, num_val=num_val, num_test=num_test)
    check_seed("seed", seed)
    check_flag("same_kind_distractor", same_kind_distractor)
    rng = random.Random(seed)
    train, val, test = _distinct_splits(
        rng, lambda r, _: _span_example(r, same_kind_distractor),
        lambda e: (tuple(e.question), tuple(e.passage)), (num_train, num_val, num_test))
    _check_in_vocab(train + val + test, vocab, ("question", "passage"))
    return SpanTask(train, val, test, vocab, seed)
