"""Generated fine-tuning tasks: sentence-pair classification and span extraction (chapters 9, 10).

Both tasks are generated from templates, deterministic from a seed, with no network and
no file. Tokens are lower-case words (and ``.``, ``?``), so a sentence is a list of
strings and the vocabulary is small (about 100 words). Each task comes with a
:class:`~qkvcourse.data.Vocab` built on its training tokens, which also reserves the
special tokens of both fine-tuning recipes:

====================  ======================================================================
token                 used by
====================  ======================================================================
``<cls>``, ``<sep>``  BERT (Devlin et al., 2019, section 3): ``<cls> a <sep> b <sep>``
``<mask>``            BERT's masked-LM pretraining
``<start>``           GPT (Radford et al., 2018, section 3.3): ``<start> a <delim> b <extract>``
``<delim>``           GPT: between the two texts
``<extract>``         GPT: the last token, whose final state feeds the classifier
====================  ======================================================================

Ids: 0 ``<pad>``, 1 ``<bos>``, 2 ``<eos>``, 3 ``<unk>`` (every Vocab), 4 ``<cls>``, 5 ``<sep>``,
6 ``<mask>`` (as in :func:`~qkvcourse.bert.bert_vocab`), 7 ``<start>``, 8 ``<delim>``,
9 ``<extract>``, then the words, most frequent first.

Sentence-pair classification (:func:`make_classification_task`)
----------------------------------------------------------------
A small natural-language-inference task about objects on a map. The first sentence
(the *premise*) places one object relative to another, the second (the *hypothesis*)
says something about the map; the label says whether the hypothesis follows::

    the red box is north of the blue ball  |  the blue ball is south of the red box   entailed
    the red box is north of the blue ball  |  the blue ball is north of the red box   contradicted
    the red box is north of the blue ball  |  the blue ball is east of the red box    unrelated
    the red box is north of the blue ball  |  the red cup is south of the red box     unrelated

An object is a colour and a shape (10 × 10 = 100 objects); the relations come in two
pairs of converses along two axes, ``north of`` / ``south of`` and ``east of`` / ``west
of``, so that every sentence has nine words. With premise ``o1 r o2`` the hypothesis
names the objects in the other order, ``o2 ... o1``:

- *entailed* (label 0): ``o2 r' o1``, r' the converse of r;
- *contradicted* (label 1): ``o2 r o1``;
- *unrelated* (label 2, neither follows nor contradicts): the same two objects along the
  other axis, or a hypothesis along the same axis in which one of the two objects is
  replaced by another one (a different colour, shape, or both: ``red cup`` for ``blue
  ball``).

No single part of the input decides the label: the hypothesis alone could have any
label, and an unrelated hypothesis can differ from an entailed one by one word. A model
must read both sentences and compare their relations and their objects.

With ``hard=True`` the hypothesis may also keep the premise's order: ``o1 r o2`` is then
entailed and ``o1 r' o2`` contradicted, so that only whether the objects are swapped
*and* whether the relation is converted, together (an exclusive or), tells entailed from
contradicted. Small models from scratch need many more steps for it (an exercise).

The labels are balanced (their counts differ by at most one in every split). The
*splits are disjoint in their premises*: the 4950 unordered pairs of distinct objects
are dealt, at random (seeded), to the three splits (70%, 15%, 15%), and a premise of a
split only ever relates a pair of objects from that split's share. A test premise
therefore relates two objects that were never seen together in training (each object
is, alone), so the test measures how well a model has learned the rule, not the pairs.

Span extraction (:func:`make_span_task`)
----------------------------------------
SQuAD-like reading comprehension (Rajpurkar et al., 2016): a passage of several facts
about two or three people, a question about one fact, and the answer, a span of one to
three tokens of the passage::

    passage:  the age of tom is forty two . the city of mira is oslo . the pet of mira is
              grey cat . the city of tom is new york . the hobby of mira is chess .
    question: where does tom live ?
    answer:   new york  (passage tokens 28..29)

Every fact reads ``the <kind> of <name> is <value> .``, with five kinds: ``city``,
``job``, ``age``, ``pet`` and ``hobby``. A question asks for one fact in one of two
ways, in the passage's words (``what is the city of tom ?``) or in its own (``where does
tom live ?``, ``what does tom do ?``, ``how old is tom ?``, ``what pet does tom have ?``,
``what does tom like doing ?``). A passage holds 4 to 6 facts in random order, at most
one per person and kind, and no two facts of a kind have the same value. At least one
other fact of the *same kind* about another person is always present, and usually other
facts about the same person, so a model must read both the name and the kind asked
for. The splits never share an example (a question with its passage).

The name-matching makes the full task much harder for a small model trained from
scratch than the kind alone: a 2-layer BERT finds the right kind within a few hundred
steps (exact match about 0.5 with two same-kind facts) and stays there for a long
time. ``same_kind_distractor=False`` gives the easier variant, learned in seconds.

Sizes: a classification example is 2 × 9 words, a span passage at most 54 tokens and a
question at most 7.

The words of these tasks (colours, shapes, cities, jobs) are mostly absent from the offline
stories. To measure what pretraining on the stories buys, chapter 10 uses tasks of the same
two kinds written in the stories' own words: :mod:`qkvcourse.data.bert_story_tasks`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

from .._validate import check_flag, check_int_pair, check_seed, check_sizes
from .bert_pretraining import BERT_RESERVED_TOKENS, CLS, MASK, SEP  # noqa: F401 (re-exported)
from .vocab import Vocab

__all__ = [
    "CLASSIFICATION_LABELS", "ClassificationExample", "ClassificationTask", "DELIM", "EXTRACT",
    "FINETUNE_RESERVED_TOKENS", "SpanExample", "SpanTask", "START", "make_classification_task",
    "make_span_task", "task_vocab",
]

START, DELIM, EXTRACT = "<start>", "<delim>", "<extract>"
# ids 4..9 of a task vocab: BERT's [CLS], [SEP], [MASK] (the ids bert_vocab gives them), then GPT's
FINETUNE_RESERVED_TOKENS = (*BERT_RESERVED_TOKENS, START, DELIM, EXTRACT)

ENTAILED, CONTRADICTED, UNRELATED = 0, 1, 2
CLASSIFICATION_LABELS = ("entailed", "contradicted", "unrelated")


def task_vocab(token_lists: Sequence[Sequence[str]], min_freq: int = 0) -> Vocab:
    """A :class:`~qkvcourse.data.Vocab` of ``token_lists`` with the fine-tuning tokens
    reserved: ``<cls>``, ``<sep>``, ``<mask>``, ``<start>``, ``<delim>``, ``<extract>``
    (ids 4 to 9)."""
    return Vocab(token_lists, min_freq=min_freq, reserved_tokens=list(FINETUNE_RESERVED_TOKENS))


def _check_sizes(**sizes: int) -> None:  # (also used by qkvcourse.data.bert_story_tasks)
    check_sizes(0, **sizes)  # a split may be empty


# ---------------------------------------------------------------------------------------------
# sentence-pair classification
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassificationExample:
    """One example: two token lists (the second may be None) and a label."""

    tokens_a: list[str]  # the premise
    tokens_b: list[str] | None  # the hypothesis, or None for a one-text task
    label: int  # an index into the task's label_names


@dataclass
class ClassificationTask:
    """The three splits of a classification task, its label names and its vocabulary."""

    train: list[ClassificationExample]
    val: list[ClassificationExample]
    test: list[ClassificationExample]
    label_names: list[str]
    vocab: Vocab
    seed: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def max_tokens(self) -> int:
        """The most words in one example (both texts), over the three splits."""
        return max((len(e.tokens_a) + len(e.tokens_b or ())
                    for e in self.train + self.val + self.test), default=0)

    def __repr__(self) -> str:
        return (f"ClassificationTask(train={len(self.train)}, val={len(self.val)}, "
                f"test={len(self.test)}, labels={self.label_names}, "
                f"vocab size {len(self.vocab)}, seed={self.seed})")


COLOURS = ("red", "blue", "green", "yellow", "black", "white", "purple", "orange", "grey", "pink")
SHAPES = ("box", "ball", "cup", "cone", "star", "ring", "book", "key", "vase", "shoe")
# two axes, each a pair of converse relations (r, r')
RELATION_AXES = ((("north", "of"), ("south", "of")),
                 (("east", "of"), ("west", "of")))
_SPLIT_FRACTIONS = (0.70, 0.15, 0.15)  # shares of the object pairs: train, val, test


def _sentence(o1: tuple[str, str], relation: tuple[str, ...], o2: tuple[str, str]) -> list[str]:
    return ["the", *o1, "is", *relation, "the", *o2]


def _other_object(rng: random.Random, avoid: set) -> tuple[str, str]:
    """An object not in ``avoid``: another colour, shape or both (a third each)."""
    while True:
        kind = rng.randrange(3)
        ref = rng.choice(sorted(avoid))
        colour = rng.choice(COLOURS) if kind != 1 else ref[0]
        shape = rng.choice(SHAPES) if kind != 0 else ref[1]
        if (colour, shape) not in avoid:
            return colour, shape


def _classification_example(rng: random.Random, pair: tuple, label: int, hard: bool
                            ) -> ClassificationExample:
    o1, o2 = pair if rng.random() < 0.5 else pair[::-1]
    axis = rng.randrange(len(RELATION_AXES))
    r, r_conv = RELATION_AXES[axis] if rng.random() < 0.5 else RELATION_AXES[axis][::-1]
    premise = _sentence(o1, r, o2)
    # the easy form swaps the objects, the hard one may also keep their order
    keep_order = hard and rng.random() < 0.5
    first, second = (o1, o2) if keep_order else (o2, o1)
    if label == ENTAILED:
        hypothesis = _sentence(first, r if keep_order else r_conv, second)
    elif label == CONTRADICTED:
        hypothesis = _sentence(first, r_conv if keep_order else r, second)
    elif rng.random() < 0.5:  # unrelated: the same objects along the other axis
        other = rng.choice([a for i, a in enumerate(RELATION_AXES) if i != axis])
        hypothesis = _sentence(first, rng.choice(other), second)
    else:  # unrelated: one object replaced, as if entailed or contradicted otherwise
        new = _other_object(rng, {o1, o2})
        if rng.random() < 0.5:
            first = new
        else:
            second = new
        hypothesis = _sentence(first, rng.choice((r, r_conv)), second)
    return ClassificationExample(premise, hypothesis, label)


def _balanced_labels(rng: random.Random, n: int, num_labels: int) -> list[int]:
    labels = [i % num_labels for i in range(n)]
    rng.shuffle(labels)
    return labels


def make_classification_task(num_train: int = 2000, num_val: int = 500, num_test: int = 500,
                             seed: int = 0, *, hard: bool = False) -> ClassificationTask:
    """The generated sentence-pair task of the module docstring (entailed / contradicted /
    unrelated), deterministic from ``seed``.

    Args:
        num_train, num_val, num_test: the number of examples of each split.
        seed: the seed of everything random (the split of the object pairs, the examples).
        hard: also state entailed and contradicted hypotheses with the objects in the
            premise's order (``o1 r o2`` and ``o1 r' o2``), so that the label depends on the
            order of the objects and on the relation together (an exclusive or). By
            default the hypothesis always names the objects in the swapped order, and the
            label follows from the relations and the objects' identities.

    Returns:
        A :class:`ClassificationTask`: ``train``, ``val``, ``test`` (lists of
        :class:`ClassificationExample`), ``label_names`` (``["entailed", "contradicted",
        "unrelated"]``) and ``vocab`` (built on the training tokens, with the fine-tuning
        tokens reserved, :func:`task_vocab`).
    """
    _check_sizes(num_train=num_train, num_val=num_val, num_test=num_test)
    check_seed("seed", seed)
    check_flag("hard", hard)
    rng = random.Random(seed)
    objects = [(c, s) for c in COLOURS for s in SHAPES]
    pairs = list(combinations(objects, 2))  # 4950 unordered pairs of distinct objects
    rng.shuffle(pairs)
    n_train = round(_SPLIT_FRACTIONS[0] * len(pairs))
    n_val = round(_SPLIT_FRACTIONS[1] * len(pairs))
    pools = (pairs[:n_train], pairs[n_train:n_train + n_val], pairs[n_train + n_val:])
    splits = []
    for pool, n in zip(pools, (num_train, num_val, num_test)):
        labels = _balanced_labels(rng, n, len(CLASSIFICATION_LABELS))
        splits.append([_classification_example(rng, rng.choice(pool), label, hard)
                       for label in labels])
    train, val, test = splits
    vocab = task_vocab([e.tokens_a + (e.tokens_b or []) for e in train])
    return ClassificationTask(train, val, test, list(CLASSIFICATION_LABELS), vocab, seed)


# ---------------------------------------------------------------------------------------------
# span extraction
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpanExample:
    """A question, a passage, and the answer: ``passage[answer_start:answer_end + 1]``
    (inclusive token indices, as in SQuAD's start and end positions)."""

    question: list[str]
    passage: list[str]
    answer_start: int
    answer_end: int

    @property
    def answer(self) -> list[str]:
        """The answer's tokens."""
        return self.passage[self.answer_start:self.answer_end + 1]


@dataclass
class SpanTask:
    """The three splits of a span-extraction task and its vocabulary."""

    train: list[SpanExample]
    val: list[SpanExample]
    test: list[SpanExample]
    vocab: Vocab
    seed: int = 0

    def max_tokens(self) -> int:
        """The most words in one example (question and passage), over the three splits."""
        return max((len(e.question) + len(e.passage) for e in self.train + self.val + self.test),
                   default=0)

    def __repr__(self) -> str:
        return (f"SpanTask(train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, "
                f"vocab size {len(self.vocab)}, seed={self.seed})")


NAMES = ("mira", "tom", "ana", "li", "omar", "sara", "ivan", "nora", "paul", "kim", "yuki",
         "ben", "eva", "raj", "lena", "hugo")
# the kinds of fact and their values, of one to three tokens
SPAN_VALUES = {
    "city": ("oslo", "paris", "lima", "cairo", "delhi", "rome", "new york", "buenos aires",
             "hong kong", "cape town", "rio de janeiro", "salt lake city"),
    "job": ("baker", "nurse", "teacher", "farmer", "pilot", "painter", "bus driver",
            "fire fighter", "web designer", "taxi driver", "deep sea diver",
            "brain surgeon"),
    "age": ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "twenty one",
            "thirty five", "forty two", "fifty eight", "sixty six", "seventy three"),
    "pet": ("cat", "dog", "parrot", "goat", "grey cat", "white rabbit", "old dog",
            "green parrot", "small brown horse", "spotted dog"),
    "hobby": ("chess", "painting", "running", "cooking", "rock climbing", "bird watching",
              "ice skating", "playing the piano", "baking bread"),
}
SPAN_KINDS = tuple(SPAN_VALUES)
# two ways to ask for each kind: its own words, and the words of the passage
_QUESTIONS = {
    "city": (("where", "does", "{}", "live", "?"), ("what", "is", "the", "city", "of", "{}", "?")),
    "job": (("what", "does", "{}", "do", "?"), ("what", "is", "the", "job", "of", "{}", "?")),
    "age": (("how", "old", "is", "{}", "?"), ("what", "is", "the", "age", "of", "{}", "?")),
    "pet": (("what", "pet", "does", "{}", "have", "?"), ("what", "is", "the", "pet", "of", "{}",
                                                         "?")),
    "hobby": (("what", "does", "{}", "like", "doing", "?"), ("what", "is", "the", "hobby", "of",
                                                             "{}", "?")),
}
_VALUE_OFFSET = 5  # the value of "the <kind> of <name> is <value> ." starts at its 6th token


