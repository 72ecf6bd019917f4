"""Devices, seeding and small helpers used by every chapter."""
from __future__ import annotations

import os
import random
import time

import numpy as np
import torch
from torch import Tensor, nn

from ._validate import check_seed, check_size, check_tensor



def _check_device(name: str, device) -> torch.device:
    """A device: a ``torch.device``, a string such as ``"cpu"`` or ``"cuda:0"``, or an
    accelerator's index (``0`` for ``cuda:0``, as ``torch.device(0)`` reads it)."""
    if isinstance(device, torch.device):
        return device
    index = isinstance(device, int) and not isinstance(device, bool) and device >= 0
    if not (isinstance(device, str) or index):
        raise TypeError(f"{name} must be a device name such as 'cpu' or 'cuda', a "
                        f"torch.device or an accelerator's index, got "
                        f"{type(device).__name__}: {device!r}"[:200])
    try:
        return torch.device(device)
    except RuntimeError:
        why = " (an index names an accelerator, and none is available)" if index else ""
        raise ValueError(f"{name} must be a device name such as 'cpu', 'cuda' or 'cuda:0'"
                         f"{why}, got {device!r}") from None


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if available, then Apple MPS, then CPU.

    ``prefer`` (or the environment variable ``QKV_DEVICE``) forces a device, e.g.
    ``"cpu"`` to reproduce the book's CPU outputs on a GPU machine.
    """
    if prefer is not None and prefer != "":
        return _check_device("prefer", prefer)
    choice = os.environ.get("QKV_DEVICE")
    if choice:
        return _check_device("the environment variable QKV_DEVICE", choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_devices() -> list[torch.device]:
    """Every device type present here: CPU always, then CUDA and MPS when available."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(torch.device("mps"))
    return devices


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so a chapter's outputs repeat.

    ``seed`` is an integer in ``[0, 2**32 - 1]``, the seeds NumPy accepts."""
    check_seed("seed", seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators


def check_shape(tensor: Tensor, shape: tuple[int, ...], name: str = "tensor") -> None:
    """Assert a tensor's shape in the text of a chapter, with a readable message."""
    check_tensor(name, tensor)
    if tuple(tensor.shape) != tuple(shape):
        raise AssertionError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")


def num_parameters(module: nn.Module) -> int:
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters())


def synchronize(device: torch.device | str) -> None:
    device = _check_device("device", device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_function(fn, *, repeat: int = 5, warmup: int = 2, device="cpu") -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs, after ``warmup`` runs."""
    if not callable(fn):
        raise TypeError(f"fn must be callable (fn() is timed), got {type(fn).__name__}")
    check_size("repeat", repeat)
    check_size("warmup", warmup, minimum=0)
    device = _check_device("device", device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
