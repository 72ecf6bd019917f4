"""Vocab, pad_batch and the generated date-translation task (qkvcourse.data)."""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from datetime import date

import pytest
import torch

from qkvcourse.data.translation import (DATE_STYLES, FIRST_DATE, LAST_DATE, DateStyle,
                                        DateTranslationData, TranslationBatch, generate_date_pairs,
                                        ordinal, preprocess_sentence, tokenize_words,
                                        translation_tensors)
from qkvcourse.data.vocab import SPECIAL_TOKENS, Vocab, pad_batch

# --- Vocab ---------------------------------------------------------------------------------


def test_special_tokens_have_fixed_ids():
    vocab = Vocab([list("hello world")])
    assert SPECIAL_TOKENS == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    assert vocab.to_tokens([0, 1, 2, 3]) == list(SPECIAL_TOKENS)
    assert len(Vocab()) == 4  # an empty corpus still has the four specials


def test_ids_ordered_by_frequency_then_token():
    corpus = [["b", "a", "c"], ["c", "b"], ["c", "d"], ["a"]]  # c:3, a:2, b:2, d:1
    vocab = Vocab(corpus)
    assert vocab.idx_to_token[4:] == ["c", "a", "b", "d"]
    # the ids depend only on the counts, not on the order of the corpus
    shuffled = [tok for seq in corpus for tok in seq]
    random.Random(1).shuffle(shuffled)
    assert Vocab(shuffled).idx_to_token == vocab.idx_to_token


def test_min_freq_and_reserved_tokens():
    vocab = Vocab([["x", "x", "y", "z", "z", "z"]], min_freq=2, reserved_tokens=["<sep>", "x"])
    assert vocab.idx_to_token == ["<pad>", "<bos>", "<eos>", "<unk>", "<sep>", "x", "z"]
    assert vocab["y"] == vocab.unk_id and vocab["<sep>"] == 4


@pytest.mark.parametrize("min_freq", [0, 1, 2, 3])
def test_kept_tokens_match_d2l_vocab(d2l, min_freq):
    text = "the cat sat on the mat and the dog sat on the log with a cat".split()
    ours = Vocab(text, min_freq=min_freq)
    reference = d2l.Vocab(text, min_freq=min_freq)
    assert set(ours.idx_to_token) - set(SPECIAL_TOKENS) == set(reference.idx_to_token) - {"<unk>"}


def test_lookup_encode_decode_round_trip():
    vocab = Vocab([list("abcabc"), list("de")])
    tokens = list("cabed")
    ids = vocab.encode(tokens)
    assert ids == [vocab[t] for t in tokens] == vocab[tokens]
    assert vocab.decode(ids) == tokens
    assert vocab.decode(torch.tensor(ids)) == tokens
    framed = vocab.encode(tokens, add_bos=True, add_eos=True)
    assert framed[0] == vocab.bos_id and framed[-1] == vocab.eos_id and framed[1:-1] == ids
    assert vocab.decode(framed) == tokens
    assert vocab.to_tokens(ids[0]) == "c" and vocab.to_tokens(torch.tensor(ids[0])) == "c"


def test_unknown_tokens_map_to_unk_and_stay_visible():
    vocab = Vocab([list("ab")])
    assert vocab["z"] == vocab.unk_id
    assert vocab.encode(list("azb")) == [vocab["a"], 3, vocab["b"]]
    assert vocab.decode(vocab.encode(list("azb"))) == ["a", "<unk>", "b"]


def test_decode_stops_at_first_eos_and_drops_pad_and_bos():
    vocab = Vocab([list("ab")])
    a, b = vocab["a"], vocab["b"]
    ids = [vocab.bos_id, a, vocab.pad_id, b, vocab.eos_id, a, vocab.eos_id, vocab.pad_id]
    assert vocab.decode(ids) == ["a", "b"]
    assert vocab.decode(ids, strip_special=False) == [
        "<bos>", "a", "<pad>", "b", "<eos>", "a", "<eos>", "<pad>"]