def _fact(kind: str, name: str, value: list[str]) -> list[str]:
    """The sentence of a fact, ending with ``.``; its value starts at ``_VALUE_OFFSET``."""
    return ["the", kind, "of", name, "is", *value, "."]


def _question(rng: random.Random, kind: str, name: str) -> list[str]:
    return [name if w == "{}" else w for w in rng.choice(_QUESTIONS[kind])]


def _span_example(rng: random.Random, num_people: tuple[int, int],
                  num_facts: tuple[int, int], same_kind_distractor: bool) -> SpanExample:
    names = rng.sample(NAMES, rng.randint(*num_people))
    num_facts = rng.randint(*num_facts)
    kind = rng.choice(SPAN_KINDS)
    asked = names[0]
    if same_kind_distractor:  # the question's fact and the same kind about someone else
        slots = [(asked, kind), (rng.choice(names[1:]), kind)]
        free = [(n, k) for n in names for k in SPAN_KINDS if (n, k) not in slots]
    else:  # the question's fact is the only one of its kind
        slots = [(asked, kind)]
        free = [(n, k) for n in names for k in SPAN_KINDS if k != kind]
    slots += rng.sample(free, num_facts - len(slots))
    values = {k: rng.sample(SPAN_VALUES[k], sum(1 for _, kk in slots if kk == k))
              for k in SPAN_KINDS}  # distinct values per kind inside a passage
    facts = [(n, k, values[k].pop().split()) for n, k in slots]
    question_fact = facts[0]
    rng.shuffle(facts)
    passage: list[str] = []
    start = end = -1
    for n, k, value in facts:
        if (n, k) == question_fact[:2]:
            start = len(passage) + _VALUE_OFFSET
            end = start + len(value) - 1
        passage += _fact(k, n, value)
    return SpanExample(_question(rng, kind, asked), passage, start, end)


