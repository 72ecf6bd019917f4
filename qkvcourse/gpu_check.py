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
   and the peak GPU memory its allocator reserved (against the 14 GiB Colab's free T4 offers);
   a chapter still running at the limit is reported with the cells it finished and the one it
   was in. The executed copies and each chapter's log are kept in ``_build/gpu-chapters``.
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
# A T4 (Colab's free GPU) shows torch about 14.7 GiB, of which the CUDA context takes some: a
# chapter whose allocator reserved more than this at its peak may not fit there.
T4_USABLE_GIB = 14.0
_PEAK_MEMORY_CELL = ("import torch as _t\n"
                     "print('peak GPU memory reserved (GiB):', "
                     "_t.cuda.max_memory_reserved() / 2 ** 30 if _t.cuda.is_available() else 0.0)")


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
    """Run one notebook (in a child process of :func:`_start_chapters`), appending to
    ``progress`` one JSON record per event: the kernel's pid, each code cell's start and its
    seconds when done, an error, and the total. The executed copy, with a last cell that prints
    the peak GPU memory, goes to ``save``. Exit status 1 when anything fails."""
    import nbformat
    from nbclient import NotebookClient

    start = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_PEAK_MEMORY_CELL))
    log = open(progress, "a", buffering=1)
    started = {}

    def record(**fields):
        log.write(json.dumps(fields) + "\n")

    def kernel_started(notebook):
        record(kernel_pid=getattr(client.km.provisioner, "pid", None))

    def cell_started(cell, cell_index):
        started[cell_index] = time.perf_counter()
        record(start=cell_index, at=started[cell_index] - start)

    def cell_done(cell, cell_index, execute_reply):
        record(cell=cell_index, seconds=time.perf_counter() - started[cell_index])

    client = NotebookClient(nb, timeout=None, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}},
                            on_notebook_start=kernel_started, on_cell_start=cell_started,
                            on_cell_executed=cell_done)
    status = 0
    try:
        client.execute()
    except Exception as err:  # a cell's error, a dead kernel, a kernel that cannot start...
        reason = (str(err).strip().splitlines() or [""])[-1]
        record(error=f"{type(err).__name__}: {reason}"[:300])
        status = 1
    finally:
        nbformat.write(nb, save)
        record(total=time.perf_counter() - start)
    return status


def _records(progress: Path) -> list[dict]:
    return [json.loads(line) for line in progress.read_text().splitlines()] \
        if progress.exists() else []


def _chapter_summary(run: dict, returncode, waited: float) -> tuple[str, bool]:
    """One report row: status, time, slowest (or still running) cell, peak GPU memory."""
    records = _records(run["progress"])
    cells = [r for r in records if "cell" in r]
    errors = [r["error"] for r in records if "error" in r]
    seconds = next((r["total"] for r in records if "total" in r), waited)
    slowest = max(cells, key=lambda r: r["seconds"], default=None)
    slow = f"cell {slowest['cell']} ({slowest['seconds']:.0f} s)" if slowest else "-"
    memory, passed = "-", False
    if returncode is None:
        done = {r["cell"] for r in cells}
        running = [r for r in records if "start" in r and r["start"] not in done]
        status = f"STOPPED at the limit, {len(cells)} of {run['cells']} code cells done"
        if running:
            status += (f", cell {running[-1]['start']} running for "
                       f"{waited - running[-1]['at']:.0f} s")
    elif returncode != 0 or errors:
        status = "FAILED: " + (errors[0] if errors else f"exit status {returncode}") + \
            f" (log: {run['log'].name})"
    else:
        import nbformat

        status, passed = "passed", True
        for output in nbformat.read(run["saved"], as_version=4).cells[-1].get("outputs", []):
            text = output.get("text", "")
            if "peak GPU memory" in text:
                gib = float(text.split(":")[-1])
                too_big = gib > T4_USABLE_GIB
                memory = f"{gib:.2f} GiB" + (f" (over the {T4_USABLE_GIB:.0f} GiB a T4 offers)"
                                             if too_big else "")
                passed = not too_big
    return f"| {run['name']} | {status} | {seconds:.0f} s | {slow} | {memory} |", passed


