"""The isolated autograder: whole sheets, mutants and hostile submissions, graded in batch.

Each batch runs the real command line (``python -m qkvcourse.grading grade``) on a copy of
the package and of the sheet sources in a temporary folder, so that a submission that edits
the grader on disk edits the copy, and the test can check that the copy was restored.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grading_support import ROOT, edition, fill, read_sheets, solutions, solved, with_cell, write
from mutants import all_mutants
from qkvcourse.grading.autograde import code_digest

SHEETS = read_sheets()
LIMITS = ["--timeout", "60", "--startup-timeout", "20", "--call-timeout", "4", "--memory-mb", "2048"]


def copy_package(tmp: Path) -> tuple[Path, Path]:
    """A private copy of the package and the sheet sources; returns (root, sources)."""
    shutil.copytree(ROOT / "qkvcourse", tmp / "repo" / "qkvcourse",
                    ignore=shutil.ignore_patterns("__pycache__"))
    sources = tmp / "repo" / "notebooks" / "exercises" / "sources"
    shutil.copytree(ROOT / "notebooks" / "exercises" / "sources", sources)
    return tmp / "repo", sources


def run_batch(root: Path, sources: Path, submissions: Path, out: Path, jobs: int = 2,
              sheet: str | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "qkvcourse.grading", "grade", str(submissions),
                           "--out", str(out), "--sources", str(sources), "--jobs", str(jobs), *LIMITS,
                           *(["--sheet", sheet] if sheet else [])],
                          cwd=root, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    elapsed = time.monotonic() - start
    with open(out / "summary.csv") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    results = {s: json.loads((out / s / "results.json").read_text()) for s in rows}
    print(f"graded {len(rows)} submissions in {elapsed:.1f} s "
          f"({elapsed / max(1, len(rows)) * jobs:.2f} s per submission per job)")
    return {"rows": rows, "results": results, "seconds": elapsed}


def batch_mutants():
    """The first mutant of every question: all of them are checked in process by
    test_grading_sheets.py; these also go through the isolated grader."""
    chosen = {}
    for m in all_mutants():
        chosen.setdefault((m.sheet, m.question), m)
    return list(chosen.values())


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Every sheet solved and unmodified, plus every mutant, graded in one batch."""
    tmp = tmp_path_factory.mktemp("batch")
    root, sources = copy_package(tmp)
    subs = tmp / "submissions"
    for slug, sheet in SHEETS.items():
        write(solved(sheet), subs / f"solved-{slug}.ipynb")
        write(edition(slug), subs / f"blank-{slug}.ipynb")
    for i, m in enumerate(batch_mutants()):
        sheet = SHEETS[m.sheet]
        name = next(q.name for q in sheet.questions if q.otter_name == m.question)
        answers = solutions(sheet)
        answers[name] = m.code
        write(fill(m.sheet, answers), subs / f"mutant{i:02d}-{m.sheet}.ipynb")
    return run_batch(root, sources, subs, tmp / "out")


@pytest.mark.parametrize("slug", sorted(SHEETS))
def test_solution_sheet_scores_full_marks(batch, slug):
    r = batch["results"][f"solved-{slug}"]
    assert r["score"] == SHEETS[slug].max_score, json.dumps(r, indent=1)[:3000]


@pytest.mark.parametrize("slug", sorted(SHEETS))
def test_unmodified_student_sheet_scores_zero_with_feedback(batch, slug):
    r = batch["results"][f"blank-{slug}"]
    assert r["score"] == 0
    assert len(r["tests"]) == len(SHEETS[slug].questions)
    for t in r["tests"]:
        assert t["score"] == 0 and "cases passed" in t["output"], t


