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