def test_vocab_bad_input():
    vocab = Vocab([list("ab")])
    with pytest.raises(IndexError, match=r"ids contains 99.*\[0, 5\]"):
        vocab.to_tokens([0, 99])
    with pytest.raises(TypeError, match="tokens must be a list.*'ab'"):
        vocab.encode("ab")
    with pytest.raises(TypeError, match="tokens_or_token_lists"):
        Vocab("hello")
    with pytest.raises(ValueError, match=r"ids must be 0-D or 1-D, got shape \(2, 2\)"):
        vocab.decode(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"integer ids, got dtype torch.float32 with shape \(3,\)"):
        vocab.decode(torch.zeros(3))
    with pytest.raises(ValueError, match="min_freq"):
        Vocab([], min_freq=-1)


# --- pad_batch ---------------------------------------------------------------------------------


def test_pad_batch_pads_to_longest_and_returns_lengths():
    ids, valid_lens = pad_batch([[5, 6, 7], [8], [], torch.tensor([9, 10])], pad_id=0)
    assert ids.dtype == valid_lens.dtype == torch.long
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0], [9, 10, 0]]
    assert valid_lens.tolist() == [3, 1, 0, 2]


def test_pad_batch_max_len():
    ids, valid_lens = pad_batch([[4, 4], [5]], pad_id=1, max_len=4)
    assert ids.tolist() == [[4, 4, 1, 1], [5, 1, 1, 1]] and valid_lens.tolist() == [2, 1]
    with pytest.raises(ValueError, match=r"sequences_of_ids\[1\] has 3 ids, more than max_len=2"):
        pad_batch([[1], [1, 2, 3]], pad_id=0, max_len=2)
    empty, lens = pad_batch([], pad_id=0)
    assert empty.shape == (0, 0) and lens.shape == (0,)


# --- date styles and generated pairs -------------------------------------------------------------

# An independent reader of written dates, sharing nothing with the generator but the rules of
# the task: "/" with the year last means month first, "." and "-" mean day first, a leading
# 4-digit year means year-month-day, two-digit years pivot at 50.
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTH_NAMES = ["january", "february", "march", "april", "may", "june", "july", "august",
                "september", "october", "november", "december"]
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAY_NAMES = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def read_date(text: str) -> date:
    low = text.lower()
    words = re.findall(r"[a-z]+", low)
    numbers = re.findall(r"\d+", low)
    for number, suffix in re.findall(r"(\d+)(st|nd|rd|th)\b", low):
        n = int(number)
        want = "th" if n in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        assert suffix == want, f"{text!r}: wrong ordinal suffix"
    months = [(_MONTHS + _MONTH_NAMES).index(w) % 12 + 1 for w in words
              if w in _MONTHS or w in _MONTH_NAMES]
    weekdays = [(_DAYS + _DAY_NAMES).index(w) % 7 for w in words if w in _DAYS or w in _DAY_NAMES]
    if months:
        assert len(months) == 1 and len(numbers) == 2, text
        month, day, year = months[0], int(numbers[0]), numbers[1]  # the day comes first
    elif len(numbers) == 1:
        assert len(numbers[0]) == 8, text
        year, month, day = numbers[0][:4], int(numbers[0][4:6]), int(numbers[0][6:])
    else:
        assert len(numbers) == 3, text
        separators = set(re.sub(r"\d", "", low))
        assert len(separators) == 1, text
        a, b, c = numbers
        if len(a) == 4:
            year, month, day = a, int(b), int(c)
        elif separators == {"/"}:
            month, day, year = int(a), int(b), c
        else:
            day, month, year = int(a), int(b), c
    if len(year) == 2:
        year = (1900 if int(year) >= 50 else 2000) + int(year)
    result = date(int(year), month, day)
    if weekdays:
        assert weekdays == [result.weekday()], f"{text!r}: wrong weekday"
    return result