# What running the chapters imports; `make gpu-wheels` brings it to a machine without a network
_NOTEBOOK_RUNNER = "import nbformat, nbclient, ipykernel, jupyter_client.session, matplotlib_inline"


def notebook_runner_problem() -> str | None:
    """Why this Python cannot run the chapters (the last line of the import error), or None.
    Imported in a child process, so that a dependency missing further down shows too."""
    done = subprocess.run([sys.executable, "-c", _NOTEBOOK_RUNNER], capture_output=True,
                          text=True)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]


def _start_chapters(notebooks: list[Path], out: Path) -> list[dict]:
    """Start every chapter in its own process session, all at once, each with an equal share of
    the CPU threads. The kernels import this checkout's package and draw figures inline, as
    ``make notebooks`` does; each chapter's own messages go to ``out/<chapter>.log``."""
    import nbformat

    out.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // max(1, len(notebooks))))
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONPATH=path,
               MPLBACKEND="module://matplotlib_inline.backend_inline")
    runs = []
    for nb in notebooks:
        run = dict(name=nb.stem, progress=out / f"{nb.stem}.progress", saved=out / nb.name,
                   log=out / f"{nb.stem}.log", start=time.perf_counter(),
                   cells=1 + sum(c.cell_type == "code"
                                 for c in nbformat.read(nb, as_version=4).cells))
        run["progress"].unlink(missing_ok=True)
        command = [sys.executable, "-m", "qkvcourse.gpu_check", "--execute", str(nb),
                   "--save", str(run["saved"]), "--progress", str(run["progress"])]
        with open(run["log"], "w") as log:
            run["process"] = subprocess.Popen(command, env=env, start_new_session=True,
                                              stdout=log, stderr=subprocess.STDOUT)
        runs.append(run)
    return runs


def _stop(run: dict) -> None:
    """Kill a chapter's process and its kernel (jupyter starts each kernel in a session of its
    own, so killing the chapter's process group does not reach it)."""
    kernels = [r["kernel_pid"] for r in _records(run["progress"]) if r.get("kernel_pid")]
    for group in (run["process"].pid, *kernels):
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # already gone
    run["process"].wait()


def _finish_chapters(runs: list[dict], deadline: float) -> tuple[list[str], bool]:
    """Wait for the chapters until ``deadline`` (a ``time.perf_counter()`` value), stop the
    rest, and write the report's table."""
    rows, ok = [], True
    for run in runs:
        try:
            run["process"].wait(timeout=max(0.0, deadline - time.perf_counter()))
            returncode = run["process"].returncode
        except subprocess.TimeoutExpired:
            _stop(run)
            returncode = None
        row, passed = _chapter_summary(run, returncode, time.perf_counter() - run["start"])
        rows.append(row)
        ok = ok and passed
    title = f"## Chapters at their GPU size: {'passed' if ok else 'NOT all passed'}"
    return [title, "", "| chapter | status | time | slowest cell | peak GPU memory reserved |",
            "|---|---|---:|---|---:|", *rows, ""], ok


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


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
    problem = notebook_runner_problem()
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)  # a killed check stops its chapters too
    runs = [] if problem else _start_chapters(chapters, report.parent / "gpu-chapters")
    try:
        section, ok = _run("CUDA tests and sync-debug mode",
                           [python, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
                            "-k", "cuda or gpu_readiness"], STEP_LIMITS["tests"])
        lines += section
        report.write_text("\n".join(lines) + "\n")  # a partial report survives a killed run
        if problem:
            section, passed = [f"## Chapters at their GPU size: NOT RUN, this Python cannot "
                               f"run notebooks ({problem}; `make gpu-wheels` on a machine with "
                               f"a network, then `make gpu-check GPU_PYTHON=python3`)", ""], False
        else:
            section, passed = _finish_chapters(runs, started + STEP_LIMITS["chapters"])
    finally:
        for run in runs:
            if run["process"].poll() is None:
                _stop(run)
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
