"""Tokenizers: CharTokenizer and byte-level BPE, against a naive from-scratch reference."""
from __future__ import annotations

import json
import random
import time
from collections import Counter
from functools import lru_cache

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qkvcourse.data.corpus import load_offline_corpus
from qkvcourse.data.text import (PRE_TOKENIZE_PATTERN, BPETokenizer, CharTokenizer,
                                 pre_tokenize)

EOT = "<|endoftext|>"
TRICKY = [
    "", " ", "\n", "\r\n\t", "a", "héllo wörld", "e\u0301", "naïve café", "😀", "👩‍👩‍👧‍👦 family",
    "日本語のテキスト", "שלום עולם", "\x00\x01\x1b[31m\x7f", "\ufeffBOM", "\ufffd", "a  b   c",
    "it's they're we'll", "__init__", "3.14159 and 2,000,000", "tab\there", "zero\u200bwidth",
    EOT, f"a{EOT}b{EOT}{EOT}", "<|endof", "text|>",
]


# --- a naive reference: recount every pair over the whole corpus for every merge ---------------


def naive_bpe(text: str, num_merges: int, special_tokens=(), min_frequency: int = 2):
    """Sennrich et al.'s Algorithm 1 on bytes, written the slow, obvious way.

    Returns ``(merges, segmentation)``: the learned pairs, and each distinct piece of the
    training text as the list of ids it ends up as.
    """
    chunks = [text]
    for special in special_tokens:
        chunks = [part for chunk in chunks for part in chunk.split(special)]
    counts = Counter(p for chunk in chunks for p in pre_tokenize(chunk))
    words = {piece: list(piece.encode("utf-8")) for piece in counts}
    merges = []
    for _ in range(num_merges):
        pairs = Counter()
        for piece, ids in words.items():
            for pair in zip(ids, ids[1:]):
                pairs[pair] += counts[piece]
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))  # most frequent, then smallest ids
        if pairs[best] < min_frequency:
            break
        new_id = 256 + len(merges)
        merges.append(best)
        for piece, ids in words.items():
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            words[piece] = out
    return merges, words


def mixed_text(seed: int = 0, size: int = 20_000) -> str:
    """English-like stories, then random words over a small multilingual alphabet."""
    rng = random.Random(seed)
    alphabet = "abcdeéöß日本😀 ,.!?'\n"
    noise = "".join(rng.choice(alphabet) for _ in range(size // 4))
    return load_offline_corpus(num_chars=size)[: size - len(noise)] + noise


@lru_cache(maxsize=None)
def trained() -> BPETokenizer:
    return BPETokenizer.train(mixed_text(), vocab_size=600, special_tokens=(EOT, "[MASK]"))


# --- pre-tokenisation ----------------------------------------------------------------------------


def test_pre_tokenize_example():
    assert pre_tokenize("Hello, world!  It's 2024\n\nBye") == [
        "Hello", ",", " world", "!", " ", " It", "'s", " 2024", "\n\n", "Bye"]
    assert pre_tokenize("") == [] and pre_tokenize("abc def", pattern=None) == ["abc def"]
    # characters a custom pattern does not match are kept as pieces of their own
    assert pre_tokenize("ab12cd", pattern=r"[a-z]+") == ["ab", "12", "cd"]


@settings(max_examples=300, deadline=None)
@given(st.text())
@example("e\u0301\u0301x")
def test_pre_tokenize_covers_the_text(text):
    pieces = pre_tokenize(text)
    assert "".join(pieces) == text and all(pieces)


# --- byte-level BPE: round trips -----------------------------------------------------------------


@pytest.mark.parametrize("text", TRICKY)
def test_bpe_round_trip_tricky(text):
    tok = trained()
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text, allow_special=False)) == text


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_bpe_round_trip_any_text(text):
    tok = trained()
    ids = tok.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids, dtype=torch.long)) == text  # a (T,) tensor works too
    assert tok.decode_bytes(ids) == text.encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([EOT, "[MASK]", "<|", "endof", "text", "|>", "[", "MASK", "]",
                                 " ", "a", "é", "😀", "\n"]), max_size=30))
def test_special_tokens_are_never_split(parts):
    tok = trained()
    text = "".join(parts)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    eot, mask = tok.special_id(EOT), tok.special_id("[MASK]")
    assert ids.count(eot) == text.count(EOT) and ids.count(mask) == text.count("[MASK]")
    plain = tok.encode(text, allow_special=False)  # special strings read as ordinary text
    assert eot not in plain and mask not in plain and tok.decode(plain) == text