def make_span_task(num_train: int = 2000, num_val: int = 500, num_test: int = 500,
                   seed: int = 0, *, num_people: tuple[int, int] = (2, 3),
                   num_facts: tuple[int, int] = (4, 6),
                   same_kind_distractor: bool = True) -> SpanTask:
    """The generated reading-comprehension task of the module docstring, deterministic
    from ``seed``.

    Args:
        num_train, num_val, num_test: the number of examples of each split.
        seed: the seed of the generator.
        num_people: the least and the most people a passage talks about (drawn uniformly).
        num_facts: the least and the most facts of a passage (at most ``5 * num_people[0]``).
        same_kind_distractor: put a fact of the question's kind about another person in
            every passage, so that the question's name must be matched (the default).
            False makes the question's fact the only one of its kind: the kind of question
            is then enough, an easier task that small models learn in seconds (with
            ``num_people=(1, 1)`` every fact is about one person).

    Returns:
        A :class:`SpanTask`: ``train``, ``val``, ``test`` (lists of :class:`SpanExample`,
        no example in two splits) and ``vocab`` (built on the training tokens, questions and
        passages, with the fine-tuning tokens reserved, :func:`task_vocab`).
    """
    _check_sizes(num_train=num_train, num_val=num_val, num_test=num_test)
    check_seed("seed", seed)
    check_flag("same_kind_distractor", same_kind_distractor)
    K = len(SPAN_KINDS)
    if same_kind_distractor:
        check_int_pair("num_people", num_people, 2, len(NAMES))
        check_int_pair("num_facts", num_facts, 2, num_people[0] * K)
    else:
        check_int_pair("num_people", num_people, 1, len(NAMES))
        check_int_pair("num_facts", num_facts, 1, num_people[0] * (K - 1) + 1)
    rng = random.Random(seed)
    seen: set = set()
    splits = []
    for n in (num_train, num_val, num_test):
        split = []
        while len(split) < n:
            example = _span_example(rng, num_people, num_facts, same_kind_distractor)
            key = (tuple(example.question), tuple(example.passage))
            if key not in seen:  # never the same example twice, in one split or two
                seen.add(key)
                split.append(example)
        splits.append(split)
    train, val, test = splits
    vocab = task_vocab([e.question + e.passage for e in train])
    return SpanTask(train, val, test, vocab, seed)
