"""Corpora: the offline stories and docstrings, sentence splitting, and the download loaders
(against a local HTTP server on 127.0.0.1 only)."""
from __future__ import annotations

import hashlib
import inspect
import io
import math
import re
import socket
import textwrap
import threading
import zipfile
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkvcourse.data.corpus import (DEFAULT_NUM_CHARS, TINY_SHAKESPEARE_SHA256,
                                   TINY_SHAKESPEARE_URL, WIKITEXT2_SHA1, WIKITEXT2_URLS,
                                   char_entropy, generate_stories, load_offline_corpus,
                                   load_tiny_shakespeare, load_wikitext2, paragraphs,
                                   split_sentences, stdlib_docstrings, train_val_split)
from qkvcourse.data.download import CACHE_ENV_VAR, ChecksumError, DownloadError

TIMEOUT = 5.0  # seconds: no test waits on the local server longer than this per read

# sha256 of load_offline_corpus() (the stories, seed 0). It is the same on every Python
# version; if the grammar is changed on purpose, update it (and the book's outputs).
PINNED_STORIES_SHA256 = "e90ef02d1c68d41a07db7ad160375c515f387e65deb7969256f39e4ba3a8eae5"


@pytest.fixture(scope="module")
def stories() -> str:
    return load_offline_corpus()


@pytest.fixture(scope="module")
def docstrings() -> str:
    return load_offline_corpus("stdlib")


def ngram_bits_per_char(train: str, val: str, n: int = 4, k: float = 0.01) -> float:
    """Cross-entropy (bits per character) on ``val`` of an add-k smoothed character
    n-gram model counted on ``train``: a cheap stand-in for a small language model."""
    alphabet = set(train) | set(val)
    counts: dict[str, Counter] = defaultdict(Counter)
    for i in range(n - 1, len(train)):
        counts[train[i - n + 1:i]][train[i]] += 1
    total = 0.0
    for i in range(n - 1, len(val)):
        seen = counts.get(val[i - n + 1:i], Counter())
        p = (seen[val[i]] + k) / (sum(seen.values()) + k * len(alphabet))
        total -= math.log2(p)
    return total / (len(val) - n + 1)


# --- the offline corpora -------------------------------------------------------------------------


def test_stories_size_and_statistics(stories):
    assert 0.99 * DEFAULT_NUM_CHARS < len(stories) <= DEFAULT_NUM_CHARS
    assert stories.endswith("\n") and not stories.startswith("\n")
    entropy = char_entropy(stories)
    assert 4.0 < entropy < 4.7, entropy  # like English text (about 4.1 to 4.4 bits)
    words = Counter(re.findall(r"[A-Za-z]+", stories))
    assert len(words) > 400 and len(set(stories)) > 50
    assert words.most_common(1)[0][1] < 0.1 * sum(words.values())  # no word dominates


def test_stories_are_deterministic(stories):
    assert load_offline_corpus() == stories
    assert load_offline_corpus("stories", seed=0, num_chars=DEFAULT_NUM_CHARS) == stories
    assert generate_stories(20_000, seed=1) != stories[:20_000]
    small = generate_stories(20_000, seed=3)
    assert small == generate_stories(20_000, seed=3) and len(small) <= 20_000
    # a prefix of the stories does not depend on how many are asked for
    assert stories.startswith(load_offline_corpus(num_chars=50_000)[:-1])


def test_stories_are_pinned(stories):
    """The same text on every Python version and platform (the book's outputs rely on it)."""
    digest = hashlib.sha256(stories.encode("utf-8")).hexdigest()
    assert digest == PINNED_STORIES_SHA256, (
        "the generated stories changed; if the grammar was changed on purpose, update "
        f"PINNED_STORIES_SHA256 to {digest} and re-run the GPT/BERT chapters")


def test_stories_have_structure(stories):
    """What a model can learn from them: names that come back, a beginning and an end."""
    paras = paragraphs(stories)
    assert len(paras) > 1000 and paras == paragraphs(stories, min_sentences=8)
    key_opens_gate = fear_faced = 0
    for sentences in paras:
        first, last = sentences[0], sentences[-1]
        assert first.startswith(("Once upon a time, there was", "Long ago,")), first
        name = re.search(r"(?:named|called) ([A-Z][a-z]+)", first).group(1)
        assert name in last, (name, last)  # the hero comes back at the end
        story = " ".join(sentences)
        if "golden key" in story and "a gate that was locked" in story:
            assert "tried the golden key" in story
            key_opens_gate += 1
        if "was never afraid of" in last:
            fear = re.search(r"afraid of (.+) again\.$", last).group(1)
            assert fear in sentences[1]  # the fear told in the second sentence
            fear_faced += 1
    assert key_opens_gate > 5 and fear_faced > 5


