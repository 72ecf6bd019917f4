"""Tokenizers for language models: characters and byte-level byte-pair encoding (chapters 9, 10).

A language model reads integers, so text is cut into *tokens* and each token given an id.
Two tokenizers are built here, from the simplest to the one GPT-2 uses:

- :class:`CharTokenizer`: one token per character. The vocabulary is small (a few dozen
  ids for English) and nothing is ever split wrongly, but sequences are long: a model
  must attend over every character of a word to read it.
- :class:`BPETokenizer`: byte-level byte-pair encoding (Sennrich et al., 2016, "Neural
  Machine Translation of Rare Words with Subword Units", Section 3.2; applied to bytes as
  in GPT-2, Radford et al., 2019, Section 2.2). It starts from the 256 possible bytes, so
  *any* string (any language, emoji, control characters) can be encoded and decoded back
  exactly, and learns merges of frequent neighbouring tokens, so common words become one
  token and rare words a few pieces. Sequences get several times shorter.

Both map a ``str`` to a ``list[int]`` and back, and save to / load from a JSON file::

    tok = BPETokenizer.train(text, vocab_size=512)
    ids = tok.encode("Once upon a time")   # [..., ...] (list of int)
    tok.decode(ids)                          # 'Once upon a time'

Shape legend: T number of tokens of one text (the lists returned by ``encode``).
"""
from __future__ import annotations

import heapq
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from .._validate import check_flag
from .vocab import _as_id_list

__all__ = ["CharTokenizer", "BPETokenizer", "PRE_TOKENIZE_PATTERN", "pre_tokenize"]

_FORMAT_VERSION = 1  # of the JSON files written by ``save``