def test_special_tokens_take_no_part_in_training():
    text = f"hello world{EOT}" * 200 + "[MASK] said the mask" * 50
    tok = BPETokenizer.train(text, vocab_size=400, special_tokens=(EOT, "[MASK]"))
    assert tok.special_tokens == [EOT, "[MASK]"]
    assert [tok.special_id(EOT), tok.special_id("[MASK]")] == [tok.vocab_size - 2,
                                                               tok.vocab_size - 1]
    learned = [tok.vocab[256 + r] for r in range(len(tok.merges))]
    assert learned, "some merges should have been learned"
    for fragment in (b"<|", b"|>", b"endoftext", b"[M", b"K]"):
        assert not any(fragment in t for t in learned), fragment
    ids = tok.encode(f"hello{EOT}world")
    assert ids.count(tok.special_id(EOT)) == 1 and tok.decode(ids) == f"hello{EOT}world"
    # a special token added later (as for GPT fine-tuning) gets the next id
    assert tok.add_special_tokens(["<delim>", EOT]) == [tok.vocab_size - 1, tok.vocab_size - 3]
    assert tok.encode("a<delim>b")[1] == tok.special_id("<delim>")


# --- byte-level BPE: what training learns ---------------------------------------------------------


def test_wikipedia_example():
    """``aaabdaaabac``: aa -> Z, then ab -> Y (tie with Za, smaller ids first), then ZY -> X."""
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=300, pre_tokenize=None)
    a, b = ord("a"), ord("b")
    assert tok.merges == [(a, a), (a, b), (256, 257)]  # then every pair occurs only once
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, a, ord("c")]
    assert tok.vocab[258] == b"aaab"


def test_sennrich_example_first_merges():
    """The words of Sennrich et al. (2016), Fig. 1: low x5, lower x2, newest x6, widest x3."""
    text = " low" * 5 + " lower" * 2 + " newest" * 6 + " widest" * 3
    tok = BPETokenizer.train(text, vocab_size=256 + 5)
    # "es" and "st" both occur 9 times: the tie goes to the smaller pair of ids, (e, s);
    # then " l", "lo", "ow" occur 7 times; after " l" it is (o, w) < (" l", o)
    assert [tok.vocab[256 + r] for r in range(5)] == [b"es", b"est", b" l", b"ow", b" low"]
    assert tok.tokenize(" lowest") == [" low", "est"]  # a word never seen: known parts


@pytest.mark.parametrize("seed", [0, 1])
def test_training_matches_the_naive_reference(seed):
    text = mixed_text(seed, size=12_000)
    specials = (EOT,)
    text = text.replace("\n\n", EOT, 3)
    tok = BPETokenizer.train(text, vocab_size=256 + 150 + 1, special_tokens=specials)
    merges, segmentation = naive_bpe(text, 150, specials)
    assert tok.merges == merges
    # encoding a training piece replays what training did to it
    for piece, ids in segmentation.items():
        assert tok.encode(piece) == ids, piece


def test_training_stops_when_no_pair_repeats():
    tok = BPETokenizer.train("abcdefg", vocab_size=1000)
    assert tok.merges == [] and tok.vocab_size == 256
    assert BPETokenizer.train("abab abab", vocab_size=1000, min_frequency=3).merges == [
        (ord("a"), ord("b"))]  # "ab" 4 times; then (ab, ab) twice < 3


def test_merges_reduce_the_token_count():
    text = load_offline_corpus(num_chars=50_000)
    lengths = [len(BPETokenizer.train(text, vocab_size=v).encode(text))
               for v in (256, 300, 400, 600)]
    assert lengths[0] == len(text.encode("utf-8"))
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) == 4
    assert lengths[-1] < lengths[0] / 2.5  # a few hundred merges: over 2.5 bytes per token


def test_training_is_deterministic_and_order_independent():
    words = load_offline_corpus(num_chars=20_000).split()
    forward = "".join(" " + w for w in words)
    backward = "".join(" " + w for w in reversed(words))  # the same pieces, other order
    first = BPETokenizer.train(forward, vocab_size=500)
    assert first == BPETokenizer.train(forward, vocab_size=500)
    assert first.merges == BPETokenizer.train(backward, vocab_size=500).merges


def test_training_a_megabyte_is_fast():
    text = load_offline_corpus()  # ~1 MB
    start = time.perf_counter()
    tok = BPETokenizer.train(text, vocab_size=1024)
    elapsed = time.perf_counter() - start
    assert len(tok.merges) == 1024 - 256
    assert elapsed < 15.0, f"training on 1 MB took {elapsed:.1f} s"


# --- saving ------------------------------------------------------------------------------------


