"""A labelled task drawn from the generated stories: complete the destination (chapter 9).

GPT's claim is that a language model pretrained on unlabelled text has learned what a
labelled task needs, so that fine-tuning needs few labels. To *measure* that claim the
task must come from the same text and the same tokens as the pretraining corpus
(:func:`~qkvcourse.data.corpus.load_offline_corpus`, ``"stories"``), and its answer must
be something the stories teach but the labels alone teach slowly.

:func:`make_destination_task` is a *cloze* task (fill in the missing word): a passage of a
story ends just before the last word of the place the hero sets off to, and the label
is that word, one of the ten destinations of the story grammar::

    "Inside the box was a drawing of the cave behind the "   ->  waterfall
    "After two hours, they reached the old "                 ->  lighthouse

Which word completes ``"the cave behind the "`` is a fact of the stories, one of the
phrases a language model learns by predicting them; a classifier trained from scratch
must learn it from the labelled examples, phrase by phrase. The passages come from
freshly generated stories (another seed than the pretraining text's), and the three
splits from different stories.

The same examples are a choice among ten continuations of the passage, which a language
model can answer with no fine-tuning (zero-shot, :mod:`qkvcourse.zero_shot`).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .._validate import check_size
from .corpus import _DESTINATIONS, generate_stories

__all__ = ["DESTINATION_WORDS", "ClozeExample", "ClozeTask", "destination_passages",
           "make_destination_task"]

# The destinations of the grammar, cut before their last word: ("the cave behind the", "waterfall")
_DESTINATION_PARTS = tuple(tuple(d.rsplit(" ", 1)) for d in _DESTINATIONS)
DESTINATION_WORDS = tuple(word for _, word in _DESTINATION_PARTS)  # the labels, in this order


@dataclass(frozen=True)
class ClozeExample:
    """A passage that stops before a word, and the index of that word among the labels."""

    prompt: str  # the passage, ending with a space: "... the cave behind the "
    label: int  # index into DESTINATION_WORDS

    @property
    def answer(self) -> str:
        return DESTINATION_WORDS[self.label]

    @property
    def tokens_a(self) -> list[str]:
        """The characters of the prompt, for :func:`~qkvcourse.finetune.gpt_classification_inputs`."""
        return list(self.prompt)

    tokens_b = None  # a one-text task


@dataclass
class ClozeTask:
    """The three splits (from different stories) and the label names."""

    train: list[ClozeExample]
    val: list[ClozeExample]
    test: list[ClozeExample]
    label_names: tuple[str, ...] = DESTINATION_WORDS
    seed: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def max_chars(self) -> int:
        """The longest prompt, in characters, over the three splits."""
        return max(len(e.prompt) for e in self.train + self.val + self.test)

    def __repr__(self) -> str:
        return (f"ClozeTask(train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, "
                f"{self.num_classes} labels, seed={self.seed})")


def destination_passages(story: str, max_chars: int = 44) -> list[ClozeExample]:
    """Every mention of a destination in ``story``, as a passage of at most ``max_chars``
    characters (whole words, from the story's text) that ends just before the
    destination's last word."""
    if not isinstance(story, str):
        raise TypeError(f"story must be a str, got {type(story).__name__}")
    check_size("max_chars", max_chars)
    found = []
    for label, (head, word) in enumerate(_DESTINATION_PARTS):
        for m in re.finditer(re.escape(f"{head} {word}") + r"\b", story):
            end = m.start() + len(head) + 1  # just after the space before the last word
            start = max(0, end - max_chars)
            if start > 0:  # begin at a word: after the first space of the window
                start = story.index(" ", start, end) + 1
            found.append((m.start(), ClozeExample(story[start:end], label)))
    return [example for _, example in sorted(found, key=lambda item: item[0])]


def make_destination_task(num_train: int = 2048, num_val: int = 128, num_test: int = 512,
                          seed: int = 0, max_chars: int = 44,
                          story_seed: int = 1) -> ClozeTask:
    """The destination cloze task: passages of new stories, labelled with the missing word.

    The stories are generated with ``story_seed`` (the pretraining text uses seed 0), so
    the passages were never read in pretraining, though the grammar's phrases were. The
    stories are shuffled and divided: the test passages come from the first stories, the
    validation passages from the next, the training passages from the ones after, so no
    story is shared between splits. A story mentions its destination twice on average.

    Args:
        num_train, num_val, num_test: examples per split (the training split is the pool
            from which the label budgets of an experiment are drawn).
        seed: the order of the stories and of the examples.
        max_chars: the longest passage.
        story_seed: the seed of the stories the passages come from.

    Returns:
        A :class:`ClozeTask`.
    """
    for name, n in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    check_size("max_chars", max_chars)
    check_size("story_seed", story_seed, minimum=None)
    total = num_train + num_val + num_test
    stories = generate_stories(500 * total + 20_000, story_seed).rstrip("\n").split("\n\n")
    rng = random.Random(seed)
    rng.shuffle(stories)
    splits, examples = [], []
    for n in (num_test, num_val, num_train):
        while len(examples) < n:
            if not stories:
                raise ValueError(f"the stories hold too few passages for {total} examples")
            examples += destination_passages(stories.pop(), max_chars)
        split, examples = examples[:n], []  # the rest of a split's last story is dropped
        rng.shuffle(split)
        splits.append(split)
    test, val, train = splits
    return ClozeTask(train, val, test, seed=seed)