def test_every_mutant_loses_points_and_gets_its_diagnosis(batch):
    for i, m in enumerate(batch_mutants()):
        r = batch["results"][f"mutant{i:02d}-{m.sheet}"]
        by_q = {t["name"].split(":")[0]: t for t in r["tests"]}
        target = by_q[m.question]
        assert target["score"] < target["max_score"], f"{m.label}: {target}"
        assert m.diagnosis in target["output"], f"{m.label}: {target['output']}"
        others = [t for q, t in by_q.items() if q != m.question]
        assert all(t["score"] == t["max_score"] for t in others), f"{m.label} changed other scores"


def test_results_are_gradescope_compatible(batch):
    for r in batch["results"].values():
        assert isinstance(r["score"], (int, float)) and isinstance(r["tests"], list)
        for t in r["tests"]:
            assert {"name", "score", "max_score", "output"} <= set(t)
            assert t["visibility"] in ("visible", "hidden", "after_due_date", "after_published")


def test_summary_has_one_row_per_submission(batch):
    rows = batch["rows"]
    assert len(rows) == 2 * len(SHEETS) + len(batch_mutants())
    assert all(row["score"] != "" and row["max_score"] != "" for row in rows.values())


# --- hostile submissions -------------------------------------------------------------------

SHEET = "ch03_scoring_functions"


