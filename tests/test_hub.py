"""Pretrained loaders (qkvcourse.huggingface): cache first, then a fast check that the Hub is
reachable, and one offline error for both loaders."""
from __future__ import annotations

import os
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never the network

import pytest

from qkvcourse import huggingface as hf_module
from qkvcourse.data.download import DownloadError
from qkvcourse.huggingface import HubDownloadError, bert_from_huggingface, gpt_from_huggingface
from helpers import raises


class FakeModel:
    calls: list = []

    @classmethod
    def from_pretrained(cls, name, local_files_only=False, **kwargs):
        cls.calls.append((name, local_files_only))
        if local_files_only and name != "cached":
            raise OSError("not in the cache")
        if name == "broken":
            raise OSError("connection reset")
        return f"model {name}"


@pytest.fixture(autouse=True)
def fresh_calls():
    FakeModel.calls = []


def test_cached_weights_need_no_network(monkeypatch):
    monkeypatch.setattr(hf_module, "hub_reachable",
                        lambda timeout=3.0: pytest.fail("network probed"))
    assert hf_module.from_pretrained(FakeModel, "cached") == "model cached"
    assert FakeModel.calls == [("cached", True)]


def test_offline_fails_at_once_without_the_download_attempt(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_module, "hub_reachable", lambda timeout=3.0: False)
    with raises(HubDownloadError, "'gpt2'", "cannot reach huggingface.co", "needs the network"):
        hf_module.from_pretrained(FakeModel, "gpt2")
    assert FakeModel.calls == [("gpt2", True)]


def test_hf_hub_offline_is_respected(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_module, "hub_reachable",
                        lambda timeout=3.0: pytest.fail("network probed"))
    with raises(HubDownloadError, "'gpt2'", "HF_HUB_OFFLINE is set"):
        hf_module.from_pretrained(FakeModel, "gpt2")
    assert FakeModel.calls == [("gpt2", True)]


def test_online_downloads(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_module, "hub_reachable", lambda timeout=3.0: True)
    assert hf_module.from_pretrained(FakeModel, "gpt2") == "model gpt2"
    assert FakeModel.calls == [("gpt2", True), ("gpt2", False)]


def test_a_failed_download_names_the_model_and_keeps_the_cause(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_module, "hub_reachable", lambda timeout=3.0: True)
    with raises(HubDownloadError, "'broken'", "OSError: connection reset") as caught:
        hf_module.from_pretrained(FakeModel, "broken")
    assert isinstance(caught.value.__cause__, OSError)


def test_the_offline_error_is_a_download_error_and_an_os_error():
    # chapter 10 catches qc.data.DownloadError, chapter 9 (and transformers' users) OSError
    assert issubclass(HubDownloadError, DownloadError)
    assert issubclass(HubDownloadError, OSError)


@pytest.mark.parametrize("loader, name", [(gpt_from_huggingface, "qkvcourse-no-such/gpt2"),
                                          (bert_from_huggingface, "qkvcourse-no-such/bert")])
def test_both_loaders_fail_offline_alike(tmp_path, loader, name):
    pytest.importorskip("transformers")
    with pytest.raises(HubDownloadError) as caught:
        loader(name, cache_dir=str(tmp_path))
    assert type(caught.value) is HubDownloadError
    message = str(caught.value)
    for fragment in (f"Could not load {name!r} from the Hugging Face Hub", "HF_HUB_OFFLINE is set",
                     "needs the network", "continues with the locally trained model"):
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("loader", [gpt_from_huggingface, bert_from_huggingface])
def test_both_loaders_name_the_missing_package(monkeypatch, loader):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with raises(ImportError, loader.__name__, "'some-model'", "pip install transformers"):
        loader("some-model")


def test_importing_the_package_does_not_import_transformers():
    code = ("import sys, qkvcourse, qkvcourse.huggingface; "
            "print('transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr
