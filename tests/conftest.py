"""Shared fixtures: the d2l reference (imported without torchvision), devices, seeding.

``d2l.torch`` imports ``torchvision`` and ``from torchvision import transforms`` at
import time, for data sets the attention chapters never use. There is no torchvision
here, so a stand-in is put into ``sys.modules`` just long enough to import d2l and then
removed again: ``transformers`` later probes ``importlib.util.find_spec("torchvision")``,
which must not find a fake module (it would raise, or pretend torchvision exists).
"""
from __future__ import annotations

import importlib
import sys
import types

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # tests draw figures without a display

import qkvcourse as qc

# Parametrise device-aware tests with ``@pytest.mark.parametrize("device", DEVICES, ids=str)``.
DEVICES = qc.available_devices()


def dtype_for(device: torch.device) -> torch.dtype:
    """float32 on the CPU (tight tolerances), bf16 on an accelerator (looser ones)."""
    return torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16


def tolerance(dtype: torch.dtype) -> dict:
    """``rtol``/``atol`` for comparing a result computed in ``dtype`` with a float32 one."""
    if dtype == torch.bfloat16:
        return dict(rtol=3e-2, atol=3e-2)  # bf16 keeps 8 significant bits
    if dtype == torch.float16:
        return dict(rtol=5e-3, atol=5e-3)
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-12)
    return dict(rtol=1e-5, atol=1e-6)


_FAKE_MODULES = ("torchvision", "torchvision.transforms")


def import_d2l():
    """Import ``d2l.torch`` with a throw-away torchvision, then remove the stand-in."""
    if "d2l.torch" in sys.modules:
        return sys.modules["d2l.torch"]
    saved = {name: sys.modules.get(name) for name in _FAKE_MODULES}
    fake = types.ModuleType("torchvision")
    fake.transforms = types.ModuleType("torchvision.transforms")
    sys.modules["torchvision"] = fake
    sys.modules["torchvision.transforms"] = fake.transforms
    try:
        d2l = importlib.import_module("d2l.torch")
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return d2l


@pytest.fixture(scope="session")
def d2l():
    module = import_d2l()
    for name in _FAKE_MODULES:  # a stand-in has no __spec__; a real torchvision has one
        left = sys.modules.get(name)
        assert left is None or left.__spec__ is not None, f"fake {name} left in sys.modules"
    return module


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state, whatever ran before it."""
    qc.seed_everything(0)
    yield


@pytest.fixture(autouse=True)
def _fresh_backend():
    """A test that fails inside ``attention_backend`` must not leak its choice."""
    from qkvcourse import attention
    previous = attention._backend
    yield
    attention._backend = previous


@pytest.fixture(params=DEVICES, ids=lambda d: d.type)
def device(request) -> torch.device:
    """Every device present: the CPU always, CUDA (or MPS) when available."""
    return request.param


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread than on two that contend with other work.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
