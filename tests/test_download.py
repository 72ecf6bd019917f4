"""download(), extract() and TatoebaData against a local HTTP server (127.0.0.1 only)."""
from __future__ import annotations

import hashlib
import io
import os
import random
import re
import socket
import threading
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch

from qkvcourse.data.download import (CACHE_ENV_VAR, ChecksumError, DownloadError, download,
                                     extract, get_cache_dir)
from qkvcourse.data.translation import TatoebaData, tokenize_words

PAYLOAD = random.Random(0).randbytes(200_000)  # several network chunks
SHA1 = hashlib.sha1(PAYLOAD).hexdigest()
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
TIMEOUT = 5.0  # seconds: no test can wait on the server longer than this per read


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes[path] = (kind, body)``; kind "ok" or "truncated"."""

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("User-Agent", "")))
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        kind, body = route
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        declared = len(body) * 2 if kind == "truncated" else len(body)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(body)  # "truncated": half of what was declared, then the socket closes
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):  # keep the test output clean
        pass


class LocalServer:
    def __init__(self):
        self.httpd = HTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes, self.httpd.requests = {}, []
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve(self, path: str, body: bytes, kind: str = "ok") -> str:
        self.httpd.routes[path] = (kind, body)
        return self.url(path)

    def requests_for(self, path: str) -> int:
        return sum(p == path for p, _ in self.httpd.requests)


@pytest.fixture
def server():
    srv = LocalServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
        srv.thread.join(timeout=5)
        assert not srv.thread.is_alive()


def leftovers(folder: Path) -> list[str]:
    """Temporary files a download or extraction may have left (there must be none)."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


# --- download ----------------------------------------------------------------------------------


def test_fresh_download_is_verified_and_cached(server, tmp_path):
    url = server.serve("/data/payload.bin", PAYLOAD)
    path = download(url, sha1=SHA1, sha256=SHA256, cache_dir=tmp_path, timeout=TIMEOUT)
    assert path == tmp_path / "payload.bin" and path.read_bytes() == PAYLOAD
    assert server.requests_for("/data/payload.bin") == 1
    assert server.httpd.requests[0][1].startswith("qkvcourse")  # a User-Agent is sent
    assert leftovers(tmp_path) == []


def test_second_call_is_served_from_the_cache(server, tmp_path):
    url = server.serve("/payload.bin", PAYLOAD)
    first = download(url, sha1=SHA1, cache_dir=tmp_path, timeout=TIMEOUT)
    second = download(url, sha1=SHA1, cache_dir=tmp_path, timeout=TIMEOUT)
    third = download(url, cache_dir=tmp_path, timeout=TIMEOUT)  # no checksum: trusted as is
    assert first == second == third
    assert server.requests_for("/payload.bin") == 1


def test_filename_argument(server, tmp_path):
    url = server.serve("/download?id=7", PAYLOAD)
    path = download(url, sha256=SHA256, cache_dir=tmp_path, filename="named.bin",
                    timeout=TIMEOUT)
    assert path == tmp_path / "named.bin" and path.read_bytes() == PAYLOAD
    with pytest.raises(ValueError, match="filename must be a plain file name"):
        download(url, cache_dir=tmp_path, filename="../escape.bin")


def test_corrupt_download_raises_and_keeps_nothing(server, tmp_path):
    url = server.serve("/payload.bin", PAYLOAD[:-1] + b"X")
    with pytest.raises(ChecksumError, match=f"sha1 .*expected {SHA1}"):
        download(url, sha1=SHA1, cache_dir=tmp_path, timeout=TIMEOUT)
    assert not (tmp_path / "payload.bin").exists()
    assert leftovers(tmp_path) == []


def test_interrupted_download_raises_and_keeps_nothing(server, tmp_path):
    url = server.serve("/payload.bin", PAYLOAD, kind="truncated")
    for checksum in ({"sha1": SHA1}, {}):  # detected by length, even without a checksum
        with pytest.raises(DownloadError, match=f"received {len(PAYLOAD)} of "
                                                f"{2 * len(PAYLOAD)} bytes"):
            download(url, cache_dir=tmp_path, timeout=TIMEOUT, **checksum)
        assert not (tmp_path / "payload.bin").exists()
        assert leftovers(tmp_path) == []


def test_stale_cache_is_downloaded_again(server, tmp_path):
    url = server.serve("/payload.bin", PAYLOAD)
    (tmp_path / "payload.bin").write_bytes(b"an old or half-written file")
    path = download(url, sha1=SHA1, cache_dir=tmp_path, timeout=TIMEOUT)
    assert path.read_bytes() == PAYLOAD
    assert server.requests_for("/payload.bin") == 1
    assert leftovers(tmp_path) == []


