"""``make gpu-check``: every check that needs a GPU, in one run, with a written report.

Run on a machine with CUDA (``python -m qkvcourse.gpu_check --report PATH``). The steps, each
with its own time limit so that the whole stays under eight minutes on one H100:

1. the device: name, compute capability, memory, torch and CUDA versions;
2. the tests that run on CUDA: every device-parametrised test (ids containing ``cuda``) and
   ``tests/test_gpu_readiness.py``, whose CUDA test runs every model's forward and backward
   under ``torch.cuda.set_sync_debug_mode("error")`` (any host synchronisation fails it);
3. the benchmarks on CUDA (``python -m qkvcourse.benchmarks --device cuda``): multi-head
   attention vs ``nn.MultiheadAttention``, the Transformer vs ``nn.Transformer``, GPT vs
   Hugging Face in fp32, bf16 and bf16 with ``torch.compile`` (GPT-2 small, with its model
   FLOPs utilisation), KV-cache generation; and, given ``--nanogpt PATH/TO/model.py``, GPT
   vs nanoGPT.

Without CUDA it writes a report saying so and exits with status 2: nothing was checked.
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

STEP_LIMITS = {"tests": 200, "benchmarks": 240}  # seconds; the whole stays under 8 minutes


def _device_lines() -> list[str]:
    props = torch.cuda.get_device_properties(0)
    return [f"- device: {props.name}, compute capability {props.major}.{props.minor}, "
            f"{props.total_memory / 2 ** 30:.0f} GiB",
            f"- torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"{platform.python_implementation()} {platform.python_version()}"]


def _run(title: str, command: list[str], limit: int) -> tuple[list[str], bool]:
    """Run one step; its output (tail) and whether it passed, for the report."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit)
        output, passed = done.stdout + done.stderr, done.returncode == 0
        status = "passed" if passed else f"FAILED (exit status {done.returncode})"
    except subprocess.TimeoutExpired as err:
        output = (err.stdout or b"").decode(errors="replace")  # bytes, whatever text= says
        passed, status = False, f"STOPPED after its {limit} s limit"
    seconds = time.perf_counter() - start
    tail = output.strip().splitlines()[-60:]
    return [f"## {title}: {status} in {seconds:.0f} s", "", "```", *tail, "```", ""], passed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="_build/gpu-check.md")
    parser.add_argument("--nanogpt", default=None, help="nanoGPT's model.py, for the comparison")
    args = parser.parse_args(argv)
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# GPU check", ""]
    if not torch.cuda.is_available():
        lines += ["No CUDA device: nothing was checked. Run `make gpu-check` on a GPU machine."]
        report.write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 2
    lines += _device_lines() + [""]
    python = sys.executable
    steps = [
        ("CUDA tests and sync-debug mode",
         [python, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", "-k",
          "cuda or gpu_readiness"], STEP_LIMITS["tests"]),
        ("Benchmarks on CUDA",
         [python, "-m", "qkvcourse.benchmarks", "--device", "cuda", "--rounds", "9"]
         + (["--nanogpt", args.nanogpt] if args.nanogpt else []), STEP_LIMITS["benchmarks"]),
    ]
    ok = True
    for title, command, limit in steps:
        section, passed = _run(title, command, limit)
        lines += section
        ok = ok and passed
        report.write_text("\n".join(lines) + "\n")  # a partial report survives a killed run
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