def hostile_submissions(out: Path) -> dict[str, dict]:
    sheet = SHEETS[SHEET]
    blank, good = edition(SHEET), solved(sheet)
    answers = solutions(sheet)
    wrong = {name: f"def {name}(*args, **kwargs):\n    return None" for name in answers}
    subs = {
        "solved": good,
        "blank": blank,
        "loop-at-top": with_cell(good, "while True:\n    pass", at=4),
        "loop-in-call": fill(SHEET, {**answers, "masked_softmax_lens":
                                     "def masked_softmax_lens(X, valid_lens):\n    while True:\n        pass"}),
        "memory-at-top": with_cell(blank, "hog = []\nwhile True:\n    hog.append(bytearray(2**28))"),
        "memory-in-call": fill(SHEET, {**answers, "sdpa": "import torch\ndef sdpa(*args, **kwargs):\n"
                                                        "    return torch.ones(2**36)"}),
        "sys-exit": with_cell(blank, "import sys\nsys.exit(0)", at=4),
        "os-exit-at-top": with_cell(good, "import os\nos._exit(0)"),
        "os-exit-in-call": fill(SHEET, {**answers, "additive_scores":
                                        "def additive_scores(*args):\n    import os\n    os._exit(1)"}),
        "exception-at-import": with_cell(blank, "import a_module_that_does_not_exist", at=3),
        "kills-its-grader": with_cell(blank, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"),
        # Tampering: patch the checks and the grader in its own process...
        "patches-the-checks": with_cell(fill(SHEET, wrong),
            "import qkvcourse.grading.core as core, qkvcourse.grading as g\n"
            "core.compare = lambda *a, **k: None\n"
            "core.judge_case = lambda question, case, received, error: core.Outcome(case.label, True)\n"
            "core.run_question = lambda *a, **k: None\n"
            "g.check = core.check = lambda *a, **k: None\n"
            "import qkvcourse.grading.autograde as ag\n"
            "ag.grade_submission = lambda *a, **k: {'score': 100.0, 'tests': []}\n"),
        # ... write its own results file (it guessed where they go) ...
        "writes-results": with_cell(blank,
            "import json, pathlib\n"
            f"out = pathlib.Path({str(out)!r})\n"
            "for student in ['writes-results', 'blank', 'solved']:\n"
            "    (out / student).mkdir(parents=True, exist_ok=True)\n"
            "    (out / student / 'results.json').write_text(json.dumps({'score': 100.0, 'tests': []}))\n"
            "pathlib.Path('results.json').write_text(json.dumps({'score': 100.0}))\n"
            "(out / 'summary.csv').write_text('student,score\\nwrites-results,100\\n')"),
        # ... and edit the grader and the sheet on disk.
        "edits-the-grader": with_cell(fill(SHEET, wrong),
            "import pathlib, qkvcourse.grading.core as core, qkvcourse.grading.sheets as sheets\n"
            "path = pathlib.Path(core.__file__)\n"
            "path.write_text(path.read_text() + '\\n\\ndef compare(*a, **k):\\n    return None\\n')\n"
            f"src = pathlib.Path(sheets.default_sources()) / '{SHEET}.ipynb'\n"
            "src.write_text(src.read_text().replace('points: 2', 'points: 200'))\n"
            "for test in pathlib.Path(core.__file__).parent.glob('questions/ch03.py'):\n"
            "    test.write_text(test.read_text().replace('atol=1e-6', 'atol=1e9'))"),
    }
    return subs


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    root, sources = copy_package(tmp)
    package = root / "qkvcourse" / "grading"
    before = code_digest(sources, package)
    out, subs = tmp / "out", tmp / "submissions"
    for name, nb in hostile_submissions(out).items():
        write(nb, subs / f"{name}.ipynb")
    (subs / "invalid-json.ipynb").write_text('{"cells": [ this is not json', encoding="utf-8")
    result = run_batch(root, sources, subs, out, sheet=SHEET)
    result["digest_before"], result["digest_after"] = before, code_digest(sources, package)
    result["out"] = out
    return result


def scores(hostile, student):
    r = hostile["results"][student]
    return r["score"], {t["name"].split(":")[0]: t["score"] for t in r["tests"]}, r


def test_every_hostile_submission_gets_a_results_file(hostile):
    expected = set(hostile_submissions(Path("/nonexistent"))) | {"invalid-json"}
    assert set(hostile["results"]) == expected


def test_honest_submissions_graded_correctly_despite_the_others(hostile):
    full = SHEETS[SHEET].max_score
    assert scores(hostile, "solved")[0] == full
    assert scores(hostile, "blank")[0] == 0


@pytest.mark.parametrize("student", ["blank", "loop-at-top", "memory-at-top", "sys-exit",
                                     "os-exit-at-top", "exception-at-import", "kills-its-grader",
                                     "patches-the-checks", "writes-results", "edits-the-grader",
                                     "invalid-json"])
def test_hostile_submission_gains_nothing(hostile, student):
    total, _, r = scores(hostile, student)
    assert total == 0, json.dumps(r, indent=1)[:2000]
    assert r["tests"], "a zero score must still list the questions"


def test_a_crash_or_loop_in_one_answer_costs_only_that_answer(hostile):
    for student, bad in [("loop-in-call", "q1"), ("os-exit-in-call", "q2"), ("memory-in-call", "q3")]:
        total, by_q, r = scores(hostile, student)
        assert by_q[bad] == 0, r
        assert all(s > 0 for q, s in by_q.items() if q != bad), (student, by_q)


def test_failure_reasons_are_explained(hostile):
    def output(student):
        return json.dumps(hostile["results"][student])
    assert "time limit" in output("loop-at-top") and "infinite loop" in output("loop-at-top")
    assert "time limit" in output("loop-in-call")
    assert "exited with code 0" in output("os-exit-at-top")
    assert "could not be read" in output("invalid-json")
    assert "sys.exit" in output("sys-exit")
    assert "ModuleNotFoundError" in output("exception-at-import")
    assert "Not graded" in output("kills-its-grader")


def test_grader_files_on_disk_are_restored(hostile):
    assert hostile["digest_before"] == hostile["digest_after"]
    log = hostile["out"] / "tampering.log"
    assert log.exists(), "the edit by edits-the-grader was not noticed"
    assert "core.py" in log.read_text()


def test_student_edition_runs_and_checks_without_raising(capsys):
    """The student edition's own cells, with the real grader.check, in this process."""
    from qkvcourse.grading.sheets import code_cells
    from qkvcourse.grading.worker import run_cells

    for slug in SHEETS:
        namespace, errors = run_cells(code_cells(edition(slug)))
        assert not errors, (slug, errors)
    text = capsys.readouterr().out
    assert "not yet" in text or "not defined" in text
