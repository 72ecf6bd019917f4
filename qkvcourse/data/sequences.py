"""Copying random token sequences: the same content at growing length (chapter 4).

The date task of chapter 4 mixes two things: a longer date is also a *different style* of
date. To measure the fixed-length-context bottleneck alone, this task keeps the content
fixed and varies only the length: the source is a string of ``length`` tokens drawn
uniformly at random from a small alphabet, and the target is the same string (or, with
``reverse=True``, the string reversed)::

    "hcbjaf"  ->  "hcbjaf"      (copy)
    "hcbjaf"  ->  "fajbch"      (reverse)

Every token carries the same information (log2 of the alphabet size, in bits) at every
position and at every length, so a model that must squeeze the whole source into one
vector has ``length`` times as much to store, while a model with attention can look each
token up when it writes it.

The batches are in the translation batch format (:class:`~qkvcourse.data.translation.TranslationBatch`),
so the RNN models, :func:`qkvcourse.greedy_search` and the trainer of chapter 4 work unchanged.
"""
from __future__ import annotations

import random
import string

from .._validate import check_flag, check_seed, check_size, check_sizes
from ..metrics import token_accuracy  # re-exported: chapter 4 imports it from here
from .translation import CharacterTranslationData
from .vocab import Vocab

__all__ = ["CopyTaskData", "SequenceTaskData", "random_string_pairs"]


def random_string_pairs(num_examples: int, length: int, seed: int = 0, alphabet_size: int = 10,
                        reverse: bool = False) -> list[tuple[str, str]]:
    """``num_examples`` distinct random strings of ``length`` letters and their copies.

    Args:
        num_examples: number of pairs; at most the number of distinct strings
            (``alphabet_size ** length``).
        length: tokens per string (>= 1).
        seed: the strings are a deterministic function of ``(seed, length, alphabet_size)``.
        alphabet_size: the first ``alphabet_size`` lowercase letters are the tokens (1 to 26).
        reverse: the target is the source reversed instead of copied.
    """
    check_sizes(length=length, alphabet_size=alphabet_size)
    check_size("num_examples", num_examples, minimum=None)
    check_flag("reverse", reverse)
    if alphabet_size > 26:
        raise ValueError(f"alphabet_size must be at most 26 (lowercase letters), got {alphabet_size}")
    if num_examples < 0 or num_examples > alphabet_size ** length:
        raise ValueError(f"num_examples must lie in [0, {alphabet_size ** length}] (distinct "
                         f"strings of length {length}), got {num_examples}")
    rng = random.Random(f"copy-{seed}-{length}-{alphabet_size}")  # str seeds are stable
    letters = string.ascii_lowercase[:alphabet_size]
    seen: set[str] = set()
    pairs = []
    while len(pairs) < num_examples:
        source = "".join(rng.choice(letters) for _ in range(length))
        if source not in seen:  # distinct strings, so no test string is a training string
            seen.add(source)
            pairs.append((source, source[::-1] if reverse else source))
    return pairs