def test_reader_knows_the_documented_examples():
    assert read_date("tuesday, march 3, 1998") == date(1998, 3, 3)
    assert read_date("3.03.98") == date(1998, 3, 3)
    assert read_date("3/4/1998") == date(1998, 3, 4)  # month first
    assert read_date("3.4.1998") == date(1998, 4, 3)  # day first
    assert read_date("Mar 3 08") == date(2008, 3, 3)
    with pytest.raises(AssertionError, match="wrong weekday"):
        read_date("Monday, March 3, 1998")
    with pytest.raises(AssertionError, match="wrong ordinal"):
        read_date("March 3th, 1998")


def test_at_least_twenty_distinct_styles():
    assert len(DATE_STYLES) >= 20
    assert len({(s.template, s.case) for s in DATE_STYLES}) == len(DATE_STYLES)
    assert len({s.example for s in DATE_STYLES}) == len(DATE_STYLES)
    for example in ["3 March 1998", "March 3rd, 1998", "tuesday, march 3, 1998", "3.03.98",
                    "1998/3/3", "Mar 3 98", "the 3rd of march, 1998", "3-MAR-1998"]:
        assert example in {s.example for s in DATE_STYLES}


EDGE_DATES = [FIRST_DATE, LAST_DATE, date(2000, 2, 29), date(1900, 2, 28), date(1949, 12, 31),
              date(1950, 1, 1), date(2049, 12, 31), date(2050, 1, 1), date(2011, 11, 11),
              date(2012, 12, 12), date(2013, 1, 13), date(2021, 10, 21), date(2022, 9, 22),
              date(2023, 8, 23), date(1999, 12, 31)]


@pytest.mark.parametrize("style", DATE_STYLES, ids=lambda s: s.example)
def test_every_style_writes_its_date_readably(style):
    rng = random.Random(0)
    days = EDGE_DATES + [date.fromordinal(rng.randint(FIRST_DATE.toordinal(),
                                                      LAST_DATE.toordinal()))
                         for _ in range(300)]
    if style.two_digit_year:
        days = [d for d in days if 1950 <= d.year <= 2049]
    written = [style.render(d) for d in days]
    assert [read_date(w) for w in written] == days
    assert len(set(written)) == len(set(days))


def test_ordinal_suffixes():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


def test_generate_date_pairs_is_deterministic_per_seed():
    assert generate_date_pairs(500, seed=3) == generate_date_pairs(500, seed=3)
    assert generate_date_pairs(500, seed=3) != generate_date_pairs(500, seed=4)
    state = random.getstate()
    generate_date_pairs(100, seed=0)
    assert random.getstate() == state  # the global RNG is neither used nor reseeded


def test_generated_targets_are_the_sources_dates():
    pairs = generate_date_pairs(10000, seed=0)
    iso = re.compile(r"^\d{4}-\d{2}-\d{2}$")
    for source, target in pairs:
        assert iso.match(target), target
        day = date.fromisoformat(target)
        assert FIRST_DATE <= day <= LAST_DATE
        assert read_date(source) == day, (source, target)
    assert len({t for _, t in pairs}) == len(pairs)  # distinct calendar dates
    assert len({s for s, _ in pairs}) == len(pairs)
    # every style is used often (~1/28 of the dates; half that for two-digit years, which
    # only half the calendar may use; styles that coincide on some dates count for both)
    rendered = Counter()
    for source, target in pairs:
        day = date.fromisoformat(target)
        rendered.update(i for i, s in enumerate(DATE_STYLES) if s.render(day) == source)
    assert set(rendered) == set(range(len(DATE_STYLES)))
    assert min(rendered.values()) > 0.25 * len(pairs) / len(DATE_STYLES)
    years = [int(t[:4]) for _, t in pairs]
    assert min(years) < 1910 and max(years) > 2090


def test_generate_date_pairs_with_chosen_styles():
    only = (DateStyle("{m}/{d}/{yy}"),)
    pairs = generate_date_pairs(200, seed=1, styles=only)
    assert all(1950 <= int(t[:4]) <= 2049 for _, t in pairs)
    assert all(only[0].render(date.fromisoformat(t)) == s for s, t in pairs)
    with pytest.raises(ValueError, match=r"num_examples must lie in \[0, 73049\].*got 80000"):
        generate_date_pairs(80000, seed=0)
    with pytest.raises(ValueError, match="styles"):
        generate_date_pairs(10, seed=0, styles=())