def _check_text(name: str, text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")


def _id_list(ids, vocab_size: int, name: str = "ids") -> list[int]:
    """``ids`` (a list / tuple / 1-D integer tensor) as a list of ints, each in ``[0, V)``."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of integer ids, got {type(ids).__name__}")
    out = _as_id_list(ids, name)
    bad = [i for i in out if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"{name} holds {bad[0]}, outside the vocabulary's ids "
                         f"0..{vocab_size - 1} (vocab_size={vocab_size})")
    return out


def _read_json(path: str | os.PathLike, kind: str) -> dict:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or data.get("kind") != kind:
        found = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} does not hold a saved {kind} (found kind {found!r})")
    if data.get("format_version") != _FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {data.get('format_version')!r}; "
                         f"this version of qkvcourse reads {_FORMAT_VERSION}")
    return data


def _write_json(path: str | os.PathLike, data: dict) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, ensure_ascii=True, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # a crash never leaves a half-written tokenizer file
    return path


# --- characters ----------------------------------------------------------------------------------


class CharTokenizer:
    """One token per character, with ``<unk>`` (id 0) for characters unseen at build time.

    The ids are ``0`` for the unknown token, then the known characters in code-point order
    (``"\\n" < " " < "A" < "a"``), so the same alphabet always gives the same ids.

    Encoding is lossless for texts written with the known characters only: any other
    character is encoded as ``unk_id`` and decoded as ``unk_token`` (``"<unk>"``, visibly
    not a character of the text), so ``decode(encode(s)) == s`` holds exactly when every
    character of ``s`` was in the build text.

    Args:
        chars: the alphabet, distinct single characters, in id order (ids 1, 2, ...).
        unk_token: the string that ``decode`` writes for ``unk_id``.

    Example:
        >>> tok = CharTokenizer.from_text("hello world")
        >>> tok.encode("hold")
        [4, 6, 5, 2]
        >>> tok.decode(tok.encode("hold!"))
        'hold<unk>'
    """

    unk_id = 0

    def __init__(self, chars: Sequence[str], unk_token: str = "<unk>"):
        _check_text("unk_token", unk_token)
        if isinstance(chars, str):
            chars = list(chars)
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"chars must hold single characters, got {c!r}")
        repeated = [c for c, n in Counter(chars).items() if n > 1]
        if repeated:
            raise ValueError(f"chars must be distinct, got {repeated[0]!r} more than once")
        if unk_token in chars or not unk_token:
            raise ValueError(f"unk_token must be a non-empty string that is not one of chars "
                             f"(decode writes it for unknown characters, which would then read "
                             f"as that character), got {unk_token!r}")
        self.unk_token = unk_token
        self.chars = chars
        self._id_of = {c: i + 1 for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str, unk_token: str = "<unk>") -> "CharTokenizer":
        """The tokenizer whose alphabet is the set of characters of ``text``."""
        _check_text("text", text)
        return cls(sorted(set(text)), unk_token=unk_token)

    @property
    def vocab_size(self) -> int:
        """Number of ids: the alphabet plus ``<unk>``."""
        return len(self.chars) + 1

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text`` (``T = len(text)`` of them); unknown -> ``unk_id``."""
        _check_text("text", text)
        get = self._id_of.get
        return [get(c, 0) for c in text]

    def decode(self, ids) -> str:
        """The text of ``ids`` (a list, or a 1-D integer tensor of shape ``(T,)``)."""
        table = [self.unk_token] + self.chars
        return "".join(table[i] for i in _id_list(ids, self.vocab_size))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer to a JSON file (read it back with :meth:`load`)."""
        return _write_json(path, {"kind": "CharTokenizer", "format_version": _FORMAT_VERSION,
                                  "unk_token": self.unk_token, "chars": self.chars})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CharTokenizer":
        """Read a tokenizer written by :meth:`save`."""
        data = _read_json(path, "CharTokenizer")
        return cls(data["chars"], unk_token=data["unk_token"])

    def __eq__(self, other) -> bool:
        return (isinstance(other, CharTokenizer) and self.chars == other.chars
                and self.unk_token == other.unk_token)

    def __repr__(self) -> str:
        shown = "".join(self.chars[:20])
        more = "..." if len(self.chars) > 20 else ""
        return f"CharTokenizer(vocab_size={self.vocab_size}, chars={shown!r}{more})"


# --- byte-pair encoding --------------------------------------------------------------------------

# Pre-tokenisation: BPE never merges across the pieces this pattern cuts the text into, so
# a token never spans two words, and " the" (with its leading space) becomes one token
# wherever it occurs. It is a simplified version of GPT-2's idea, written with Python's
# ``re`` (no \p{L} classes): ``[^\W\d_]`` is a letter of any script.
PRE_TOKENIZE_PATTERN = (
    r"'(?:[sdmt]|ll|ve|re)(?![^\W\d_])"  # English contractions: 's 'd 'm 't 'll 've 're
    r"| ?[^\W\d_]+"                      # a word, with the space in front of it
    r"| ?\d+"                            # a number, with the space in front of it
    r"| ?(?:[^\s\w]|_)+"                 # a run of punctuation or symbols
    r"|\s*[\r\n]+"                       # line breaks, with the spaces before them
    r"|\s+(?!\S)"                        # spaces not followed by a word (the last one is
    r"|\s+"                              # left to the next word), or any other whitespace
)


def pre_tokenize(text: str, pattern: str | re.Pattern | None = PRE_TOKENIZE_PATTERN) -> list[str]:
    """Cut ``text`` into the pieces that BPE works inside.

    ``"Hello, world!  Bye"`` -> ``['Hello', ',', ' world', '!', ' ', ' Bye']``.

    The pieces always join back into ``text``: any characters that ``pattern`` does not
    match become pieces of their own. With ``pattern=None`` the whole text is one piece.
    (Combining accents of decomposed text, e.g. ``"e\\u0301"``, are not letters for ``re``
    and become punctuation pieces; byte-level BPE still round-trips them.)
    """
    _check_text("text", text)
    return _cut(text, re.compile(pattern) if isinstance(pattern, str) else pattern)


def _cut(text: str, regex: re.Pattern | None) -> list[str]:
    """:func:`pre_tokenize` with a compiled pattern (or ``None``)."""
    if regex is None:
        return [text] if text else []
    pieces, pos = [], 0
    for m in regex.finditer(text):
        if m.start() > pos:
            pieces.append(text[pos:m.start()])  # a gap the pattern skipped
        if m.end() > m.start():
            pieces.append(m.group())
        pos = max(pos, m.end())
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces


def _merge(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new_id``.

    Occurrences do not overlap: merging ``(a, a)`` in ``a a a`` gives ``aa a``.
    """
    out, i, n = [], 0, len(ids)
    first, second = pair
    while i < n:
        if i < n - 1 and ids[i] == first and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """Byte-level byte-pair encoding (Sennrich et al., 2016; GPT-2's byte level).

    **The vocabulary.** Ids ``0..255`` are the 256 single bytes, so UTF-8 bytes of any
    text can be written with them. Merge number ``r`` (rank ``r``, counted from 0) creates
    id ``256 + r``, the concatenation of the two tokens it merges. Special tokens (e.g.
    ``"<|endoftext|>"``, ``"[MASK]"``) come last, ids ``256 + len(merges) + i``; they are
    matched as whole strings in the text and are never split or merged.

    **Encoding** a text: cut off the special tokens, cut the rest into pieces with
    :func:`pre_tokenize`, write each piece as its UTF-8 bytes, then repeatedly merge the
    neighbouring pair with the *lowest rank* (the merge learned first) until no learned
    merge applies. This replays, on any text, exactly what training did to the training
    text. The result of each distinct piece is cached.

    **Decoding** joins the bytes of the tokens and decodes them as UTF-8. Ids produced by
    :meth:`encode` always give the text back; an arbitrary id sequence (e.g. sampled from
    a model) may cut a multi-byte character, and such bytes become ``"\\ufffd"``.

    Build one with :meth:`train`, or from saved merges with :meth:`load`.

    Args:
        merges: the learned pairs, in rank order: ``merges[r] = (a, b)`` creates id
            ``256 + r``; ``a`` and ``b`` must be ids created before it.
        special_tokens: strings that are always one token each.
        pattern: the pre-tokenisation regex (``None``: no pre-tokenisation).
    """

    def __init__(self, merges: Iterable[Sequence[int]] = (), special_tokens: Sequence[str] = (),
                 pattern: str | None = PRE_TOKENIZE_PATTERN):
        self.merges: list[tuple[int, int]] = []
        self._bytes: list[bytes] = [bytes([b]) for b in range(256)]  # id -> its bytes
        if isinstance(merges, (str, bytes)) or not isinstance(merges, Iterable):
            raise TypeError(f"merges must be a sequence of (a, b) pairs of ids, got "
                            f"{type(merges).__name__}")
        for r, pair in enumerate(merges):
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Iterable):
                raise TypeError(f"merges[{r}] must be a pair of ids, got {pair!r}")
            ids = _as_id_list(pair, f"merges[{r}]")  # integers only: no float, no bool
            if len(ids) != 2:
                raise ValueError(f"merges[{r}] must be a pair of ids, got {pair!r}")
            a, b = ids
            if not (0 <= a < 256 + r and 0 <= b < 256 + r):
                raise ValueError(f"merges[{r}] = {tuple(pair)} refers to an id that does not "
                                 f"exist yet (ids 0..{255 + r} exist before merge {r})")
            self.merges.append((a, b))
            self._bytes.append(self._bytes[a] + self._bytes[b])
        self._ranks = {pair: r for r, pair in enumerate(self.merges)}
        self.pattern = pattern
        self._regex = re.compile(pattern) if pattern is not None else None
        self.special_tokens: list[str] = []
        self._special_ids: dict[str, int] = {}
        self._special_regex: re.Pattern | None = None
        self.add_special_tokens(special_tokens)
        self._cache: dict[str, tuple[int, ...]] = {}

    # -- training --------------------------------------------------------------------------------

    @classmethod
    def train(cls, text: str, vocab_size: int, special_tokens: Sequence[str] = (),
              pre_tokenize: str | None = PRE_TOKENIZE_PATTERN,
              min_frequency: int = 2) -> "BPETokenizer":
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        The algorithm (Sennrich et al., 2016, Algorithm 1, on bytes):

        1. Cut ``text`` into pieces (special tokens removed first, then
           :func:`pre_tokenize`) and count how often each distinct piece occurs. Each
           piece becomes a list of byte ids; identical pieces are stored once, with their
           count, which is what makes training on a large text cheap.
        2. Count every pair of neighbouring ids, weighted by the piece counts, and note in
           which pieces each pair occurs.
        3. Take the most frequent pair (ties: the smallest pair of ids, so training is
           deterministic), give it the next id, and rewrite the pieces that contain it.
        4. Update the pair counts *only for those pieces* (subtract their old pairs, add
           their new ones) instead of recounting the whole text, and repeat from 3.

        The most frequent pair is found with a heap of ``(-count, pair)`` entries. When a
        count changes a new entry is pushed and the old one is left in place; an entry
        whose count no longer matches is skipped when it reaches the top ("lazy deletion").
        Each merge therefore costs time proportional to the pieces it touches, not to the
        size of the text.

        Training stops early, with fewer merges, when no pair occurs ``min_frequency``
        times any more (merging a pair seen once saves one token and learns nothing
        general).

        Args:
            text: the training text.
            vocab_size: the number of ids wanted: 256 bytes + merges + special tokens.
            special_tokens: strings kept as single tokens (never split, never merged).
            pre_tokenize: the regex that cuts text into pieces (``None``: the whole text
                is one piece, slow for a large text).
            min_frequency: the fewest occurrences a pair needs to be merged.

        Returns:
            The trained tokenizer.
        """
        _check_text("text", text)
        if isinstance(special_tokens, str):
            raise TypeError("special_tokens must be a sequence of strings, got a str "
                            f"({special_tokens!r}); write special_tokens=({special_tokens!r},)")
        special_tokens = list(special_tokens)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        smallest = 256 + len(special_tokens)
        if vocab_size < smallest:
            raise ValueError(f"vocab_size must be at least 256 (bytes) + {len(special_tokens)} "
                             f"(special tokens) = {smallest}, got {vocab_size}")
        if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) \
                or min_frequency < 1:
            raise ValueError(f"min_frequency must be an int >= 1, got {min_frequency!r}")
        tok = cls((), special_tokens, pre_tokenize)  # validates the special tokens
        num_merges = vocab_size - smallest

        # 1. distinct pieces, as byte-id lists, with their counts
        counts: Counter[str] = Counter()
        for chunk in tok._split_special(text, allow_special=True):
            if isinstance(chunk, str):
                counts.update(_cut(chunk, tok._regex))
        words = [list(piece.encode("utf-8")) for piece in counts]
        freqs = list(counts.values())

        # 2. pair counts and, for each pair, the pieces holding it
        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)
        for w, (word, f) in enumerate(zip(words, freqs)):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += f
                where[pair].add(w)
        heap = [(-c, pair) for pair, c in pair_counts.items()]
        heapq.heapify(heap)

        merges: list[tuple[int, int]] = []
        while len(merges) < num_merges and heap:
            # 3. the most frequent pair; stale heap entries are dropped on the way
            neg_count, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -neg_count:
                continue
            if -neg_count < min_frequency:
                break
            new_id = 256 + len(merges)
            merges.append(pair)
            # 4. rewrite the pieces that hold the pair, and update the counts they change
            for w in where.pop(pair):
                old = words[w]
                new = _merge(old, pair, new_id)
                words[w] = new
                before, after = Counter(zip(old, old[1:])), Counter(zip(new, new[1:]))
                for p in before.keys() | after.keys():
                    change = (after[p] - before[p]) * freqs[w]
                    if change:
                        c = pair_counts[p] + change
                        if c:
                            pair_counts[p] = c
                            heapq.heappush(heap, (-c, p))  # the old entry is now stale
                        else:
                            del pair_counts[p]
                    if after[p]:
                        where[p].add(w)
                    elif p in where:
                        where[p].discard(w)
            pair_counts.pop(pair, None)
        return cls(merges, special_tokens, pre_tokenize)

    # -- special tokens ----------------------------------------------------------------------------

    def add_special_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Append special tokens (e.g. GPT's start / delimiter / extract tokens for
        fine-tuning) to the vocabulary; returns their ids. Existing ones are kept as they are."""
        if isinstance(tokens, str):
            raise TypeError(f"special tokens must be given as a sequence of strings, got a str "
                            f"({tokens!r}); write ({tokens!r},)")
        ids = []
        for t in tokens:
            if not isinstance(t, str) or not t:
                raise ValueError(f"special tokens must be non-empty strings, got {t!r}")
            if t not in self._special_ids:
                self._special_ids[t] = 256 + len(self.merges) + len(self.special_tokens)
                self.special_tokens.append(t)
            ids.append(self._special_ids[t])
        if self.special_tokens:  # longest first, so "<a><b>" is not read as "<a>" + ...
            alternatives = sorted(self.special_tokens, key=lambda s: (-len(s), s))
            self._special_regex = re.compile("|".join(map(re.escape, alternatives)))
        return ids

    def special_id(self, token: str) -> int:
        """The id of a special token."""
        if token not in self._special_ids:
            raise KeyError(f"{token!r} is not a special token of this tokenizer "
                           f"(its special tokens: {self.special_tokens})")
        return self._special_ids[token]

    def _split_special(self, text: str, allow_special: bool) -> list:
        """``text`` as a list of plain-text chunks (str) and special-token ids (int)."""
        if self._special_regex is None or not allow_special:
            return [text]
        out, pos = [], 0
        for m in self._special_regex.finditer(text):
            if m.start() > pos:
                out.append(text[pos:m.start()])
            out.append(self._special_ids[m.group()])
            pos = m.end()
        if pos < len(text):
            out.append(text[pos:])
        return out

    # -- encoding and decoding ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes + the merges + the special tokens."""
        return 256 + len(self.merges) + len(self.special_tokens)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def vocab(self) -> dict[int, bytes]:
        """Every id and the bytes it stands for (a special token: its UTF-8 bytes)."""
        table = dict(enumerate(self._bytes))
        table.update({i: t.encode("utf-8") for t, i in self._special_ids.items()})
        return table

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        """Apply the merges, lowest rank first, to the bytes of one pre-token (cached)."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        ids = list(piece.encode("utf-8"))
        ranks = self._ranks
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, len(ranks)))
            rank = ranks.get(pair)
            if rank is None:
                break  # no learned merge applies any more
            ids = _merge(ids, pair, 256 + rank)
        if len(self._cache) >= 100_000:  # bound the memory of a long-running session
            self._cache.clear()
        result = self._cache[piece] = tuple(ids)
        return result

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Token ids of ``text``, a list of length ``T``.

        Args:
            text: any string (lone surrogates, which are not valid Unicode, are refused).
            allow_special: read special-token strings in ``text`` as special tokens. With
                ``False`` they are encoded as ordinary text (for untrusted input).
        """
        _check_text("text", text)
        check_flag("allow_special", allow_special)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"text holds a lone surrogate {text[e.start]!r} at position "
                             f"{e.start}, which has no UTF-8 encoding") from None
        ids: list[int] = []
        for chunk in self._split_special(text, allow_special):
            if isinstance(chunk, int):
                ids.append(chunk)
                continue
            for piece in _cut(chunk, self._regex):
                ids.extend(self._encode_piece(piece))
        return ids

    def decode_bytes(self, ids) -> bytes:
        """The bytes of ``ids`` joined (special tokens as their UTF-8 bytes)."""
        ids = _id_list(ids, self.vocab_size)
        vocab = self._bytes
        specials = {i: t.encode("utf-8") for t, i in self._special_ids.items()}
        return b"".join(vocab[i] if i < len(vocab) else specials[i] for i in ids)

    def decode(self, ids) -> str:
        """The text of ``ids`` (a list, or a 1-D integer tensor of shape ``(T,)``)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` as strings, to look at: ``["Once", " upon", " a", ...]``.

        A token that holds part of a multi-byte character shows as ``"\\ufffd"``.
        """
        return [self.decode([i]) for i in self.encode(text)]

    # -- saving ------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer (merges, special tokens, pattern) to a JSON file."""
        return _write_json(path, {
            "kind": "BPETokenizer", "format_version": _FORMAT_VERSION, "pattern": self.pattern,
            "special_tokens": self.special_tokens, "merges": [list(p) for p in self.merges]})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Read a tokenizer written by :meth:`save`."""
        data = _read_json(path, "BPETokenizer")
        return cls(data["merges"], data["special_tokens"], data["pattern"])

    def __eq__(self, other) -> bool:
        return (isinstance(other, BPETokenizer) and self.merges == other.merges
                and self.special_tokens == other.special_tokens and self.pattern == other.pattern)

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={self.special_tokens})")

