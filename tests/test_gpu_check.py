"""`make gpu-check` without CUDA: it says that nothing was checked and fails (status 2); with
CUDA it writes its report step by step (the steps are exercised here on stand-in commands)."""
from __future__ import annotations

import sys

import pytest
import torch

from qkvcourse import gpu_check


def test_without_cuda_the_report_says_nothing_was_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    report = tmp_path / "gpu-check.md"
    assert gpu_check.main(["--report", str(report)]) == 2
    assert "No CUDA device: nothing was checked" in report.read_text()


def test_a_step_reports_its_status_and_output():
    lines, passed = gpu_check._run("ok step", [sys.executable, "-c", "print('fine')"], 30)
    assert passed and lines[0].startswith("## ok step: passed") and "fine" in lines
    lines, passed = gpu_check._run("bad step", [sys.executable, "-c", "raise SystemExit(3)"], 30)
    assert not passed and "FAILED (exit status 3)" in lines[0]
    lines, passed = gpu_check._run("slow step", [sys.executable, "-c",
                                                 "import time; time.sleep(5)"], 1)
    assert not passed and "STOPPED after its 1 s limit" in lines[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_lines_name_the_card():
    assert "compute capability" in gpu_check._device_lines()[0]


def _notebook(path, *sources):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# stand-in chapter")]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"  # a zombie is dead
    except FileNotFoundError:
        return False


def test_chapters_run_side_by_side_and_report_each(tmp_path):
    """Stand-in chapters for the GPU-size step: one passes, one raises, one outlives the limit
    (it is stopped, its kernel too, and reported with the cells it finished and the one it was
    in). A chapter that finished early reports its own time, not the wait."""
    import json
    import time

    chapters = [_notebook(tmp_path / "01_fine.ipynb", "x = 2 + 2", "print(x)"),
                _notebook(tmp_path / "02_broken.ipynb", "y = 1", "raise KeyError('no such key')"),
                _notebook(tmp_path / "03_slow.ipynb", "z = 3", "import time; time.sleep(600)")]
    start = time.perf_counter()
    runs = gpu_check._start_chapters(chapters, tmp_path / "out")
    time.sleep(15)  # the check's tests step runs meanwhile
    lines, ok = gpu_check._finish_chapters(runs, start + 25)
    assert time.perf_counter() - start < 45, "the slow chapter was not stopped at its deadline"
    assert not ok and lines[0] == "## Chapters at their GPU size: NOT all passed"
    rows = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| 0")}
    fine = rows["01_fine"].split(" | ")
    assert fine[1] == "passed" and fine[4] == "0.00 GiB |"
    assert float(fine[2].split()[0]) < 14  # its own time, not the 15 s the parent waited
    assert "FAILED: CellExecutionError" in rows["02_broken"] and "KeyError" in rows["02_broken"]
    assert "(log: 02_broken.log)" in rows["02_broken"]
    assert "STOPPED at the limit, 1 of 3 code cells done, cell 2 running for" in rows["03_slow"]
    assert (tmp_path / "out" / "01_fine.ipynb").exists()  # the executed copy is kept
    kernels = [r["kernel_pid"] for run in runs for r in gpu_check._records(run["progress"])
               if "kernel_pid" in r]
    assert len(kernels) == 3
    time.sleep(1)
    for run in runs:
        assert run["process"].poll() is not None
    assert not any(_alive(pid) for pid in kernels), "a notebook kernel was left running"
    last = (tmp_path / "out" / "01_fine.progress").read_text().splitlines()[-1]
    assert json.loads(last)["total"] > 0


def _fake_cuda(monkeypatch, steps):
    """main() on this machine as if it had CUDA: the device lines and the two command steps
    (tests, benchmarks) are stand-ins that record what they were asked to run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "_device_lines", lambda: ["- device: stand-in"])

    def run(title, command, limit):
        steps.append(title)
        return [f"## {title}: passed in 0 s", ""], True
    monkeypatch.setattr(gpu_check, "_run", run)


def test_main_runs_every_step_and_the_chapters(tmp_path, monkeypatch):
    steps = []
    _fake_cuda(monkeypatch, steps)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "01_first.ipynb", "print('chapter one')")
    _notebook(notebooks / "draft.ipynb", "raise SystemExit('not a chapter')")  # not NN_*.ipynb
    report = tmp_path / "gpu-check.md"
    assert gpu_check.main(["--report", str(report), "--notebooks", str(notebooks)]) == 0
    text = report.read_text()
    assert steps == ["CUDA tests and sync-debug mode", "Benchmarks on CUDA"]
    assert "## Chapters at their GPU size: passed" in text and "| 01_first | passed |" in text
    assert "draft" not in text


def test_the_notebook_runner_is_imported_for_real():
    assert gpu_check.notebook_runner_problem() is None  # this environment runs notebooks


def test_main_says_when_the_chapters_cannot_run(tmp_path, monkeypatch):
    steps = []
    _fake_cuda(monkeypatch, steps)
    monkeypatch.setattr(gpu_check, "notebook_runner_problem",
                        lambda: "ModuleNotFoundError: No module named 'attrs'")
    report = tmp_path / "gpu-check.md"
    assert gpu_check.main(["--report", str(report), "--notebooks", str(tmp_path)]) == 1
    assert ("Chapters at their GPU size: NOT RUN, this Python cannot run notebooks "
            "(ModuleNotFoundError: No module named 'attrs'" in report.read_text())
    assert steps == ["CUDA tests and sync-debug mode", "Benchmarks on CUDA"]