def test_bpe_save_load(tmp_path):
    tok = trained()
    path = tok.save(tmp_path / "bpe.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["kind"] == "BPETokenizer" and len(data["merges"]) == len(tok.merges)
    again = BPETokenizer.load(path)
    assert again == tok and again.vocab == tok.vocab and again.pattern == PRE_TOKENIZE_PATTERN
    sample = "Once upon a time 😀" + EOT + "[MASK] end"
    assert again.encode(sample) == tok.encode(sample)
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(ValueError, match="does not hold a saved CharTokenizer"):
        CharTokenizer.load(path)


def test_char_save_load(tmp_path):
    tok = CharTokenizer.from_text("hello\nworld \"quoted\" 😀 \x00")
    again = CharTokenizer.load(tok.save(tmp_path / "char.json"))
    assert again == tok and again.encode("hello 😀") == tok.encode("hello 😀")
    with pytest.raises(ValueError, match="does not hold a saved BPETokenizer"):
        BPETokenizer.load(tmp_path / "char.json")


# --- CharTokenizer -------------------------------------------------------------------------------


def test_char_tokenizer_ids():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == [" ", "d", "e", "h", "l", "o", "r", "w"] and tok.vocab_size == 9
    assert tok.encode("hold") == [4, 6, 5, 2]
    assert tok.encode("hi!") == [4, tok.unk_id, tok.unk_id]
    assert tok.decode(tok.encode("hold!")) == "hold<unk>"
    assert CharTokenizer.from_text("ab", unk_token="?").decode([0, 1, 2]) == "?ab"


@st.composite
def alphabet_and_text(draw):
    build = draw(st.text(min_size=1))
    text = draw(st.text(alphabet=sorted(set(build))))
    return build, text


@settings(max_examples=300, deadline=None)
@given(alphabet_and_text(), st.text())
def test_char_round_trip(build_and_text, other):
    build, text = build_and_text
    tok = CharTokenizer.from_text(build)
    assert tok.decode(tok.encode(text)) == text
    ids = tok.encode(other)  # any text: unseen characters become <unk>
    assert len(ids) == len(other)
    assert [i == tok.unk_id for i in ids] == [c not in set(build) for c in other]


# --- bad input -----------------------------------------------------------------------------------


def test_bad_input():
    tok = trained()
    with pytest.raises(ValueError, match=r"vocab_size must be at least 256 \(bytes\) \+ 2 "
                                         r"\(special tokens\) = 258, got 257"):
        BPETokenizer.train("abc", vocab_size=257, special_tokens=("<a>", "<b>"))
    with pytest.raises(ValueError, match=r"vocab_size must be at least 256 .* got 100"):
        BPETokenizer.train("abc", vocab_size=100)
    with pytest.raises(TypeError, match="vocab_size must be an int, got float"):
        BPETokenizer.train("abc", vocab_size=300.0)
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        BPETokenizer.train(b"abc", vocab_size=300)
    with pytest.raises(TypeError, match="text must be a str, got list"):
        tok.encode(["a", "b"])
    with pytest.raises(TypeError, match="text must be a str, got int"):
        CharTokenizer.from_text("abc").encode(5)
    with pytest.raises(TypeError, match="special_tokens must be a sequence of strings, got a str"):
        BPETokenizer.train("abc", vocab_size=300, special_tokens=EOT)
    with pytest.raises(ValueError, match="special tokens must be non-empty strings, got ''"):
        BPETokenizer.train("abc", vocab_size=300, special_tokens=("",))
    with pytest.raises(ValueError, match="min_frequency must be an int >= 1, got 0"):
        BPETokenizer.train("abc", vocab_size=300, min_frequency=0)
    with pytest.raises(ValueError, match=f"ids holds 600, outside the vocabulary's ids 0..599"):
        tok.decode([1, 600])
    with pytest.raises(ValueError, match="ids holds -1"):
        CharTokenizer.from_text("abc").decode([-1])
    with pytest.raises(TypeError, match="ids must be a sequence of integer ids, got str"):
        tok.decode("abc")
    with pytest.raises(ValueError, match=r"ids must be 0-D or 1-D, got shape \(2, 3\)"):
        tok.decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="ids must hold integer ids, got dtype torch.float32"):
        tok.decode(torch.zeros(3))
    with pytest.raises(ValueError, match="lone surrogate '\\\\ud800' at position 1"):
        tok.encode("a\ud800b")
    with pytest.raises(ValueError, match=r"merges\[1\] = \(258, 97\) refers to an id that does "
                                         r"not exist yet"):
        BPETokenizer([(97, 97), (258, 97)])
    with pytest.raises(KeyError, match="'<nope>' is not a special token"):
        tok.special_id("<nope>")
    with pytest.raises(ValueError, match="chars must hold single characters, got 'ab'"):
        CharTokenizer(["a", "ab"])
    with pytest.raises(ValueError, match="chars must be distinct, got 'a' more than once"):
        CharTokenizer(["a", "b", "a"])
