"""Translation data: generated dates (the default) and Tatoeba English–French (chapters 4, 7).

The default task is generated, needs no network and is deterministic from a seed:
translate a date written by a human, in one of many styles, into ISO 8601::

    "tuesday, march 3, 1998"  ->  "1998-03-03"
    "3.03.98"                 ->  "1998-03-03"
    "the 3rd of march, 1998"  ->  "1998-03-03"

It needs attention: the output's first characters (the year) come from the end of most
inputs, the order of day and month depends on the style (``/`` puts the month first,
``.`` and ``-`` the day), and a month name must be read as a whole word to produce two
digits. Both sides are tokenised into characters.

The real-data alternative, :class:`TatoebaData`, serves English–French sentence pairs
(word tokens) in exactly the same batch format, so every model and training loop of the
course runs on either.

Shape legend: B batch, S source length, T target length (both padded, in tokens).

Batch format (:class:`TranslationBatch`), the same for every data set here:

- ``src (B, S)``: source ids followed by ``<eos>``, then ``<pad>``;
- ``src_valid_lens (B,)``: number of non-pad source tokens (``<eos>`` included);
- ``tgt_in (B, T)``: ``<bos>`` + target ids (the decoder's input under teacher forcing);
- ``tgt_out (B, T)``: target ids + ``<eos>`` (what the decoder must predict);
- ``tgt_valid_lens (B,)``: number of non-pad positions of ``tgt_in`` and of ``tgt_out``.
"""
from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from .._validate import check_flag, check_seed, check_size
from ..metrics import exact_match  # TranslationData.exact_match, as the notebooks call it
from .download import download, extract
from .vocab import Vocab, pad_batch

# --- the batch ---------------------------------------------------------------------------------


class TranslationBatch(NamedTuple):
    """One batch; a plain tuple ``(src, src_valid_lens, tgt_in, tgt_out, tgt_valid_lens)``."""

    src: Tensor  # (B, S) long
    src_valid_lens: Tensor  # (B,) long
    tgt_in: Tensor  # (B, T) long: <bos> + target
    tgt_out: Tensor  # (B, T) long: target + <eos>
    tgt_valid_lens: Tensor  # (B,) long

    def to(self, device) -> "TranslationBatch":
        """The same batch on ``device``."""
        return TranslationBatch(*(t.to(device) for t in self))


def encode_sources(token_lists: Sequence[Sequence[str]], vocab: Vocab,
                   max_len: int | None = None) -> tuple[Tensor, Tensor]:
    """``(src (B, S), src_valid_lens (B,))``: each token list's ids, then ``<eos>``, padded."""
    return pad_batch([vocab.encode(tokens, add_eos=True) for tokens in token_lists],
                     vocab.pad_id, max_len)


def translation_tensors(src_token_lists: Sequence[Sequence[str]],
                        tgt_token_lists: Sequence[Sequence[str]],
                        src_vocab: Vocab, tgt_vocab: Vocab) -> TranslationBatch:
    """Turn tokenised pairs into the five padded tensors of the batch format (module docstring).

    Args:
        src_token_lists: B source token lists.
        tgt_token_lists: the B matching target token lists.

    Returns:
        A :class:`TranslationBatch` holding all B pairs.
    """
    if len(src_token_lists) != len(tgt_token_lists):
        raise ValueError(f"src_token_lists has {len(src_token_lists)} sequences but "
                         f"tgt_token_lists has {len(tgt_token_lists)}")
    src, src_valid_lens = encode_sources(src_token_lists, src_vocab)  # (B, S), (B,)
    tgt_ids = [tgt_vocab.encode(tokens) for tokens in tgt_token_lists]
    # Teacher forcing: at step t the decoder reads tgt_in[:, t] and must predict tgt_out[:, t].
    tgt_in, tgt_valid_lens = pad_batch([[tgt_vocab.bos_id] + ids for ids in tgt_ids],
                                       tgt_vocab.pad_id)  # (B, T), (B,)
    tgt_out, _ = pad_batch([ids + [tgt_vocab.eos_id] for ids in tgt_ids],
                           tgt_vocab.pad_id)  # (B, T)
    return TranslationBatch(src, src_valid_lens, tgt_in, tgt_out, tgt_valid_lens)


