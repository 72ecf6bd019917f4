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
   vs nanoGPT;
4. every chapter at its GPU size: each notebook in ``notebooks/`` runs on CUDA (where its
   ``LARGE`` switch picks the bigger model, data and sweeps), all at once and alongside step 2,
   within one time limit. The report gives, per chapter, its status, its time, its slowest cell
   and its peak GPU memory (Colab's free T4 has 15 GiB); a chapter still running at the limit is
   reported with the cells it finished. The executed copies are kept in ``_build/gpu-chapters``.
   (The chapters share the GPU and the CPUs, so their times are upper bounds.)

Without CUDA it writes a report saying so and exits with status 2: nothing was checked.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

# Seconds. The tests and the chapters run side by side, then the benchmarks alone on a quiet
# GPU: the whole stays under eight minutes.
STEP_LIMITS = {"tests": 200, "chapters": 230, "benchmarks": 220}
T4_MEMORY_GIB = 15.0  # what Colab's free GPU offers
_PEAK_MEMORY_CELL = ("import torch as _t\n"
                     "print('peak GPU memory (GiB):', "
                     "_t.cuda.max_memory_allocated() / 2 ** 30 if _t.cuda.is_available() else 0.0)")


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


def execute_notebook(path: str, save: str, progress: str) -> int:
    """Run one notebook (in a child process of :func:`_chapters`): every finished cell appends
    ``{"cell", "seconds"}`` to ``progress``; the executed copy, with a last cell that prints the
    peak GPU memory, goes to ``save``. Exit status 1 when a cell raises."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_PEAK_MEMORY_CELL))
    log = open(progress, "a", buffering=1)
    last = [time.perf_counter()]

    def cell_done(cell, cell_index, execute_reply):
        now = time.perf_counter()
        log.write(json.dumps({"cell": cell_index, "seconds": now - last[0]}) + "\n")
        last[0] = now

    client = NotebookClient(nb, timeout=None, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}},
                            on_cell_executed=cell_done)
    status = 0
    try:
        client.execute()
    except CellExecutionError as err:
        log.write(json.dumps({"error": str(err).strip().splitlines()[-1][:300]}) + "\n")
        status = 1
    nbformat.write(nb, save)
    return status


def _chapter_summary(name: str, progress: Path, saved: Path, returncode, seconds: float,
                     num_cells: int) -> tuple[str, bool]:
    """One report row: status, time, slowest cell, peak GPU memory."""
    records = [json.loads(line) for line in progress.read_text().splitlines()] \
        if progress.exists() else []
    cells = [r for r in records if "cell" in r]
    errors = [r["error"] for r in records if "error" in r]
    slowest = max(cells, key=lambda r: r["seconds"], default=None)
    slow = f"cell {slowest['cell']} ({slowest['seconds']:.0f} s)" if slowest else "-"
    memory, passed = "-", False
    if returncode is None:
        status = f"STOPPED at the limit, {len(cells)} of {num_cells} code cells done"
    elif returncode != 0 or errors:
        status = "FAILED: " + (errors[0] if errors else f"exit status {returncode}")
    else:
        status, passed = "passed", True
        import nbformat
        for output in nbformat.read(saved, as_version=4).cells[-1].get("outputs", []):
            text = output.get("text", "")
            if "peak GPU memory" in text:
                gib = float(text.split(":")[-1])
                memory = f"{gib:.2f} GiB" + (" (over a T4's 15 GiB)" if gib > T4_MEMORY_GIB else "")
                passed = gib <= T4_MEMORY_GIB
    return f"| {name} | {status} | {seconds:.0f} s | {slow} | {memory} |", passed


NOTEBOOK_PACKAGES = ("nbclient", "nbformat", "ipykernel", "matplotlib_inline")


def missing_notebook_packages() -> list[str]:
    """What running the chapters needs and this Python lacks (``make gpu-wheels`` brings them
    to a machine without a network)."""
    import importlib.util

    return [name for name in NOTEBOOK_PACKAGES if importlib.util.find_spec(name) is None]


def _start_chapters(notebooks: list[Path], out: Path) -> list[dict]:
    """Start every chapter in its own process group (its kernel too), all at once, each with
    an equal share of the CPU threads. The kernels import this checkout's package and draw
    figures inline, as ``make notebooks`` does."""
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // max(1, len(notebooks))))
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONPATH=path,
               MPLBACKEND="module://matplotlib_inline.backend_inline")
    runs = []
    for nb in notebooks:
        progress, saved = out / f"{nb.stem}.progress", out / nb.name
        progress.unlink(missing_ok=True)
        command = [sys.executable, "-m", "qkvcourse.gpu_check", "--execute", str(nb),
                   "--save", str(saved), "--progress", str(progress)]
        runs.append(dict(name=nb.stem, progress=progress, saved=saved, start=time.perf_counter(),
                         cells=1 + sum(c.cell_type == "code"
                                       for c in nbformat.read(nb, as_version=4).cells),
                         process=subprocess.Popen(command, env=env, start_new_session=True,
                                                  stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL)))
    return runs


def _finish_chapters(runs: list[dict], deadline: float) -> tuple[list[str], bool]:
    """Wait for the chapters until ``deadline`` (a ``time.perf_counter()`` value), stop the
    rest, and write the report's table."""
    rows, ok = [], True
    for run in runs:
        process = run["process"]
        try:
            process.wait(timeout=max(0.0, deadline - time.perf_counter()))
            returncode, end = process.returncode, time.perf_counter()
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the notebook's kernel with it
            process.wait()
            returncode, end = None, time.perf_counter()
        row, passed = _chapter_summary(run["name"], run["progress"], run["saved"], returncode,
                                       end - run["start"], run["cells"])
        rows.append(row)
        ok = ok and passed
    title = f"## Chapters at their GPU size: {'passed' if ok else 'NOT all passed'}"
    return [title, "", "| chapter | status | time | slowest cell | peak GPU memory |",
            "|---|---|---:|---|---:|", *rows, ""], ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", default="_build/gpu-check.md")
    parser.add_argument("--nanogpt", default=None, help="nanoGPT's model.py, for the comparison")
    parser.add_argument("--notebooks", default="notebooks", help="the chapters' folder")
    parser.add_argument("--execute", help=argparse.SUPPRESS)  # one chapter, in a child process
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.execute:
        return execute_notebook(args.execute, args.save, args.progress)
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
    chapters = sorted(Path(args.notebooks).glob("[0-9][0-9]_*.ipynb"))
    missing = missing_notebook_packages()
    started = time.perf_counter()
    runs = [] if missing else _start_chapters(chapters, report.parent / "gpu-chapters")
    section, ok = _run("CUDA tests and sync-debug mode",
                       [python, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", "-k",
                        "cuda or gpu_readiness"], STEP_LIMITS["tests"])
    lines += section
    report.write_text("\n".join(lines) + "\n")  # a partial report survives a killed run
    if missing:
        section, passed = [f"## Chapters at their GPU size: NOT RUN, this Python lacks "
                           f"{', '.join(missing)} (`make gpu-wheels` on a machine with a "
                           f"network, then `make gpu-check GPU_PYTHON=python3`)", ""], False
    else:
        section, passed = _finish_chapters(runs, started + STEP_LIMITS["chapters"])
    lines += section
    ok = ok and passed
    report.write_text("\n".join(lines) + "\n")
    nanogpt = ["--nanogpt", args.nanogpt] if args.nanogpt else []
    section, passed = _run("Benchmarks on CUDA", [python, "-m", "qkvcourse.benchmarks",
                                                  "--device", "cuda", "--rounds", "9", *nanogpt],
                           STEP_LIMITS["benchmarks"])
    lines += section
    ok = ok and passed
    report.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