@pytest.mark.parametrize("name", ["stories", "stdlib"])
def test_context_predicts_far_better_than_character_frequencies(name, stories, docstrings):
    """A 4-gram model already beats the unigram entropy by far on held-out text, so a
    small Transformer has much to learn (and its validation loss is meaningful)."""
    text = stories if name == "stories" else docstrings
    train, val = train_val_split(text[:400_000], 0.1)
    unigram = char_entropy(train)
    bits = ngram_bits_per_char(train, val)
    assert bits < unigram - 1.5, (bits, unigram)


def test_docstring_corpus(docstrings):
    assert 300_000 < len(docstrings) < 2_000_000
    assert docstrings == load_offline_corpus("stdlib")  # deterministic
    assert 4.0 < char_entropy(docstrings) < 5.5
    assert len(set(re.findall(r"[A-Za-z]+", docstrings))) > 5000
    # one docstring per paragraph, blank lines inside it made single newlines
    dedent_doc = re.sub(r"\n\s*\n", "\n", inspect.cleandoc(textwrap.dedent.__doc__))
    assert f"\n\n{dedent_doc}\n\n" in docstrings
    assert load_offline_corpus("stdlib", seed=1) != docstrings
    assert sorted(load_offline_corpus("stdlib", seed=1).strip().split("\n\n")) == \
        sorted(docstrings.strip().split("\n\n"))  # the same docstrings, another order
    cut = load_offline_corpus("stdlib", num_chars=100_000)
    assert len(cut) <= 100_000 and docstrings.startswith(cut[:-1])


def test_no_docstrings_says_why():
    with pytest.raises(RuntimeError, match=r"-OO.*load_offline_corpus\('stories'\)"):
        stdlib_docstrings(modules=("qkvcourse_no_such_module",))


def test_offline_bad_input():
    with pytest.raises(ValueError, match=r"name must be one of \('stories', 'stdlib'\), "
                                         r"got 'shakespeare'"):
        load_offline_corpus("shakespeare")
    with pytest.raises(ValueError, match="num_chars=100 is shorter than one story"):
        generate_stories(100)
    with pytest.raises(ValueError, match="num_chars must be an int >= 1, got 0"):
        load_offline_corpus(num_chars=0)
    with pytest.raises(ValueError, match="num_chars must be an int >= 1, got 2.5"):
        load_offline_corpus("stdlib", num_chars=2.5)


# --- measuring, sentences, paragraphs, splits ----------------------------------------------------


def test_char_entropy():
    assert char_entropy("aabb") == pytest.approx(1.0)
    assert char_entropy("aaaa") == 0.0
    assert char_entropy("abcd" * 10) == pytest.approx(2.0)
    p = 2 / 3  # "aab": a with probability 2/3, b with 1/3
    assert char_entropy("aab") == pytest.approx(-p * math.log2(p) - (1 - p) * math.log2(1 - p))
    with pytest.raises(ValueError, match="text must not be empty"):
        char_entropy("")
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        char_entropy(b"abc")


def test_split_sentences():
    assert split_sentences('He ran. "Stop!" she said. Then it rained.') == [
        "He ran.", '"Stop!" she said.', "Then it rained."]
    assert split_sentences('"Is it far?" asked Pip. "Not far," said Tara. "Come!"') == [
        '"Is it far?" asked Pip.', '"Not far," said Tara.', '"Come!"']
    # lower case after a full stop, or a decimal point, does not end a sentence
    assert split_sentences("Use e.g. the map. Pi is 3.14 or so.\nIt ends (here.) Now") == [
        "Use e.g. the map.", "Pi is 3.14 or so.", "It ends (here.)", "Now"]
    assert split_sentences("  one\n  line  wrapped.   ") == ["one line wrapped."]
    assert split_sentences("") == [] and split_sentences("\n \n") == []
    # WikiText style: tokens separated by spaces
    assert split_sentences(" The game began in 2010 . It was released in Japan . ") == [
        "The game began in 2010 .", "It was released in Japan ."]


