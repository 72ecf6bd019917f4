"""Devices, seeding and small helpers used by every chapter."""
from __future__ import annotations

import os
import random
import time

import numpy as np
import torch
from torch import Tensor, nn


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if available, then Apple MPS, then CPU.

    ``prefer`` (or the environment variable ``QKV_DEVICE``) forces a device, e.g.
    ``"cpu"`` to reproduce the book's CPU outputs on a GPU machine.
    """
    choice = prefer or os.environ.get("QKV_DEVICE")
    if choice:
        return torch.device(choice)
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
    """Seed Python, NumPy and PyTorch (all devices) so a chapter's outputs repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS generators


def check_shape(tensor: Tensor, shape: tuple[int, ...], name: str = "tensor") -> None:
    """Assert a tensor's shape in the text of a chapter, with a readable message."""
    if tuple(tensor.shape) != tuple(shape):
        raise AssertionError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")


def num_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_function(fn, *, repeat: int = 5, warmup: int = 2, device="cpu") -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` runs, after ``warmup`` runs."""
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