def test_unreachable_url_says_what_to_do(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/fra-eng.zip"
    with pytest.raises(DownloadError) as caught:
        download(url, sha1=SHA1, cache_dir=tmp_path, timeout=TIMEOUT)
    message = str(caught.value)
    assert str(tmp_path / "fra-eng.zip") in message  # where to put the file by hand
    assert url in message and SHA1 in message and CACHE_ENV_VAR in message
    assert "generated" in message and "network" in message
    assert not (tmp_path / "fra-eng.zip").exists() and leftovers(tmp_path) == []


def test_http_error_is_a_download_error(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("/missing.zip"), cache_dir=tmp_path, timeout=TIMEOUT)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_from_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "from-env"))
    assert get_cache_dir() == tmp_path / "from-env" and (tmp_path / "from-env").is_dir()
    assert get_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    url = server.serve("/payload.bin", PAYLOAD)
    assert download(url, sha1=SHA1, timeout=TIMEOUT) == tmp_path / "from-env" / "payload.bin"
    monkeypatch.delenv(CACHE_ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert get_cache_dir() == tmp_path / "home" / ".cache" / "qkvcourse"


def test_bad_checksum_argument(tmp_path):
    with pytest.raises(ValueError, match="sha1 must be 40 hexadecimal digits, got 'abc'"):
        download("http://127.0.0.1:1/x", sha1="abc", cache_dir=tmp_path)


# --- extract -------------------------------------------------------------------------------------


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def test_extract(tmp_path):
    members = {"pack/a.txt": b"alpha\n", "pack/sub/b.bin": PAYLOAD[:1000], "top.txt": b""}
    zip_path = tmp_path / "pack.zip"
    zip_path.write_bytes(make_zip(members))
    folder = extract(zip_path)
    assert folder == tmp_path / "pack"
    for name, body in members.items():
        assert (folder / name).read_bytes() == body
    stamp = (folder / "pack/a.txt").stat().st_mtime_ns
    os.utime(folder / "pack/a.txt", ns=(stamp - 10**9, stamp - 10**9))
    assert extract(zip_path) == folder  # complete already: not extracted again
    assert (folder / "pack/a.txt").stat().st_mtime_ns == stamp - 10**9
    (folder / "pack/sub/b.bin").unlink()  # an incomplete folder is extracted again
    assert extract(zip_path) == folder and (folder / "pack/sub/b.bin").read_bytes() == PAYLOAD[:1000]
    assert leftovers(tmp_path) == []


def test_extract_refuses_unsafe_members(tmp_path):
    zip_path = tmp_path / "evil.zip"
    zip_path.write_bytes(make_zip({"../outside.txt": b"x"}))
    with pytest.raises(ValueError, match="unsafe member '../outside.txt'"):
        extract(zip_path)
    assert not (tmp_path.parent / "outside.txt").exists()


# --- TatoebaData ---------------------------------------------------------------------------------

EN_SUBJECTS = ["I", "You", "We", "They", "He", "She"]
FR_SUBJECTS = ["Je", "Tu", "Nous", "Ils", "Il", "Elle"]
EN_VERBS = ["like", "see", "want", "need"]
FR_VERBS = ["aime", "vois", "veux", "besoin de"]
EN_OBJECTS = ["the cat", "the dog", "apples", "Tom", "the red car", "tea", "music", "books"]
FR_OBJECTS = ["le chat", "le chien", "des pommes", "Tom", "la voiture rouge", "du thé",
              "la musique", "des livres"]


def make_fra_txt(seed: int = 0) -> str:
    """Tab-separated English/French lines shaped like Tatoeba's fra.txt."""
    rng = random.Random(seed)
    lines = []
    for i, (es, fs) in enumerate(zip(EN_SUBJECTS, FR_SUBJECTS)):
        for j, (ev, fv) in enumerate(zip(EN_VERBS, FR_VERBS)):
            for k, (eo, fo) in enumerate(zip(EN_OBJECTS, FR_OBJECTS)):
                end = "!" if (i + j + k) % 3 == 0 else "."
                lines.append(f"{es} {ev} {eo}{end}\t{fs} {fv} {fo}\u202f{end}\tCC-BY 2.0 (France)")
    lines.append("Go.\tVa\u00a0!")
    lines.append("Go.\tMarche.")  # a repeated English sentence: one translation is kept
    lines.append("This sentence is far too long to be kept with a small max_len at all.\t"
                 "Cette phrase est bien trop longue pour être gardée avec un petit max_len.")
    lines.append("Zyzzyva.\tZyzzyva.")  # a rare word, <unk> wherever it is not in training
    rng.shuffle(lines)
    return "\n".join(lines) + "\n"


@pytest.fixture
def fra_zip(tmp_path) -> tuple[bytes, str]:
    body = make_zip({"fra-eng/fra.txt": make_fra_txt().encode("utf-8")})
    return body, hashlib.sha1(body).hexdigest()


def check_tatoeba(data: TatoebaData, sizes: tuple[int, int, int], max_len: int):
    splits = (data.train_pairs, data.val_pairs, data.test_pairs)
    assert tuple(len(s) for s in splits) == sizes
    sources = [s for split in splits for s, _ in split]
    assert len(set(sources)) == len(sources)  # no English sentence in two places
    for english, french in [p for split in splits for p in split]:
        assert len(tokenize_words(english)) <= max_len and len(tokenize_words(french)) <= max_len
        assert "\t" not in french and "CC-BY" not in french
    # vocabularies from the training split, min_freq=2
    counts = Counter(tok for _, fr in data.train_pairs for tok in tokenize_words(fr))
    kept = set(data.tgt_vocab.idx_to_token[4:])
    assert kept == {tok for tok, n in counts.items() if n >= 2}
    # the batch format, checked on the training split (in file order)
    batch = next(iter(data.train_dataloader(shuffle=False)))
    src, src_valid_lens, tgt_in, tgt_out, tgt_valid_lens = batch
    tv = data.tgt_vocab
    for b in range(len(src)):
        english, french = data.train_pairs[b]
        n, m = int(src_valid_lens[b]), int(tgt_valid_lens[b])
        assert n == len(tokenize_words(english)) + 1 and src[b, n - 1] == data.src_vocab.eos_id
        assert tgt_in[b, 0] == tv.bos_id and tgt_out[b, m - 1] == tv.eos_id
        assert (tgt_out[b, m:] == tv.pad_id).all() and (src[b, n:] == data.src_vocab.pad_id).all()
        words = [w if w in kept else "<unk>" for w in tokenize_words(french)]
        assert data.decode_targets(tgt_out[b:b + 1]) == [" ".join(words)]


def test_tatoeba_from_a_served_zip(server, tmp_path, fra_zip):
    body, sha1 = fra_zip
    url = server.serve("/fra-eng.zip", body)
    kwargs = dict(num_train=120, num_val=30, num_test=30, max_len=8, batch_size=16, seed=0,
                  cache_dir=tmp_path, url=url, sha1=sha1)
    data = TatoebaData(**kwargs)
    check_tatoeba(data, (120, 30, 30), max_len=8)
    assert data.path == tmp_path / "fra-eng" / "fra-eng" / "fra.txt"
    again = TatoebaData(**kwargs)  # cached archive, cached extraction: no second request
    assert server.requests_for("/fra-eng.zip") == 1
    assert again.train_pairs == data.train_pairs and again.test_pairs == data.test_pairs
    assert leftovers(tmp_path) == []
    # the same file given by path= gives the same data
    local = TatoebaData(**{**kwargs, "url": "http://127.0.0.1:1/unused"}, path=data.path)
    assert local.train_pairs == data.train_pairs
    assert local.src_vocab.idx_to_token == data.src_vocab.idx_to_token


def test_tatoeba_from_path(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text(make_fra_txt(), encoding="utf-8")
    data = TatoebaData(num_train=150, num_val=20, num_test=20, max_len=10, batch_size=32,
                       path=path, seed=3)
    check_tatoeba(data, (150, 20, 20), max_len=10)
    assert any(s == "Go." for s, _ in data.train_pairs + data.val_pairs + data.test_pairs)
    other = TatoebaData(num_train=150, num_val=20, num_test=20, max_len=10, path=path, seed=4)
    assert other.test_pairs != data.test_pairs
    order = lambda d: [b.src.tolist() for b in d.train_dataloader()]
    assert order(data) == order(TatoebaData(num_train=150, num_val=20, num_test=20, max_len=10,
                                            batch_size=32, path=path, seed=3))
    batch = next(iter(data.val_dataloader()))
    assert all(t.dtype == torch.long for t in batch) and batch.src.shape[0] == 20


def test_tatoeba_too_few_pairs(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text(make_fra_txt(), encoding="utf-8")
    with pytest.raises(ValueError, match=r"fewer than num_train \+ num_val \+ num_test = 1000"):
        TatoebaData(num_train=900, num_val=50, num_test=50, max_len=10, path=path)


def test_tatoeba_offline_names_the_cache_path(tmp_path, fra_zip):
    _, sha1 = fra_zip
    url = f"http://127.0.0.1:{closed_port()}/fra-eng.zip"
    with pytest.raises(DownloadError, match=re.escape(str(tmp_path / "fra-eng.zip"))):
        TatoebaData(num_train=10, num_val=1, num_test=1, cache_dir=tmp_path, url=url, sha1=sha1)
