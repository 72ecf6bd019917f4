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

from grading_support import ROOT, edition, fill, read_sheets, solutions, solved, write
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


def require_sandbox():
    """The batch tests run submissions in bubblewrap, which .ci/run installs (Debian's
    `bubblewrap`); without it they are skipped, with this message."""
    from qkvcourse.grading.instructor.sandbox import SandboxError, make_sandbox

    try:
        box = make_sandbox("bwrap")
    except SandboxError as exc:
        pytest.skip(f"no bubblewrap sandbox here ({exc}); `apt-get install bubblewrap`")
    box.close()


def run_batch(root: Path, sources: Path, submissions: Path, out: Path, sheet: str, seed: Path,
              jobs: int = 2, extra: list[str] = ()) -> dict:
    require_sandbox()
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


def test_student_edition_runs_and_checks_without_raising(capsys):
    """The student edition's own cells, with the real grader.check, in this process."""
    from qkvcourse.grading.sheets import code_cells
    from qkvcourse.grading.worker import run_cells

    for slug in SHEETS:
        namespace, errors = run_cells(code_cells(edition(slug)))
        assert not errors, (slug, errors)
    text = capsys.readouterr().out
    assert "not yet" in text or "not defined" in text


def test_no_sandbox_is_refused_unless_the_instructor_accepts_it(tmp_path, monkeypatch):
    from qkvcourse.grading.instructor import sandbox

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)  # no bwrap, setpriv, unshare
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)  # not root
    with pytest.raises(sandbox.SandboxError, match="allow-same-user"):
        sandbox.make_sandbox("auto")
    box = sandbox.make_sandbox("auto", allow_same_user=True)
    try:
        assert box.mode == "none" and not box.own_processes and box.notes
    finally:
        box.close()
    with pytest.raises(sandbox.SandboxError, match="bubblewrap"):
        sandbox.make_sandbox("bwrap")
    with pytest.raises(sandbox.SandboxError, match="root"):
        sandbox.make_sandbox("uid")


def test_uid_sandbox_drops_to_a_user_of_its_own_per_job(tmp_path, monkeypatch):
    from qkvcourse.grading.instructor import sandbox

    box = sandbox.Sandbox("uid", tmp_path / "code", ["/site"])
    work = tmp_path / "work"
    work.mkdir()
    chowned = []
    monkeypatch.setattr(sandbox.os, "chown", lambda path, uid, gid: chowned.append((uid, gid)))
    argv, env = box.command(work, ["a"], slot=3)
    uid = sandbox.UID_BASE + 3
    assert argv[:5] == ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    assert chowned and all(c == (uid, uid) for c in chowned)
    assert "PYTHONPATH" not in env and env["HOME"] == str(work)
    assert box.own_processes


def test_bwrap_sandbox_sees_only_what_it_needs(tmp_path):
    from qkvcourse.grading.instructor import sandbox

    box = sandbox.Sandbox("bwrap", tmp_path / "code", [str(tmp_path / "code")])
    argv, env = box.command(tmp_path / "work", ["a"], slot=0)
    joined = " ".join(argv)
    for flag in ["--unshare-all", "--unshare-user", "--uid 65534", "--die-with-parent",
                 "--new-session", "--clearenv"]:
        assert flag in joined
    binds = [argv[i + 1] for i, a in enumerate(argv) if a in ("--ro-bind", "--bind")]
    assert str(ROOT) not in binds and str(ROOT / "qkvcourse") not in binds  # no instructor code
    writable = [argv[i + 1] for i, a in enumerate(argv) if a == "--bind"]
    assert writable == [str(tmp_path / "work")]


def test_seed_file_must_be_private(tmp_path):
    from qkvcourse.grading.instructor.registry import new_seed_file, read_seed

    path = tmp_path / "seed"
    seed = new_seed_file(path)
    assert read_seed(path) == seed and (path.stat().st_mode & 0o777) == 0o600
    path.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        read_seed(path)