def test_paragraphs():
    text = "A one. A two.\n\nB one.\n  \t\nC one. C two!\nC three?\n\n\n"
    assert paragraphs(text) == [["A one.", "A two."], ["B one."],
                                ["C one.", "C two!", "C three?"]]
    assert paragraphs(text, min_sentences=2) == [["A one.", "A two."],
                                                 ["C one.", "C two!", "C three?"]]
    wiki = " = Title = \n The first . The second . \n Another paragraph . It goes on . \n"
    assert paragraphs(wiki, min_sentences=2, one_per_line=True) == [
        ["The first .", "The second ."], ["Another paragraph .", "It goes on ."]]
    with pytest.raises(ValueError, match="min_sentences must be an int >= 1, got 0"):
        paragraphs(text, min_sentences=0)
    with pytest.raises(TypeError, match="text must be a str, got list"):
        paragraphs(["A one."])


def test_train_val_split(stories):
    train, val = train_val_split(stories, 0.1)
    assert train + val == stories
    assert train.endswith("\n\n") and val[0].isupper()  # cut between two stories
    assert abs(len(val) / len(stories) - 0.1) < 0.01
    assert not set(paragraphs(train)[-1]) & set(paragraphs(val)[0])
    exact_train, exact_val = train_val_split("abcdefghij", 0.3)
    assert (exact_train, exact_val) == ("abcdefg", "hij")  # no blank line: exact cut
    assert train_val_split("aaaa\n\nbbbb\n\ncc", 0.25) == ("aaaa\n\nbbbb\n\n", "cc")
    assert train_val_split("aaaa\n\nbbbb\n\ncc", 0.5) == ("aaaa\n\n", "bbbb\n\ncc")
    assert train_val_split("aaaa\n\nbbbb", 0.5, at_paragraph=False) == ("aaaa\n", "\nbbbb")
    for bad in (0, 1, 1.5, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match=f"val_fraction must be a number in \\(0, 1\\), "
                                             f"got {re.escape(repr(bad))}"):
            train_val_split(stories, bad)
    with pytest.raises(ValueError, match="text of 1 characters is too short"):
        train_val_split("a", 0.5)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab \n", min_size=2), st.floats(0.05, 0.95), st.booleans())
def test_train_val_split_keeps_every_character(text, fraction, at_paragraph):
    try:
        train, val = train_val_split(text, fraction, at_paragraph)
    except ValueError as e:
        assert "too short" in str(e)
        return
    assert train + val == text and train and val


# --- downloads, against a local server -----------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.routes.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()

    def serve(path: str, body: bytes) -> str:
        httpd.routes[path] = body
        return f"http://127.0.0.1:{httpd.server_address[1]}{path}"

    httpd.serve = serve
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def dead_url(path: str) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket is closed
    return f"http://127.0.0.1:{port}{path}"


SHAKESPEARE = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
               "All:\nSpeak, speak.\n" * 300).encode("ascii")


def test_tiny_shakespeare(server, tmp_path):
    url = server.serve("/input.txt", SHAKESPEARE)
    sha256 = hashlib.sha256(SHAKESPEARE).hexdigest()
    text = load_tiny_shakespeare(tmp_path, url=url, sha256=sha256, timeout=TIMEOUT)
    assert text == SHAKESPEARE.decode() and (tmp_path / "tiny_shakespeare.txt").is_file()
    assert load_tiny_shakespeare(tmp_path, url=url, sha256=sha256, timeout=TIMEOUT) == text
    assert server.requests == ["/input.txt"]  # the second call used the verified cache
    sha1 = hashlib.sha1(SHAKESPEARE).hexdigest()  # a sha1 alone is accepted too
    assert load_tiny_shakespeare(tmp_path, url=url, sha256=None, sha1=sha1) == text


def test_tiny_shakespeare_cache_from_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "env"))
    url = server.serve("/input.txt", SHAKESPEARE)
    load_tiny_shakespeare(url=url, sha256=hashlib.sha256(SHAKESPEARE).hexdigest())
    assert (tmp_path / "env" / "tiny_shakespeare.txt").read_bytes() == SHAKESPEARE


def test_tiny_shakespeare_corrupt(server, tmp_path):
    url = server.serve("/input.txt", SHAKESPEARE[:-1] + b"?")
    sha256 = hashlib.sha256(SHAKESPEARE).hexdigest()
    with pytest.raises(ChecksumError, match=f"sha256 .*expected {sha256}"):
        load_tiny_shakespeare(tmp_path, url=url, sha256=sha256, timeout=TIMEOUT)
    assert list(tmp_path.iterdir()) == []  # nothing kept, no temporary file left