def test_generation_is_fast():
    import time
    start = time.perf_counter()
    DateTranslationData(num_train=8000, num_val=1000, num_test=1000)
    assert time.perf_counter() - start < 3.0


# --- DateTranslationData ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    return DateTranslationData(num_train=2000, num_val=300, num_test=300, seed=0, batch_size=64)


def test_splits_do_not_overlap(data):
    splits = [data.train_pairs, data.val_pairs, data.test_pairs]
    assert [len(s) for s in splits] == [2000, 300, 300]
    dates = [{t for _, t in split} for split in splits]
    sources = [{s for s, _ in split} for split in splits]
    for split, d, s in zip(splits, dates, sources):
        assert len(d) == len(s) == len(split)  # no duplicates within a split
    for i in range(3):
        for j in range(i + 1, 3):
            assert not dates[i] & dates[j] and not sources[i] & sources[j]


def test_splits_depend_on_seed_only(data):
    again = DateTranslationData(num_train=2000, num_val=300, num_test=300, seed=0)
    assert again.test_pairs == data.test_pairs and again.train_pairs == data.train_pairs
    other = DateTranslationData(num_train=2000, num_val=300, num_test=300, seed=1)
    assert other.test_pairs != data.test_pairs
    # the vocabularies do not depend on seed or size: checkpoints move between them
    assert other.src_vocab.idx_to_token == data.src_vocab.idx_to_token
    assert other.tgt_vocab.idx_to_token == data.tgt_vocab.idx_to_token


def test_no_source_character_is_unknown(data):
    for split in (data.train_pairs, data.val_pairs, data.test_pairs):
        for source, _ in split:
            assert data.src_vocab.unk_id not in data.src_vocab.encode(list(source))
    assert len(data.tgt_vocab) == 4 + 11  # specials, 10 digits and "-"


def check_batch(batch, pairs, data):
    """Shapes, dtypes, padding, valid_lens, <bos>/<eos> placement, and the content."""
    assert isinstance(batch, tuple) and len(batch) == 5 and isinstance(batch, TranslationBatch)
    src, src_valid_lens, tgt_in, tgt_out, tgt_valid_lens = batch
    B = len(pairs)
    assert all(t.dtype == torch.long for t in batch)
    assert src.dim() == 2 and src.shape[0] == B and src_valid_lens.shape == (B,)
    assert tgt_in.shape == tgt_out.shape and tgt_in.shape[0] == B and tgt_valid_lens.shape == (B,)
    sv, tv = data.src_vocab, data.tgt_vocab
    for b, (source, target) in enumerate(pairs):
        n, m = int(src_valid_lens[b]), int(tgt_valid_lens[b])
        assert n == len(source) + 1 and m == len(target) + 1
        assert src[b, :n].tolist() == sv.encode(list(source), add_eos=True)
        assert (src[b, n:] == sv.pad_id).all()
        assert tgt_in[b, 0] == tv.bos_id and tgt_out[b, m - 1] == tv.eos_id
        assert tgt_in[b, 1:m].tolist() == tgt_out[b, :m - 1].tolist() == tv.encode(list(target))
        assert (tgt_in[b, m:] == tv.pad_id).all() and (tgt_out[b, m:] == tv.pad_id).all()
    assert data.decode_targets(tgt_out) == [t for _, t in pairs]


def test_batches_have_the_documented_format(data):
    loader = data.val_dataloader()
    assert len(loader) == math.ceil(300 / 64)
    start = 0
    for batch in loader:
        check_batch(batch, data.val_pairs[start:start + len(batch.src)], data)
        start += len(batch.src)
    assert start == 300