class CopyTaskData(CharacterTranslationData):
    """Copy (or reverse) random strings of one fixed ``length``; character tokens.

    The three splits hold distinct strings (no test string was seen in training). Both
    vocabularies are the alphabet, the same for every seed and length.

    Args:
        length: tokens per source and target string.
        num_train, num_val, num_test: number of pairs per split.
        seed: draws the strings and seeds the order of the training batches.
        batch_size: rows per batch.
        alphabet_size: number of distinct tokens (letters ``a``, ``b``, ...).
        reverse: reverse instead of copy.

    Example:
        >>> data = CopyTaskData(length=5, num_train=100, num_val=10, num_test=10)
        >>> data.train_pairs[0][0] == data.train_pairs[0][1]
        True
    """

    def __init__(self, length: int, num_train: int = 10000, num_val: int = 500,
                 num_test: int = 500, seed: int = 0, batch_size: int = 64,
                 alphabet_size: int = 10, reverse: bool = False):
        check_size("num_train", num_train)  # the training loader shuffles: at least one pair
        check_sizes(0, num_val=num_val, num_test=num_test)
        check_size("batch_size", batch_size)
        check_seed("seed", seed)
        self.length, self.reverse, self.alphabet_size = length, reverse, alphabet_size
        pairs = random_string_pairs(num_train + num_val + num_test, length, seed,
                                    alphabet_size, reverse)
        vocab = Vocab(list(string.ascii_lowercase[:alphabet_size]))
        super().__init__(pairs[:num_train], pairs[num_train:num_train + num_val],
                         pairs[num_train + num_val:], vocab, vocab, batch_size, seed)

    def __repr__(self) -> str:
        task = "reverse" if self.reverse else "copy"
        return (f"CopyTaskData({task}, length={self.length}, alphabet={self.alphabet_size}, "
                f"train={len(self.train_pairs)}, val={len(self.val_pairs)}, "
                f"test={len(self.test_pairs)}, batch_size={self.batch_size})")


SEQUENCE_TASKS = ("copy", "reverse")


class SequenceTaskData(CharacterTranslationData):
    """Copy or reverse random strings: ``"cabjd" -> "cabjd"`` or ``"cabjd" -> "djbac"``.

    Every symbol is drawn uniformly from ``symbols`` and every length uniformly from
    ``[min_len, max_len]``, with ``random.Random(seed)`` only, so the splits depend on the
    arguments alone. No structure helps: the model must carry each symbol to its place.
    Source and target share one character vocabulary (the symbols after the four special
    tokens), the same for every seed.

    Args:
        task: ``"copy"`` or ``"reverse"``.
        min_len, max_len: shortest and longest string (characters, ``<eos>`` not counted).
        num_train, num_val, num_test: number of pairs in each split.
        seed: draws the strings and seeds the order of the training batches.
        batch_size: rows per batch.
        symbols: the alphabet (distinct characters).
    """

    def __init__(self, task: str = "reverse", min_len: int = 12, max_len: int = 28,
                 num_train: int = 4000, num_val: int = 200, num_test: int = 500, seed: int = 0,
                 batch_size: int = 64, symbols: str = "abcdefghij"):
        if task not in SEQUENCE_TASKS:
            raise ValueError(f"task must be one of {SEQUENCE_TASKS}, got {task!r}")
        check_sizes(min_len=min_len, max_len=max_len)
        if not 1 <= min_len <= max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, "
                             f"max_len={max_len}")
        if not isinstance(symbols, str):
            raise TypeError(f"symbols must be a str of distinct characters, got "
                            f"{type(symbols).__name__}")
        if len(symbols) < 2 or len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols must hold at least two distinct characters, got {symbols!r}")
        check_size("num_train", num_train)  # the training loader shuffles: at least one pair
        check_sizes(0, num_val=num_val, num_test=num_test)
        check_size("batch_size", batch_size)
        check_seed("seed", seed)
        self.task, self.min_len, self.max_len, self.symbols = task, min_len, max_len, symbols
        rng = random.Random(seed)
        pairs = []
        for _ in range(num_train + num_val + num_test):
            s = "".join(rng.choice(symbols) for _ in range(rng.randint(min_len, max_len)))
            pairs.append((s, s if task == "copy" else s[::-1]))
        vocab = Vocab(list(symbols))
        a, b = num_train, num_train + num_val
        super().__init__(pairs[:a], pairs[a:b], pairs[b:], vocab, vocab, batch_size, seed)

    def __repr__(self) -> str:
        return (f"SequenceTaskData(task={self.task!r}, lengths {self.min_len}-{self.max_len}, "
                f"train={len(self.train_pairs)}, test={len(self.test_pairs)}, "
                f"symbols={len(self.symbols)}, batch_size={self.batch_size})")
