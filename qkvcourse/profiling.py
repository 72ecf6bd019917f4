"""Measuring what attention costs: time and peak memory against sequence length (chapter 8).

Chapter 8 measures how the time and the memory of one call of
``qc.scaled_dot_product_attention`` grow with the sequence length ``n``, on the explicit path
(the score matrix is stored) and on the fused one (it never is). The measuring harness lives
here, so that the chapter shows the measurements and not the plumbing.

- ``steady_timing(device)``: time on one CPU thread (steadier on a small or shared machine).
- ``attention_step(path, q, k, v, backward)``: one attention call on a chosen path, with or
  without the backward pass.
- ``clock(device)``, ``time_call(fn, ...)``: CPU time on a CPU (other programs do not count),
  wall-clock time on a GPU; the fastest of a few runs.
- ``time_attention(path, n, ...)``: the seconds of one such step on random inputs.
- ``peak_rss_bytes()``: the largest resident memory this process has held so far.
- ``measure_step_memory(path, n, ...)``: what one CPU step adds to that peak (run in a fresh
  process).
- ``peak_attention_memory(configs, ...)``: the peak *extra* memory of one step per
  ``(path, n)``: PyTorch's allocator counter on a GPU, a fresh process per configuration
  on a CPU.
- ``power_law_fit(xs, ys)``: the exponent ``a`` and factor ``c`` of ``y ≈ c · x**a``, fitted
  as a straight line on log–log axes.

Shapes: ``q``, ``k``, ``v`` are ``(B, H, n, D)``: batch, heads, length, head width.
"""
from __future__ import annotations

import contextlib
import json
import math
import resource
import subprocess
import sys
import time

import torch
from torch import Tensor

from ._validate import check_flag, check_size, check_sizes
from .attention import attention_backend, scaled_dot_product_attention
from .utils import _check_device, synchronize

PATHS = ("explicit", "fused")
MODES = ("forward", "forward+backward")


