"""The sandboxed autograder: whole sheets and mutants graded in batch.

Each batch runs the real command line (``python -m qkvcourse.grading grade``) on a copy of the
package and of the sheet sources in a temporary folder, so that a submission that manages to
edit the grader edits the copy, and the test can check that the copy is unchanged.
tests/test_grading_security.py tries the attacks of a hostile class.
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
from qkvcourse.grading.instructor.autograde import code_digest, results_folder

SHEETS = read_sheets()
LIMITS = ["--timeout", "60", "--startup-timeout", "20", "--call-timeout", "4", "--memory-mb", "2048"]


def copy_package(tmp: Path) -> tuple[Path, Path]:
    """A private copy of the package and the sheet sources; returns (root, sources)."""
    shutil.copytree(ROOT / "qkvcourse", tmp / "repo" / "qkvcourse",
                    ignore=shutil.ignore_patterns("__pycache__"))
    sources = tmp / "repo" / "notebooks" / "exercises" / "sources"
    shutil.copytree(ROOT / "notebooks" / "exercises" / "sources", sources)
    return tmp / "repo", sources


def seed_file(tmp: Path, seed: int = 4242) -> Path:
    path = tmp / "private" / "seed"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{seed}\n")
    path.chmod(0o600)
    path.parent.chmod(0o700)
    return path


def run_batch(root: Path, sources: Path, submissions: Path, out: Path, sheet: str, seed: Path,
              jobs: int = 2, extra: list[str] = ()) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "qkvcourse.grading", "grade", str(submissions),
                           "--out", str(out), "--sources", str(sources), "--jobs", str(jobs),
                           "--sheet", sheet, "--seed-file", str(seed), *LIMITS, *extra],
                          cwd=root, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    elapsed = time.monotonic() - start
    with open(out / "summary.csv") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    results = {}
    for row in rows.values():
        path = results_folder(out, row["student"]) / "results.json"
        if path.exists():
            results[row["student"]] = json.loads(path.read_text())
    graded = [r for r in results.values() if r.get("tests")]
    per = sum(r.get("execution_time", 0) for r in graded) / max(1, len(graded))
    print(f"graded {len(rows)} files in {elapsed:.1f} s with {jobs} jobs; "
          f"{per:.2f} s per submission (grader's own time)")
    return {"rows": rows, "results": results, "seconds": elapsed, "per_submission": per}


def by_question(results: dict) -> dict[str, dict]:
    """{"q1": {"score", "max_score", "output"}} with the public and hidden parts added up."""
    out: dict[str, dict] = {}
    for t in results["tests"]:
        q = t["name"].split(":")[0]
        entry = out.setdefault(q, {"score": 0.0, "max_score": 0.0, "output": ""})
        entry["score"] = round(entry["score"] + t["score"], 4)
        entry["max_score"] = round(entry["max_score"] + t["max_score"], 4)
        entry["output"] += t["output"] + "\n"
    return out


def batch_mutants():
    """The first mutant of every question: all of them are checked in process by
    test_grading_sheets.py; these also go through the sandboxed grader."""
    chosen = {}
    for m in all_mutants():
        chosen.setdefault((m.sheet, m.question), m)
    return list(chosen.values())


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Every sheet solved and unmodified, plus every mutant: one batch per sheet."""
    tmp = tmp_path_factory.mktemp("batch")
    root, sources = copy_package(tmp)
    seed = seed_file(tmp)
    before = code_digest(sources, root / "qkvcourse")
    mutants = batch_mutants()
    results, per = {}, []
    for slug, sheet in SHEETS.items():
        subs = tmp / "submissions" / slug
        write(solved(sheet), subs / "solved.ipynb")
        write(edition(slug), subs / "blank.ipynb")
        for i, m in enumerate(mutants):
            if m.sheet != slug:
                continue
            name = next(q.name for q in sheet.questions if q.otter_name == m.question)
            answers = solutions(sheet)
            answers[name] = m.code
            write(fill(m.sheet, answers), subs / f"mutant{i:02d}.ipynb")
        run = run_batch(root, sources, subs, tmp / "out" / slug, slug, seed)
        per.append(run["per_submission"])
        results.update({f"{s}-{slug}" if not s.startswith("mutant") else s: r
                        for s, r in run["results"].items()})
    assert code_digest(sources, root / "qkvcourse") == before
    print(f"mean grading time per submission: {sum(per) / len(per):.2f} s")
    return {"results": results}


@pytest.mark.parametrize("slug", sorted(SHEETS))
def test_solution_sheet_scores_full_marks(batch, slug):
    r = batch["results"][f"solved-{slug}"]
    assert r["score"] == SHEETS[slug].max_score, json.dumps(r, indent=1)[:3000]


@pytest.mark.parametrize("slug", sorted(SHEETS))
def test_unmodified_student_sheet_scores_zero_with_feedback(batch, slug):
    r = batch["results"][f"blank-{slug}"]
    assert r["score"] == 0
    questions = by_question(r)
    assert sorted(questions) == sorted(q.otter_name for q in SHEETS[slug].questions)
    for q in questions.values():
        assert q["score"] == 0 and "cases passed" in q["output"], q


def test_every_mutant_loses_points_and_gets_its_diagnosis(batch):
    for i, m in enumerate(batch_mutants()):
        r = batch["results"][f"mutant{i:02d}"]
        questions = by_question(r)
        target = questions[m.question]
        assert target["score"] < target["max_score"], f"{m.label}: {target}"
        assert m.diagnosis in target["output"], f"{m.label}: {target['output']}"
        others = [t for q, t in questions.items() if q != m.question]
        assert all(t["score"] == t["max_score"] for t in others), f"{m.label} changed other scores"


def test_hidden_case_feedback_shows_no_inputs_or_expected_values(batch):
    seen = 0
    for r in batch["results"].values():
        for t in r["tests"]:
            if t["visibility"] != "visible":
                assert t["visibility"] in ("hidden", "after_published")
                assert "Input:" not in t["output"] and "expected:" not in t["output"], t["output"]
                assert "received:" not in t["output"], t["output"]
                seen += t["score"] < t["max_score"]
    assert seen >= 10, "too few failing hidden tests to check the feedback"


def test_results_follow_gradescopes_schema(batch):
    for r in batch["results"].values():
        assert isinstance(r["score"], (int, float)) and isinstance(r["tests"], list)
        assert "extra" not in r and isinstance(r.get("extra_data", {}), dict)
        for t in r["tests"]:
            assert {"name", "score", "max_score", "output", "visibility"} <= set(t)
            assert t["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
            assert "extra" not in t
        assert abs(sum(t["max_score"] for t in r["tests"]) - r["extra_data"]["max_score"]) < 1e-3


