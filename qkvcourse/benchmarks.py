"""Benchmarks that compare qkvcourse layers with PyTorch's, measured in the same run.

Run ``python -m qkvcourse.benchmarks`` (or ``make bench``). Every figure is a ratio
against a reference timed in the same process, on the same inputs, interleaved
round by round, so machine noise affects both sides alike. Ratios below 1 mean
qkvcourse is faster.

Benchmarks:
- ``mha``: ``qc.MultiHeadAttention`` forward + backward vs ``torch.nn.MultiheadAttention``
  with the same weights, for self-attention and cross-attention, on the fused path
  (no weights) and on the explicit path (weights returned, per head).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from .multihead import MultiHeadAttention
from .utils import synchronize


def copy_weights_to_torch(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Copy W_q, W_k, W_v, W_o into PyTorch's packed ``in_proj_weight`` and ``out_proj``."""
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.W_q.weight, ours.W_k.weight, ours.W_v.weight]))
        theirs.out_proj.weight.copy_(ours.W_o.weight)
        if ours.W_q.bias is not None:
            theirs.in_proj_bias.copy_(torch.cat([ours.W_q.bias, ours.W_k.bias, ours.W_v.bias]))
            theirs.out_proj.bias.copy_(ours.W_o.bias)


def _interleaved_medians(fns: dict, device, rounds: int, inner: int) -> dict[str, float]:
    """Median seconds per call for each function, timed in alternating rounds."""
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn()
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(s) for name, s in samples.items()}


def bench_mha(device: torch.device, batch: int, length: int, width: int, heads: int,
              rounds: int, inner: int, dtype=torch.float32) -> list[dict]:
    torch.manual_seed(0)
    ours = MultiHeadAttention(width, heads, bias=True).to(device, dtype)
    theirs = nn.MultiheadAttention(width, heads, bias=True, batch_first=True).to(device, dtype)
    copy_weights_to_torch(ours, theirs)
    x = torch.randn(batch, length, width, device=device, dtype=dtype, requires_grad=True)
    memory = torch.randn(batch, length // 2, width, device=device, dtype=dtype, requires_grad=True)

    def step(module_call):
        def run():
            out = module_call()
            out.sum().backward()
        return run

    rows = []
    for case, (q, kv) in {"self": (x, x), "cross": (x, memory)}.items():
        fns = {
            "qc fused": step(lambda: ours(q, kv, kv)),
            "torch fused": step(lambda: theirs(q, kv, kv, need_weights=False)[0]),
            "qc explicit+weights": step(lambda: ours(q, kv, kv, need_weights=True)),
            "torch explicit+weights": step(
                lambda: theirs(q, kv, kv, need_weights=True, average_attn_weights=False)[0]),
        }
        t = _interleaved_medians(fns, device, rounds, inner)
        rows.append(dict(case=case, path="fused", ours=t["qc fused"], ref=t["torch fused"]))
        rows.append(dict(case=case, path="explicit+weights", ours=t["qc explicit+weights"],
                         ref=t["torch explicit+weights"]))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="all", help="cpu, cuda or all (every device present)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--inner", type=int, default=5)
    args = parser.parse_args(argv)

    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if args.device != "all":
        devices = [torch.device(args.device)]

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"\nMultiHeadAttention forward+backward on {device} ({name}): B={args.batch}, "
              f"T={args.length}, d_model={args.width}, heads={args.heads}, float32")
        print(f"{'case':<7}{'path':<19}{'qkvcourse ms':>14}{'torch ms':>11}{'ratio':>8}")
        for r in bench_mha(device, args.batch, args.length, args.width, args.heads,
                           args.rounds, args.inner):
            print(f"{r['case']:<7}{r['path']:<19}{r['ours'] * 1e3:>14.3f}{r['ref'] * 1e3:>11.3f}"
                  f"{r['ours'] / r['ref']:>8.3f}")


if __name__ == "__main__":
    main()