def _check_count(name: str, value, minimum: int) -> None:
    """A size or count: an integer (no float, bool or str), at least ``minimum``."""
    check_size(name, value, minimum=None)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_split_sizes(num_train, num_val, num_test) -> None:
    """The training split needs one pair (its loader shuffles); the others may be empty."""
    _check_count("num_train", num_train, 1)
    _check_count("num_val", num_val, 0)
    _check_count("num_test", num_test, 0)


class _TensorRows(Dataset):
    """Rows of equally long tensors. A DataLoader with a ``batch_sampler`` asks for a whole
    batch of rows at once (``__getitems__``), which is one indexing per tensor instead of
    one per row followed by a stack."""

    def __init__(self, tensors: TranslationBatch):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, row: int) -> TranslationBatch:
        return TranslationBatch(*(t[row] for t in self.tensors))

    def __getitems__(self, rows: list[int]) -> TranslationBatch:
        return TranslationBatch(*(t[rows] for t in self.tensors))


def _keep(batch):
    """Collate function: the dataset already returns a finished batch."""
    return batch


class TranslationData:
    """Splits, vocabularies, tensors and loaders shared by the translation data sets.

    A subclass builds its pairs and vocabularies, defines how a source and a target are
    tokenised (and how target tokens are joined back into text), then calls this
    constructor.

    Args:
        train_pairs, val_pairs, test_pairs: ``(source, target)`` strings.
        src_vocab, tgt_vocab: vocabularies of the source and target tokens.
        batch_size: rows per batch.
        seed: seeds :attr:`generator`, which orders the training batches.
    """

    def __init__(self, train_pairs, val_pairs, test_pairs, src_vocab: Vocab, tgt_vocab: Vocab,
                 batch_size: int, seed: int):
        _check_count("batch_size", batch_size, 1)
        check_seed("seed", seed)
        if not len(train_pairs):
            raise ValueError("train_pairs is empty: the training loader needs at least one pair")
        self.train_pairs, self.val_pairs, self.test_pairs = train_pairs, val_pairs, test_pairs
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.batch_size, self.seed = batch_size, seed
        # One generator for the whole run: each pass over train_dataloader() advances it, so
        # epochs see different orders, and a trainer can save generator.get_state() in a
        # checkpoint and restore it to resume with the same order.
        self.generator = torch.Generator().manual_seed(seed)
        self.train_tensors = self.pairs_to_tensors(train_pairs)
        self.val_tensors = self.pairs_to_tensors(val_pairs)
        self.test_tensors = self.pairs_to_tensors(test_pairs)

    # Tokenisation: defined by each subclass.
    def tokenize_source(self, text: str) -> list[str]:
        raise NotImplementedError

    def tokenize_target(self, text: str) -> list[str]:
        raise NotImplementedError

    def detokenize_target(self, tokens: Sequence[str]) -> str:
        raise NotImplementedError

    def pairs_to_tensors(self, pairs: Sequence[tuple[str, str]]) -> TranslationBatch:
        """All ``pairs`` as one :class:`TranslationBatch`."""
        return translation_tensors([self.tokenize_source(s) for s, _ in pairs],
                                   [self.tokenize_target(t) for _, t in pairs],
                                   self.src_vocab, self.tgt_vocab)

    def encode_sources(self, sources: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``(src (B, S), src_valid_lens (B,))`` for new source strings, e.g. to translate them."""
        if isinstance(sources, str):
            raise TypeError(f"sources must be a list of strings, got the string {sources[:30]!r}")
        return encode_sources([self.tokenize_source(s) for s in sources], self.src_vocab)

    def decode_targets(self, ids) -> list[str]:
        """Target strings from ids ``(B, T)`` (a tensor or lists), stopping at ``<eos>``."""
        if isinstance(ids, Tensor) and ids.dim() != 2:
            raise ValueError(f"ids must be 2-D (B, T), got shape {tuple(ids.shape)}")
        return [self.detokenize_target(self.tgt_vocab.decode(row)) for row in ids]

    exact_match = staticmethod(exact_match)

    # Loaders: each batch is a TranslationBatch (see the module docstring).
    def _loader(self, tensors: TranslationBatch, shuffle: bool) -> DataLoader:
        rows = _TensorRows(tensors)
        order = RandomSampler(rows, generator=self.generator) if shuffle \
            else SequentialSampler(rows)
        # The generator sits at loader.batch_sampler.sampler.generator, where a trainer finds it.
        return DataLoader(rows, batch_sampler=BatchSampler(order, self.batch_size, drop_last=False),
                          collate_fn=_keep)

    def train_dataloader(self, shuffle: bool = True) -> DataLoader:
        """Training batches, shuffled by :attr:`generator` (reproducible from ``seed``)."""
        check_flag("shuffle", shuffle)
        return self._loader(self.train_tensors, shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_tensors, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_tensors, shuffle=False)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(train={len(self.train_pairs)}, val={len(self.val_pairs)}, "
                f"test={len(self.test_pairs)}, src_vocab={len(self.src_vocab)}, "
                f"tgt_vocab={len(self.tgt_vocab)}, batch_size={self.batch_size})")


# --- generated dates ---------------------------------------------------------------------------

FIRST_DATE = date(1900, 1, 1)  # the calendar the task covers, both ends included
LAST_DATE = date(2099, 12, 31)
# Two-digit years are read with a pivot: 50-99 -> 1950-1999, 00-49 -> 2000-2049. Styles
# that write two digits are therefore only used for years in this range, so every source
# string names exactly one date.
TWO_DIGIT_YEARS = (1950, 2049)

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ..., ``11th``, ``12th``, ``13th``, ``21st``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fields(day: date) -> dict[str, str]:
    """The pieces a style template may use; names in Title case (the template's case picks)."""
    month, weekday = MONTHS[day.month - 1], WEEKDAYS[day.weekday()]  # not strftime: no locale
    return dict(d=str(day.day), dd=f"{day.day:02d}", dth=ordinal(day.day),
                m=str(day.month), mm=f"{day.month:02d}", month=month, mon=month[:3],
                yyyy=f"{day.year:04d}", yy=f"{day.year % 100:02d}",
                weekday=weekday, wkd=weekday[:3])


_CASES: dict[str, Callable[[str], str]] = {"title": str, "lower": str.lower, "upper": str.upper}


@dataclass(frozen=True)
class DateStyle:
    """One way of writing a date: a ``str.format`` template over :func:`_fields` and a case."""

    template: str  # e.g. "{month} {dth}, {yyyy}"; fields: d dd dth m mm month mon yyyy yy weekday wkd
    case: str = "title"  # "title" (as in MONTHS), "lower" or "upper"

    @property
    def two_digit_year(self) -> bool:
        return "{yy}" in self.template

    def render(self, day: date) -> str:
        return _CASES[self.case](self.template.format_map(_fields(day)))

    @property
    def example(self) -> str:
        return self.render(date(1998, 3, 3))


# Numeric styles are unambiguous by convention: with the year last, "/" means month first
# (US) and "." or "-" mean day first (European); with the year first, the order is always
# year, month, day.
DATE_STYLES: tuple[DateStyle, ...] = (
    DateStyle("{d} {month} {yyyy}"),                       # 3 March 1998
    DateStyle("{dd} {month} {yyyy}"),                      # 03 March 1998
    DateStyle("{d} {month} {yyyy}", "lower"),              # 3 march 1998
    DateStyle("{month} {d}, {yyyy}"),                      # March 3, 1998
    DateStyle("{month} {dth}, {yyyy}"),                    # March 3rd, 1998
    DateStyle("{month} {d} {yyyy}", "lower"),              # march 3 1998
    DateStyle("{month} {d}, {yyyy}", "upper"),             # MARCH 3, 1998
    DateStyle("{weekday}, {month} {d}, {yyyy}"),           # Tuesday, March 3, 1998
    DateStyle("{weekday}, {month} {d}, {yyyy}", "lower"),  # tuesday, march 3, 1998
    DateStyle("{weekday} {dth} {month} {yyyy}"),           # Tuesday 3rd March 1998
    DateStyle("{wkd} {d} {mon} {yyyy}"),                   # Tue 3 Mar 1998
    DateStyle("{wkd}, {dd} {mon} {yyyy}", "upper"),        # TUE, 03 MAR 1998
    DateStyle("{wkd} {mon} {dd} {yyyy}"),                  # Tue Mar 03 1998
    DateStyle("{d} {mon} {yyyy}"),                         # 3 Mar 1998
    DateStyle("{mon}. {d}, {yyyy}"),                       # Mar. 3, 1998
    DateStyle("{mon} {d} {yy}"),                           # Mar 3 98
    DateStyle("the {dth} of {month}, {yyyy}", "lower"),    # the 3rd of march, 1998
    DateStyle("{dth} {month} '{yy}"),                      # 3rd March '98
    DateStyle("{d}-{mon}-{yyyy}", "upper"),                # 3-MAR-1998
    DateStyle("{mm}/{dd}/{yyyy}"),                         # 03/03/1998 (month first)
    DateStyle("{m}/{d}/{yyyy}"),                           # 3/3/1998 (month first)
    DateStyle("{m}/{d}/{yy}"),                             # 3/3/98 (month first)
    DateStyle("{dd}.{mm}.{yyyy}"),                         # 03.03.1998 (day first)
    DateStyle("{d}.{mm}.{yy}"),                            # 3.03.98 (day first)
    DateStyle("{dd}-{mm}-{yyyy}"),                         # 03-03-1998 (day first)
    DateStyle("{yyyy}/{m}/{d}"),                           # 1998/3/3
    DateStyle("{yyyy}.{mm}.{dd}"),                         # 1998.03.03
    DateStyle("{yyyy}{mm}{dd}"),                           # 19980303
)


def generate_date_pairs(num_examples: int, seed: int = 0,
                        styles: Sequence[DateStyle] = DATE_STYLES) -> list[tuple[str, str]]:
    """``num_examples`` pairs ``(written date, ISO date)`` for distinct calendar dates.

    Dates are drawn without replacement from :data:`FIRST_DATE` .. :data:`LAST_DATE`
    (from the two-digit-year range alone if every style writes two digits); each is
    written in a style drawn uniformly from those that can write its year. Only
    ``random.Random(seed)`` is used, so the result depends on the arguments alone.

    Args:
        num_examples: number of pairs, at most the number of days in the range.
        seed: the seed of the draw.
        styles: the styles to use (e.g. a single one, to make the task easy).

    Returns:
        A list of ``(source, target)`` strings, e.g. ``("Mar 3 98", "1998-03-03")``.
    """
    check_size("num_examples", num_examples, minimum=None)
    styles = tuple(styles)
    if not styles:
        raise ValueError("styles must name at least one DateStyle, got none")
    bad = next((s for s in styles if not isinstance(s, DateStyle)), None)
    if bad is not None:
        raise TypeError(f"styles must hold DateStyle objects, got {bad!r} "
                        f"({type(bad).__name__})")
    four_digit = tuple(s for s in styles if not s.two_digit_year)
    if four_digit:
        first, last = FIRST_DATE, LAST_DATE
    else:
        first, last = date(TWO_DIGIT_YEARS[0], 1, 1), date(TWO_DIGIT_YEARS[1], 12, 31)
    num_days = last.toordinal() - first.toordinal() + 1
    if not 0 <= num_examples <= num_days:
        raise ValueError(f"num_examples must lie in [0, {num_days}] (one pair per day from "
                         f"{first} to {last}), got {num_examples}")
    rng = random.Random(seed)
    pairs = []
    for day_number in rng.sample(range(first.toordinal(), last.toordinal() + 1), num_examples):
        day = date.fromordinal(day_number)
        usable = styles if TWO_DIGIT_YEARS[0] <= day.year <= TWO_DIGIT_YEARS[1] else four_digit
        style = usable[rng.randrange(len(usable))]
        pairs.append((style.render(day), day.isoformat()))
    return pairs


def source_alphabet(styles: Sequence[DateStyle] = DATE_STYLES) -> list[str]:
    """Every character the styles can write, sorted (all months, weekdays and digits)."""
    chars: set[str] = set()
    for day_number in range(date(2000, 1, 1).toordinal(), date(2000, 12, 31).toordinal() + 1):
        day = date.fromordinal(day_number)  # 2000 is a leap year in the two-digit range
        for style in styles:
            chars.update(style.render(day))
    return sorted(chars | set("0123456789"))


class CharacterTranslationData(TranslationData):
    """A :class:`TranslationData` whose tokens are the characters of its strings."""

    def tokenize_source(self, text: str) -> list[str]:
        return list(text)

    def tokenize_target(self, text: str) -> list[str]:
        return list(text)

    def detokenize_target(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)


class DateTranslationData(CharacterTranslationData):
    """Dates written by humans -> ISO 8601, character tokens; the course's default task.

    The splits never share a calendar date (so the test set measures generalisation to
    unseen dates, not recall), and no source string repeats.

    Both vocabularies are built from the full alphabet of the task (every character any
    style can write; the digits and ``-`` for targets), not from the training split, so
    the ids are the same for every seed and size and no test character is ``<unk>``.

    Args:
        num_train, num_val, num_test: number of pairs in each split.
        seed: draws the pairs and seeds the order of the training batches.
        batch_size: rows per batch.
        styles: the date styles to use (default: all of :data:`DATE_STYLES`).

    Example:
        >>> data = DateTranslationData(num_train=1000, num_val=100, num_test=100)
        >>> src, src_valid_lens, tgt_in, tgt_out, tgt_valid_lens = next(iter(data.train_dataloader()))
        >>> src.shape[0], len(data.decode_targets(tgt_out))
        (128, 128)
    """

    def __init__(self, num_train: int = 8000, num_val: int = 1000, num_test: int = 1000,
                 seed: int = 0, batch_size: int = 128,
                 styles: Sequence[DateStyle] = DATE_STYLES):
        _check_split_sizes(num_train, num_val, num_test)
        _check_count("batch_size", batch_size, 1)
        check_seed("seed", seed)
        self.styles = tuple(styles)
        pairs = generate_date_pairs(num_train + num_val + num_test, seed, self.styles)
        # Each pair has its own calendar date, so consecutive slices share none.
        train = pairs[:num_train]
        val = pairs[num_train:num_train + num_val]
        test = pairs[num_train + num_val:]
        src_vocab = Vocab(source_alphabet(self.styles))
        tgt_vocab = Vocab(list("0123456789-"))
        super().__init__(train, val, test, src_vocab, tgt_vocab, batch_size, seed)


# --- Tatoeba English-French ---------------------------------------------------------------------

# The tab-separated English-French pairs from Tatoeba (via manythings.org), as packaged by
# the d2l book (its DATA_HUB["fra-eng"]); the archive holds fra-eng/fra.txt.
TATOEBA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip"
TATOEBA_SHA1 = "94646ad1522d915e7b0f9296181140edcf86a4f5"

_PUNCTUATION_ATTACHED = re.compile(r"(?<=\S)([,.!?])")


def preprocess_sentence(text: str) -> str:
    """Lowercase, turn non-breaking spaces into spaces, and detach ``, . ! ?`` from words.

    ``"Va\\u202f!"`` -> ``"va !"``; ``"Hi, Tom."`` -> ``"hi , tom ."``
    """
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    return _PUNCTUATION_ATTACHED.sub(r" \1", text)


def tokenize_words(text: str) -> list[str]:
    """Word (and punctuation) tokens of a preprocessed sentence."""
    return preprocess_sentence(text).split()


def read_sentence_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(English, French)`` from a tab-separated file; extra columns (attribution) ignored."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            columns = line.rstrip("\n").split("\t")
            if len(columns) >= 2 and columns[0].strip() and columns[1].strip():
                pairs.append((columns[0], columns[1]))
    return pairs


class TatoebaData(TranslationData):
    """English -> French sentence pairs from Tatoeba, word tokens; downloaded on first use.

    Sentences are preprocessed by :func:`preprocess_sentence` and split into words. Pairs
    with more than ``max_len`` tokens on either side are dropped, as are repeated English
    sentences (one French translation, drawn by ``seed``, is kept for each), so the splits
    never share a source sentence. The vocabularies come from the training split, with
    ``min_freq=2``: rarer words become ``<unk>``.

    Args:
        num_train, num_val, num_test: number of pairs in each split.
        max_len: most tokens (words and punctuation, without ``<bos>``/``<eos>``) per sentence.
        batch_size: rows per batch.
        seed: draws the pairs and seeds the order of the training batches.
        cache_dir: where the archive is downloaded (see :func:`~qkvcourse.data.download.download`).
        path: a local ``fra.txt`` (tab-separated English, French) to use instead of downloading.
        url, sha1: where to download the archive and its checksum.
    """

    def __init__(self, num_train: int = 20000, num_val: int = 1000, num_test: int = 1000,
                 max_len: int = 10, batch_size: int = 128, seed: int = 0,
                 cache_dir: str | os.PathLike | None = None, path: str | os.PathLike | None = None,
                 url: str = TATOEBA_URL, sha1: str | None = TATOEBA_SHA1):
        _check_split_sizes(num_train, num_val, num_test)
        _check_count("max_len", max_len, 1)
        _check_count("batch_size", batch_size, 1)
        check_seed("seed", seed)
        if path is None:
            path = self.locate(download(url, sha1=sha1, cache_dir=cache_dir))
        self.path = Path(path)
        wanted = num_train + num_val + num_test
        raw = read_sentence_pairs(self.path)
        random.Random(seed).shuffle(raw)
        kept: dict[str, tuple[str, str]] = {}  # tokenised English -> its first pair
        for english, french in raw:
            if len(kept) == wanted:
                break
            src, tgt = tokenize_words(english), tokenize_words(french)
            if len(src) <= max_len and len(tgt) <= max_len:
                kept.setdefault(" ".join(src), (english, french))
        pairs = list(kept.values())
        if len(pairs) < wanted:
            raise ValueError(f"{self.path} has {len(pairs)} distinct English sentences of at most "
                             f"max_len={max_len} tokens, fewer than num_train + num_val + "
                             f"num_test = {wanted}")
        test, val = pairs[:num_test], pairs[num_test:num_test + num_val]
        train = pairs[num_test + num_val:wanted]
        self.max_len = max_len
        src_vocab = Vocab([tokenize_words(s) for s, _ in train], min_freq=2)
        tgt_vocab = Vocab([tokenize_words(t) for _, t in train], min_freq=2)
        super().__init__(train, val, test, src_vocab, tgt_vocab, batch_size, seed)

    @staticmethod
    def locate(zip_path: str | os.PathLike) -> Path:
        """Extract the archive (once) and return the path of its ``fra.txt``."""
        folder = extract(zip_path)
        found = sorted(folder.rglob("fra.txt"))
        if not found:
            raise FileNotFoundError(f"the archive {zip_path} has no fra.txt (extracted to {folder})")
        return found[0]

    def tokenize_source(self, text: str) -> list[str]:
        return tokenize_words(text)

    def tokenize_target(self, text: str) -> list[str]:
        return tokenize_words(text)

    def detokenize_target(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)