def test_tiny_shakespeare_offline(tmp_path):
    url = dead_url("/input.txt")
    with pytest.raises(DownloadError) as caught:
        load_tiny_shakespeare(tmp_path, url=url, timeout=TIMEOUT)
    message = str(caught.value)
    assert url in message and str(tmp_path / "tiny_shakespeare.txt") in message
    assert TINY_SHAKESPEARE_SHA256 in message and "generated" in message
    assert list(tmp_path.iterdir()) == []


def test_loaders_refuse_to_run_unverified(tmp_path):
    with pytest.raises(ValueError, match=r"load_tiny_shakespeare verifies every download and "
                                         r"needs a checksum \(sha256= or sha1=\)"):
        load_tiny_shakespeare(tmp_path, sha256=None)
    with pytest.raises(ValueError, match="load_wikitext2 verifies every download"):
        load_wikitext2(tmp_path, sha1=None)
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'valid', 'test'\), "
                                         r"got 'validation'"):
        load_wikitext2(tmp_path, split="validation")
    assert list(tmp_path.iterdir()) == []  # refused before any download


def wikitext_zip() -> tuple[bytes, dict[str, str]]:
    splits = {split: f" = {split.title()} = \n \n The {split} text . It has <unk> words . \n"
              for split in ("train", "valid", "test")}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for split, text in splits.items():
            archive.writestr(f"wikitext-2/wiki.{split}.tokens", text.encode("utf-8"))
    return buffer.getvalue(), splits


def test_wikitext2(server, tmp_path):
    body, splits = wikitext_zip()
    url = server.serve("/wikitext-2-v1.zip", body)
    sha1 = hashlib.sha1(body).hexdigest()
    for split, text in splits.items():
        assert load_wikitext2(tmp_path, split, url=url, sha1=sha1, timeout=TIMEOUT) == text
    assert server.requests == ["/wikitext-2-v1.zip"]  # downloaded once, extracted once
    assert (tmp_path / "wikitext-2-v1" / "wikitext-2" / "wiki.valid.tokens").is_file()
    assert paragraphs(load_wikitext2(tmp_path, url=url, sha1=sha1), 2, one_per_line=True) == [
        ["The train text .", "It has <unk> words ."]]


def test_wikitext2_mirrors(server, tmp_path):
    body, splits = wikitext_zip()
    sha1 = hashlib.sha1(body).hexdigest()
    good = server.serve("/mirror/wikitext-2-v1.zip", body)
    bad = server.serve("/bad/wikitext-2-v1.zip", body + b"tampered")
    # the first source is unreachable: the mirror is used
    text = load_wikitext2(tmp_path / "a", url=(dead_url("/w.zip"), good), sha1=sha1,
                          timeout=TIMEOUT)
    assert text == splits["train"]
    # a mirror with other bytes is refused, and the next one is tried
    assert load_wikitext2(tmp_path / "b", url=(bad, good), sha1=sha1) == splits["train"]
    # every source fails: the error lists them all
    with pytest.raises(ChecksumError, match=r"None of the 2 sources of wikitext-2-v1.zip"):
        load_wikitext2(tmp_path / "c", url=(dead_url("/w.zip"), bad), sha1=sha1,
                       timeout=TIMEOUT)
    with pytest.raises(DownloadError, match=r"(?s)None of the 2 sources.*\[1/2\].*\[2/2\]"):
        load_wikitext2(tmp_path / "d", url=(dead_url("/1.zip"), dead_url("/2.zip")),
                       sha1=sha1, timeout=TIMEOUT)
    assert not (tmp_path / "c" / "wikitext-2-v1.zip").exists()


def test_recorded_sources(d2l):
    """The WikiText-2 source is d2l's; the Tiny Shakespeare checksum is a sha256."""
    assert d2l.DATA_HUB["wikitext-2"] == (WIKITEXT2_URLS[0], WIKITEXT2_SHA1)
    assert re.fullmatch(r"[0-9a-f]{64}", TINY_SHAKESPEARE_SHA256)
    assert TINY_SHAKESPEARE_URL.endswith("karpathy/char-rnn/master/data/tinyshakespeare/input.txt")