def test_training_loader_covers_each_pair_once_per_epoch(data):
    seen = []
    for batch in data.train_dataloader():
        assert batch.src.shape[0] <= 64
        seen += data.decode_targets(batch.tgt_out)
    assert sorted(seen) == sorted(t for _, t in data.train_pairs)
    assert seen != [t for _, t in data.train_pairs]  # shuffled
    unshuffled = [t for batch in data.train_dataloader(shuffle=False)
                  for t in data.decode_targets(batch.tgt_out)]
    assert unshuffled == [t for _, t in data.train_pairs]


def _order(data, epochs=2):
    return [batch.tgt_out.tolist() for _ in range(epochs) for batch in data.train_dataloader()]


def test_loader_order_is_reproducible():
    make = lambda seed: DateTranslationData(num_train=300, num_val=10, num_test=10, seed=seed,
                                            batch_size=32)
    first, second = _order(make(5)), _order(make(5))
    assert first == second
    data = make(5)
    epoch_1, epoch_2 = _order(data, 1), _order(data, 1)
    assert epoch_1 != epoch_2  # each epoch has its own order ...
    assert first == epoch_1 + epoch_2  # ... and the sequence of epochs repeats
    # a checkpoint of the generator resumes the same order; a trainer finds it on the loader
    assert data.train_dataloader().batch_sampler.sampler.generator is data.generator
    state = data.generator.get_state()
    epoch_3 = _order(data, 1)
    data.generator.set_state(state)
    assert _order(data, 1) == epoch_3


def test_encode_sources_and_decode_targets(data):
    sources = [s for s, _ in data.test_pairs[:7]]
    src, valid_lens = data.encode_sources(sources)
    assert src.shape == (7, max(len(s) for s in sources) + 1)
    expected = data.test_tensors.src[:7, :src.shape[1]]
    assert torch.equal(src, expected) and torch.equal(valid_lens, data.test_tensors.src_valid_lens[:7])
    ids = [data.tgt_vocab.encode(list("2001-02-03"), add_bos=True, add_eos=True) + [0, 0]]
    assert data.decode_targets(ids) == ["2001-02-03"]
    assert data.decode_targets(torch.tensor(ids)) == ["2001-02-03"]
    with pytest.raises(TypeError, match="sources must be a list"):
        data.encode_sources("1 May 2000")
    with pytest.raises(ValueError, match=r"ids must be 2-D \(B, T\), got shape \(3,\)"):
        data.decode_targets(torch.tensor([1, 2, 3]))


def test_translation_tensors_rejects_mismatched_lists(data):
    with pytest.raises(ValueError, match="src_token_lists has 2 sequences but tgt_token_lists has 1"):
        translation_tensors([["a"], ["b"]], [["1"]], data.src_vocab, data.tgt_vocab)


def test_batch_moves_to_device(data, device):
    batch = next(iter(data.val_dataloader())).to(device)
    assert isinstance(batch, TranslationBatch)
    assert all(t.device.type == device.type for t in batch)


def test_bad_sizes():
    with pytest.raises(ValueError, match="num_val must be >= 0, got -1"):
        DateTranslationData(num_train=10, num_val=-1, num_test=1)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        DateTranslationData(num_train=10, num_val=1, num_test=1, batch_size=0)


# --- Tatoeba preprocessing (the loader itself is tested in test_download.py) ---------------------

SENTENCES = ["Go.", "Va\u202f!", "Hi, Tom.", "Qu'est-ce que c'est\u00a0?", "Wait...",
             "Je suis « libre »\u202f!", "I won!", "Really?!", "  spaced   out , ok  "]


@pytest.mark.parametrize("sentence", SENTENCES)
def test_preprocess_matches_d2l(d2l, sentence):
    assert preprocess_sentence(sentence) == d2l.MTFraEng._preprocess(None, sentence)


def test_tokenize_words():
    assert tokenize_words("Va\u202f!") == ["va", "!"]
    assert tokenize_words("Hi, Tom.") == ["hi", ",", "tom", "."]
    assert tokenize_words("Qu'est-ce que c'est\u00a0?") == ["qu'est-ce", "que", "c'est", "?"]
