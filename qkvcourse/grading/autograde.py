"""The autograder: grade one submission, or a folder of them in parallel.

Isolation, in three layers:

1. The student's code runs in a *worker* process (:mod:`qkvcourse.grading.worker`): its own
   session, a fresh temporary directory holding only a copy of the notebook, a memory limit
   (``RLIMIT_AS``), a file-size limit, and a wall-clock deadline enforced from outside by
   killing its process group. The worker only returns outputs; the comparison with the
   reference and the score are computed here, in the grader process, on values loaded with
   ``torch.load(weights_only=True)``.
2. Each submission is graded by its own grader process (``grade-one``), started by the
   batch runner with its own deadline. If it dies or hangs, the runner still writes a
   results file for that submission (score 0 and the reason).
3. The batch runner snapshots the grading code and the sheet sources before it starts. A
   grader process refuses to run if its code differs from the snapshot; the runner then
   restores the files and grades again, so a submission that edits the grader on disk cannot
   change anybody's score. The runner, not the submission, writes every ``results.json``.

This is process-level isolation for a course's own machines and for CI. A determined attacker
running as the same user can still disturb other processes; for untrusted populations run
each ``grade-one`` in its own container (Gradescope does), using the bundle from
:func:`write_gradescope_bundle`.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .core import Case, Remote, StudentError, get_question, run_question
from .sheets import Sheet, read_sheet, read_sheets
from .worker import read_message, write_message

__all__ = ["Limits", "grade_submission", "grade_folder", "code_digest", "write_gradescope_bundle",
           "match_sheet"]

PACKAGE = Path(__file__).resolve().parent


@dataclasses.dataclass
class Limits:
    """Per-submission limits: wall-clock seconds for the whole submission, for its notebook to
    run, and for one call; memory of the worker in MiB (address space)."""

    total_s: float = 180.0
    startup_s: float = 60.0
    call_s: float = 10.0
    memory_mb: int = 4096


def _env_with_package(env: dict) -> dict:
    """``env`` with this copy of qkvcourse first on PYTHONPATH, for the processes we start."""
    env["PYTHONPATH"] = str(PACKAGE.parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# --- the worker, seen from the grader ----------------------------------------------------

class Worker:
    """A running worker process for one submission."""

    def __init__(self, notebook: Path, limits: Limits, deadline: float):
        self.limits, self.deadline = limits, deadline
        self.tmp = Path(tempfile.mkdtemp(prefix="qkv-submission-"))
        shutil.copy(notebook, self.tmp / "submission.ipynb")
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        env = _env_with_package({k: v for k, v in os.environ.items()
                                 if not k.startswith("QKVCOURSE_GRADING")})  # no private seed
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qkvcourse.grading.worker", "submission.ipynb",
             str(to_worker_r), str(from_worker_w), str(limits.memory_mb)],
            cwd=self.tmp, env=env, pass_fds=(to_worker_r, from_worker_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.errors: list[str] = []
        hello = self._receive(min(limits.startup_s, self.deadline - time.monotonic()),
                              "running your notebook")
        if not hello.get("ready"):
            raise Remote(hello.get("error", "the notebook could not be run"))
        self.errors = list(hello.get("errors", []))

    def _receive(self, timeout: float, doing: str):
        if timeout <= 0 or not select.select([self._from_worker], [], [], timeout)[0]:
            self.kill()
            raise Remote(f"time limit reached while {doing} (over {self.limits.call_s:g} s for a "
                         f"call, {self.limits.startup_s:g} s to run the notebook or "
                         f"{self.limits.total_s:g} s in all); is there an infinite loop?")
        try:
            return read_message(self._from_worker)
        except Exception as exc:  # EOF, a truncated or forged message
            code = self.proc.poll()
            self.kill()
            how = self._how_it_ended(code)
            raise Remote(f"your notebook's process stopped while {doing}{how}"
                         + ("" if isinstance(exc, EOFError) else f" ({type(exc).__name__})")) from None

    def _how_it_ended(self, code) -> str:
        if code is None:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                return ""
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code in (signal.SIGKILL, signal.SIGSEGV) else ""
            return f": killed by {name}{hint}"
        return f": it exited with code {code} (os._exit or sys.exit at top level?)"

    def call(self, name: str, kind: str, case: Case):
        try:
            write_message(self._to_worker, {"name": name, "kind": kind, "case": dataclasses.asdict(case)})
        except OSError:
            code = self.proc.poll()
            self.kill()
            raise Remote(f"your notebook's process is gone{self._how_it_ended(code)}") from None
        timeout = min(self.limits.call_s, self.deadline - time.monotonic())
        reply = self._receive(timeout, f"calling {name}")
        if not isinstance(reply, dict) or "ok" not in reply:
            raise Remote("the reply from your notebook's process was not understood")
        if reply["ok"]:
            return reply.get("value")
        raise StudentError(str(reply.get("error", "an error")))

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def close(self):
        for fd in (self._to_worker, self._from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


class _Session:
    """One submission's worker: started when first needed, started again after a crash or a
    timeout (the rest of that question's cases fail), never again if the notebook itself
    cannot run."""

    def __init__(self, notebook: Path, limits: Limits, deadline: float):
        self.notebook, self.limits, self.deadline = notebook, limits, deadline
        self.worker: Worker | None = None
        self.startup_error: str | None = None
        self.notes: list[str] = []  # errors of the notebook's own cells

    def call(self, name: str, kind: str, case: Case):
        if self.startup_error is not None:
            raise Remote(self.startup_error)
        if self.worker is None:
            try:
                self.worker = Worker(self.notebook, self.limits, self.deadline)
            except Remote as exc:
                self.startup_error = str(exc)
                raise
            self.notes.extend(e for e in self.worker.errors if e not in self.notes)
        try:
            return self.worker.call(name, kind, case)
        except Remote:
            self.close()
            raise

    def close(self):
        if self.worker is not None:
            self.worker.close()
            self.worker = None


# --- grading one submission --------------------------------------------------------------

def _question_result(question, sheet_q, outcomes):
    passed = sum(o.passed for o in outcomes)
    total = len(outcomes)
    score = round(sheet_q.points * passed / total, 4) if total else 0.0
    first = next((o for o in outcomes if not o.passed), None)
    if first is None:
        output = f"All {total} cases passed."
    else:
        output = f"{passed} of {total} cases passed.\nFirst failing case: {first.label}\n{first.message}"
    return {"name": f"{sheet_q.otter_name}: {question.title}", "score": score,
            "max_score": sheet_q.points, "output": output, "visibility": "visible",
            "extra": {"qid": question.qid, "passed": passed, "total": total,
                      "mistakes": sorted({o.mistake for o in outcomes if o.mistake})}}


def grade_submission(notebook: str | Path, sheet: Sheet, limits: Limits | None = None) -> dict:
    """Grade one notebook against a sheet; returns a Gradescope ``results.json`` dict."""
    import torch

    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a busy machine
    limits = limits or Limits()
    start = time.monotonic()
    session = _Session(Path(notebook), limits, start + limits.total_s)
    tests = []
    try:
        for sheet_q in sheet.questions:
            question = get_question(sheet_q.qid)
            result = run_question(
                sheet_q.qid, lambda case: session.call(sheet_q.name, question.kind, case), hidden=True)
            tests.append(_question_result(question, sheet_q, result.outcomes))
    finally:
        session.close()
    notes = session.notes
    score = round(sum(t["score"] for t in tests), 4)
    output = f"Score {score:g} / {sheet.max_score:g} on {sheet.slug}."
    if notes:
        output += "\nWhile running your notebook: " + "; ".join(notes[:5])
    return {"score": score, "execution_time": round(time.monotonic() - start, 2), "output": output,
            "tests": tests, "extra": {"sheet": sheet.slug, "max_score": sheet.max_score}}


# --- tamper evidence ----------------------------------------------------------------------

def _grading_files(sources: Path, package: Path = PACKAGE) -> list[Path]:
    files = sorted(p for p in package.rglob("*.py"))
    files += [package.parent / "__init__.py", package / "sheets.json"]
    files += sorted(Path(sources).glob("*.ipynb"))
    return files


def code_digest(sources: Path, package: Path = PACKAGE) -> str:
    """sha256 over the grading package's files and the sheet sources."""
    h = hashlib.sha256()
    for path in _grading_files(sources, package):
        h.update(str(path).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _snapshot(sources: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in _grading_files(sources)}


def _restore(snapshot: dict[Path, bytes], sources: Path) -> list[str]:
    changed = []
    for path, data in snapshot.items():
        try:
            same = path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            changed.append(str(path.name))
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.chmod(0o644)  # a submission may have made it read-only
            path.write_bytes(data)
    extra = set(_grading_files(sources)) - set(snapshot)
    for path in extra:  # new files dropped into the package or the sources
        changed.append(str(path.name))
        path.unlink()
    return changed


# --- batch ---------------------------------------------------------------------------------

def match_sheet(notebook: Path, sheets: dict[str, Sheet]) -> Sheet | None:
    """The sheet a submission answers: by its otter assignment name, else by file name."""
    try:
        meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
        name = meta.get("otter", {}).get("assignment_name")
        if name in sheets:
            return sheets[name]
    except Exception:  # noqa: BLE001  (invalid JSON: fall back to the file name)
        pass
    for slug in sorted(sheets, key=len, reverse=True):
        if slug in notebook.name or slug[:4] == notebook.name[:4]:
            return sheets[slug]
    return None


def _failure(sheet: Sheet | None, reason: str) -> dict:
    tests = [] if sheet is None else [
        {"name": f"{q.otter_name}: {get_question(q.qid).title}", "score": 0.0, "max_score": q.points,
         "output": reason, "visibility": "visible"} for q in sheet.questions]
    return {"score": 0.0, "output": reason, "tests": tests,
            "extra": {"sheet": sheet.slug if sheet else None,
                      "max_score": sheet.max_score if sheet else 0.0, "error": reason}}


def _grade_in_subprocess(notebook: Path, sheet: Sheet, sources: Path, limits: Limits,
                         digest: str) -> tuple[dict | None, str]:
    """Run ``grade-one`` in its own process; return (results, problem)."""
    with tempfile.TemporaryDirectory(prefix="qkv-grader-") as tmp:
        out = Path(tmp) / "results.json"
        cmd = [sys.executable, "-m", "qkvcourse.grading", "grade-one", str(notebook),
               "--sheet", str(sheet.path), "--out", str(out), "--expect-digest", digest,
               "--sources", str(sources), "--timeout", str(limits.total_s),
               "--call-timeout", str(limits.call_s), "--memory-mb", str(limits.memory_mb),
               "--startup-timeout", str(limits.startup_s)]
        env = _env_with_package(dict(os.environ))
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=limits.total_s + 60, env=env,
                                  start_new_session=True)
        except subprocess.TimeoutExpired:
            return None, "the grader timed out on this submission"
        if proc.returncode == 70:
            return None, "tampered"
        if proc.returncode != 0 or not out.exists():
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            return None, f"the grader process failed (exit code {proc.returncode}): {tail[0][:300]}"
        try:
            return json.loads(out.read_text()), ""
        except Exception as exc:  # noqa: BLE001
            return None, f"the grader wrote an unreadable result ({type(exc).__name__})"


def grade_folder(submissions: str | Path, out_dir: str | Path, sources: str | Path | None = None,
                 jobs: int = 2, limits: Limits | None = None, sheet: str | None = None) -> list[dict]:
    """Grade every ``*.ipynb`` under ``submissions``.

    Writes ``out_dir/<student>/results.json`` for every submission (student = the file's stem,
    or its folder when submissions are in one folder per student) and ``out_dir/summary.csv``.
    Returns the summary rows.
    """
    from .sheets import default_sources

    submissions, out_dir = Path(submissions), Path(out_dir)
    sources = Path(sources) if sources is not None else default_sources()
    limits = limits or Limits()
    sheets = read_sheets(sources)
    snapshot = _snapshot(sources)
    digest = code_digest(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    tamper_log: list[str] = []

    def student_of(path: Path) -> str:
        rel = path.relative_to(submissions)
        return rel.parts[0] if len(rel.parts) > 1 else path.stem

    def grade(path: Path) -> dict:
        student = student_of(path)
        chosen = sheets.get(sheet) if sheet else match_sheet(path, sheets)
        start = time.monotonic()
        if chosen is None:
            results = _failure(None, f"no sheet matches {path.name}")
        else:
            results, problem = None, ""
            for _ in range(3):
                results, problem = _grade_in_subprocess(path, chosen, sources, limits, digest)
                if problem != "tampered":
                    break
                changed = _restore(snapshot, sources)  # someone edited the grader: undo, regrade
                tamper_log.append(f"grading files changed before {student}'s grading: "
                                  f"{', '.join(changed) or 'restored by another thread'}")
            if results is None:
                results = _failure(chosen, f"Not graded: {problem}")
        results.setdefault("execution_time", round(time.monotonic() - start, 2))
        return {"student": student, "file": str(path.relative_to(submissions)), "results": results}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        graded = list(pool.map(grade, files))
    changed = _restore(snapshot, sources)
    if changed:
        tamper_log.append(f"grading files changed during the run and were restored: {', '.join(changed)}")
    # Written only now, when no submission runs any more: a results file that a submission
    # wrote for itself or for someone else is replaced.
    for g in graded:
        target = out_dir / g["student"]
        target.mkdir(parents=True, exist_ok=True)
        (target / "results.json").write_text(json.dumps(g["results"], indent=2))

    rows = []
    qnames = sorted({t["name"].split(":")[0] for g in graded for t in g["results"]["tests"]},
                    key=lambda s: (len(s), s))
    for g in graded:
        r = g["results"]
        by_q = {t["name"].split(":")[0]: t["score"] for t in r["tests"]}
        row = {"student": g["student"], "file": g["file"], "sheet": r.get("extra", {}).get("sheet"),
               **{q: by_q.get(q, "") for q in qnames}, "score": r["score"],
               "max_score": r.get("extra", {}).get("max_score"),
               "seconds": r.get("execution_time"), "note": r.get("extra", {}).get("error", "")}
        rows.append(row)
    with open(out_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["student", "file", "sheet", *qnames, "score",
                                               "max_score", "seconds", "note"])
        writer.writeheader()
        writer.writerows(rows)
    if tamper_log:
        (out_dir / "tampering.log").write_text("\n".join(tamper_log) + "\n")
    return rows


# --- Gradescope -----------------------------------------------------------------------------

def write_gradescope_bundle(sheet_path: str | Path, out: str | Path, requirement: str) -> Path:
    """A Gradescope autograder zip for one sheet, running this grader.

    ``requirement`` is what ``pip install`` gets for the package (a git URL or a version).
    The zip holds the sheet's source (solutions and hidden checks: keep it private).
    """
    import zipfile

    sheet = read_sheet(sheet_path)
    out = Path(out)
    setup = ("#!/usr/bin/env bash\nset -euo pipefail\napt-get update -qq && apt-get install -y -qq python3-pip\n"
             "python3 -m pip install -q --index-url https://download.pytorch.org/whl/cpu torch\n"
             f"python3 -m pip install -q '{requirement}'\n")
    run = ("#!/usr/bin/env bash\nset -uo pipefail\ncd /autograder/source\n"
           "sub=$(ls /autograder/submission/*.ipynb | head -n 1)\n"
           f"python3 -m qkvcourse.grading grade-one \"$sub\" --sheet {sheet.path.name} "
           "--out /autograder/results/results.json\n")
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("setup.sh", setup)
        z.writestr("run_autograder", run)
        z.write(sheet.path, sheet.path.name)
    return out