@contextlib.contextmanager
def steady_timing(device: torch.device | str = "cpu"):
    """Run the body with one CPU thread on a CPU device; a GPU is left alone.

    Multi-threaded CPU timings jump around with whatever else runs on a small or shared
    machine; one thread gives steadier numbers. The previous thread count is restored.
    """
    device = _check_device("device", device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def attention_step(path: str, q: Tensor, k: Tensor, v: Tensor, backward: bool = False) -> Tensor:
    """One call of ``qc.scaled_dot_product_attention`` on ``path`` ("explicit" or "fused").

    With ``backward``, also computes the gradients with respect to ``q``, ``k``, ``v`` (which
    must require grad), as a training step would; they are returned to nobody and not
    accumulated into ``.grad``, so repeated calls do the same work. Returns the output
    ``(B, H, n, Dv)``.
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    with attention_backend(path), torch.set_grad_enabled(backward):
        out = scaled_dot_product_attention(q, k, v)  # (B, H, n, Dv)
        if backward:
            torch.autograd.grad(out.sum(), (q, k, v))
    return out.detach()


def _inputs(n: int, batch: int, heads: int, head_dim: int, device, backward: bool):
    return [torch.randn(batch, heads, n, head_dim, device=device, requires_grad=backward)
            for _ in range(3)]  # q, k, v: (B, H, n, D)


def clock(device: torch.device | str = "cpu"):
    """The clock the timings read: CPU time on a CPU, wall-clock time on a GPU.

    On a CPU, ``time.process_time`` counts only the time this process spent computing, so other
    programs on a small or shared machine cannot inflate a measurement (on a quiet machine and
    one thread it equals the wall-clock time). On a GPU the work happens on the device, so the
    wall clock (``time.perf_counter``) is read, after synchronising.
    """
    return time.process_time if _check_device("device", device).type == "cpu" \
        else time.perf_counter


def time_call(fn, *, repeat: int = 5, warmup: int = 1,
              device: torch.device | str = "cpu") -> float:
    """Seconds of ``fn()`` on :func:`clock`: the fastest of ``repeat`` runs after ``warmup``.

    The fastest run, not the median: interruptions only ever add time, so the minimum is the
    steadiest estimate of what the call itself costs.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (fn() is timed), got {type(fn).__name__}")
    check_size("repeat", repeat)
    check_size("warmup", warmup, minimum=0)
    tick = clock(device)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        synchronize(device)
        start = tick()
        fn()
        synchronize(device)
        times.append(tick() - start)
    return min(times)


def time_attention(path: str, n: int, *, backward: bool = False, batch: int = 1, heads: int = 2,
                   head_dim: int = 64, device: torch.device | str = "cpu", repeat: int = 5,
                   warmup: int = 1) -> float:
    """Seconds of one :func:`attention_step` on random inputs of length ``n``
    (:func:`time_call`)."""
    _check_attention_path(path)
    check_sizes(n=n, batch=batch, heads=heads, head_dim=head_dim)
    check_flag("backward", backward)
    check_size("repeat", repeat)
    check_size("warmup", warmup, minimum=0)
    q, k, v = _inputs(n, batch, heads, head_dim, device, backward)
    return time_call(lambda: attention_step(path, q, k, v, backward), repeat=repeat,
                     warmup=warmup, device=device)


def peak_rss_bytes() -> int:
    """The largest resident memory (RAM) this process has held so far, in bytes.

    On Linux this is ``VmHWM`` in ``/proc/self/status``, the high-water mark of this process
    alone. ``resource.getrusage(...).ru_maxrss`` is the fallback elsewhere (macOS reports it in
    bytes); on Linux it is unusable for this purpose, because a new process inherits the peak of
    the process that started it.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # the file gives KiB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux and BSD give KiB


def measure_step_memory(path: str, n: int, batch: int, heads: int, head_dim: int) -> dict:
    """Peak extra resident memory of one CPU step, forward then forward+backward, in bytes.

    Meant to run in a fresh process (``peak_attention_memory`` starts one per configuration):
    a peak can only go up, so it measures only what the first large step adds.
    """
    torch.set_num_threads(1)

    def step(length, backward):
        attention_step(path, *_inputs(length, batch, heads, head_dim, "cpu", backward), backward)

    step(64, True)  # a tiny step first, so that loading code and kernels does not count
    base = peak_rss_bytes()
    step(n, False)
    forward = peak_rss_bytes() - base
    step(n, True)  # needs more than the forward step, so the peak moves up to its own
    return {"forward": forward, "forward+backward": peak_rss_bytes() - base}


def _child_main(argv: list[str]) -> None:
    path, n, batch, heads, head_dim = argv[0], *map(int, argv[1:5])
    print(json.dumps(measure_step_memory(path, n, batch, heads, head_dim)))


_CHILD = "import sys; from qkvcourse.profiling import _child_main; _child_main(sys.argv[1:])"


def _peak_memory_cpu(configs, batch, heads, head_dim) -> dict:
    # Each configuration in its own fresh process: a peak can only go up, so a process that had
    # already run a long sequence would hide the cost of a shorter one. They run side by side.
    procs = {c: subprocess.Popen([sys.executable, "-c", _CHILD, c[0], str(c[1]), str(batch),
                                  str(heads), str(head_dim)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in configs}
    results = {}
    for config, proc in procs.items():
        out, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"measuring {config} failed:\n{err[-2000:]}")
        results[config] = json.loads(out)
    return results


def _peak_memory_cuda(configs, batch, heads, head_dim, device) -> dict:
    # The same measurement from PyTorch's own counter of allocated GPU memory
    results = {}
    for path, n in configs:
        results[path, n] = {}
        for mode in MODES:
            backward = mode == "forward+backward"
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            attention_step(path, *_inputs(n, batch, heads, head_dim, device, backward), backward)
            results[path, n][mode] = torch.cuda.max_memory_allocated(device) - base
    return results


def peak_attention_memory(configs, *, batch: int = 1, heads: int = 2, head_dim: int = 64,
                          device: torch.device | str = "cpu") -> dict:
    """Peak extra memory in bytes of one attention step, for each ``(path, n)`` in ``configs``.

    Returns ``{(path, n): {"forward": bytes, "forward+backward": bytes}}``: the memory the step
    needed at its peak beyond what was held before it, inputs and gradients included. On a CUDA
    device this is PyTorch's allocator counter (``torch.cuda.max_memory_allocated``); on a CPU,
    where no such counter exists, each configuration runs in a fresh Python process that reads
    its peak resident memory (:func:`peak_rss_bytes`) before and after the step. On Apple's MPS
    the step is measured on the CPU in the same way.
    """
    configs = _check_configs(configs)
    check_sizes(batch=batch, heads=heads, head_dim=head_dim)
    configs = [(path, int(n)) for path, n in configs]
    device = _check_device("device", device)
    if device.type == "cuda":
        return _peak_memory_cuda(configs, batch, heads, head_dim, device)
    if device.type not in ("cpu", "mps"):
        raise ValueError(f"peak memory is measured on 'cpu' or 'cuda', not {device.type!r}")
    # Apple's MPS has no per-process peak counter: the same step on the CPU stands in for it
    return _peak_memory_cpu(configs, batch, heads, head_dim)


def _check_attention_path(path, name: str = "path") -> None:
    if not isinstance(path, str) or path not in PATHS:
        raise ValueError(f"{name} must be one of {PATHS}, got {path!r}")


def _check_configs(configs) -> list:
    """A list of ``(path, n)`` pairs; returned as a list (a generator is read once)."""
    if isinstance(configs, (str, bytes)) or not hasattr(type(configs), "__iter__"):
        raise TypeError(f"configs must be a list of (path, n) pairs, got "
                        f"{type(configs).__name__}")
    configs = list(configs)
    for i, config in enumerate(configs):
        if not (isinstance(config, (tuple, list)) and len(config) == 2):
            raise ValueError(f"configs[{i}] must be a pair (path, n), got {config!r}")
        _check_attention_path(config[0], f"configs[{i}] path")
        check_size(f"configs[{i}] n", config[1])
    return configs


def _check_points(name: str, values) -> list[float]:
    if isinstance(values, (str, bytes)) or not hasattr(type(values), "__iter__"):
        raise TypeError(f"{name} must be a list of numbers, got {type(values).__name__}")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a list of numbers, got {values!r}"[:200]) from None
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:  # (they are put on log axes)
        raise ValueError(f"power_law_fit needs positive finite {name} (they are put on log "
                         f"axes), got {bad[:5]} among {name}")
    return values


def power_law_fit(xs, ys) -> tuple[float, float]:
    """Fit ``y ≈ c · x**a`` by least squares on ``log y`` against ``log x``; returns ``(a, c)``.

    On log–log axes a power law is a straight line whose slope is the exponent: ``a ≈ 2``
    means "doubling x multiplies y by about 4". Every x and y must be positive.
    """
    xs, ys = _check_points("xs", xs), _check_points("ys", ys)
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"power_law_fit needs at least two (x, y) pairs of equal length, got "
                         f"{len(xs)} xs and {len(ys)} ys")
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((x - mx) ** 2 for x in lx)
    if sxx == 0:
        raise ValueError("power_law_fit needs at least two different x")
    a = sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sxx
    return a, math.exp(my - a * mx)
