"""Pretrained loaders: cache first, then a fast check that the Hub is reachable."""
from __future__ import annotations

import pytest

from qkvcourse import _hub


class FakeModel:
    calls: list = []

    @classmethod
    def from_pretrained(cls, name, local_files_only=False, **kwargs):
        cls.calls.append((name, local_files_only))
        if local_files_only and name != "cached":
            raise OSError("not in the cache")
        return f"model {name}"


@pytest.fixture(autouse=True)
def fresh_calls():
    FakeModel.calls = []


def test_cached_weights_need_no_network(monkeypatch):
    monkeypatch.setattr(_hub, "hub_reachable", lambda timeout=3.0: pytest.fail("network probed"))
    assert _hub.from_pretrained(FakeModel, "cached") == "model cached"
    assert FakeModel.calls == [("cached", True)]


def test_offline_fails_at_once_without_the_download_attempt(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(_hub, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(OSError, match="cannot reach huggingface.co"):
        _hub.from_pretrained(FakeModel, "gpt2")
    assert FakeModel.calls == [("gpt2", True)]


def test_hf_hub_offline_is_respected(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(_hub, "hub_reachable", lambda timeout=3.0: pytest.fail("network probed"))
    with pytest.raises(OSError, match="HF_HUB_OFFLINE"):
        _hub.from_pretrained(FakeModel, "gpt2")


def test_online_downloads(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(_hub, "hub_reachable", lambda timeout=3.0: True)
    assert _hub.from_pretrained(FakeModel, "gpt2") == "model gpt2"
    assert FakeModel.calls == [("gpt2", True), ("gpt2", False)]
