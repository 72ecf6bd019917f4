"""The autograder: grade one submission, or a folder of them in parallel.

Layers, from the inside out:

1. The submission's code runs in a *worker* (:mod:`qkvcourse.grading.worker`) inside a sandbox
   (:mod:`.sandbox`: bubblewrap, or another user id). It only computes: the grader sends it
   inputs and receives outputs, loaded with ``torch.load(weights_only=True)``, size-checked
   against the expected output. The comparison, the diagnosis and the score are computed in the
   grader's process, from references and hidden cases the worker never sees.
2. Each submission is graded by its own grader process (``grade-one``), an isolated Python
   (``-I -S``: no PYTHONPATH, user site or sitecustomize) with a memory limit of its own. If it
   dies or hangs, the batch still writes a results file for that submission.
3. The batch runner fingerprints the whole ``qkvcourse`` package and the sheet sources before
   and after every submission; a grader refuses to start on changed files, and the runner
   restores them, logs it and grades again. Only the runner writes results.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import queue
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..core import Case, Outcome, Remote, StudentError
from ..sheets import Sheet, read_sheet
from ..worker import BORROW_EXIT, TAMPER_EXIT, MessageTooLarge, read_message, write_message
from .registry import display_name, get_question, run_question
from .sandbox import PACKAGE, Sandbox, isolated_python, python_paths

__all__ = ["Limits", "grade_submission", "grade_folder", "code_digest", "student_key",
           "results_folder"]

REPO = PACKAGE.parent


@dataclasses.dataclass
class Limits:
    """Per-submission limits: wall-clock seconds for the whole submission, for its notebook to
    run, and for one call; memory of the worker and of the grader in MiB (address space)."""

    total_s: float = 180.0
    startup_s: float = 60.0
    call_s: float = 10.0
    memory_mb: int = 4096
    grader_memory_mb: int = 6144


class Borrowed(Exception):
    """The answer ran an implementation its question forbids."""


# --- size checks on replies ----------------------------------------------------------------------

def _numel(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (list, tuple)):
        return sum(_numel(v) for v in value)
    if isinstance(value, dict):
        return sum(_numel(v) for v in value.values())
    return 1


def _reply_budget(case: Case, expected) -> int:
    """How many values a reply may hold: the expected output's (or, for questions judged
    without a reference, the inputs') times four, and at least 4096."""
    basis = _numel(expected) if expected is not None else _numel(case.args) + _numel(case.kwargs)
    return max(4096, 4 * basis)


def _check_size(value, budget: int, where: str = "your output") -> None:
    if isinstance(value, torch.Tensor):
        if value.numel() > budget:
            raise StudentError(f"ValueError: {where} has {value.numel()} values, far more than the "
                               f"answer needs ({budget} at most)")
    elif isinstance(value, (list, tuple)):
        if len(value) > budget:
            raise StudentError(f"ValueError: {where} has {len(value)} items, far more than the "
                               f"answer needs")
        for v in value:
            _check_size(v, budget, where)
    elif isinstance(value, dict):
        for v in value.values():
            _check_size(v, budget, where)
    elif isinstance(value, str) and len(value) > budget:
        raise StudentError(f"ValueError: {where} is a string of {len(value)} characters")


# --- the worker, seen from the grader --------------------------------------------------------

class Worker:
    """A running worker process for one submission, in its sandbox."""

    def __init__(self, notebook: Path, plan: dict, sandbox: Sandbox, slot: int, limits: Limits,
                 deadline: float):
        self.limits, self.deadline, self.plan = limits, deadline, plan
        self.work = sandbox.new_workdir()
        shutil.copy(notebook, self.work / "submission.ipynb")
        (self.work / "plan.json").write_text(json.dumps(plan))
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        argv, env = sandbox.command(self.work, [
            "submission.ipynb", "plan.json", str(to_worker_r), str(from_worker_w),
            str(limits.memory_mb)], slot)
        self.proc = subprocess.Popen(
            argv, cwd=self.work, env=env, pass_fds=(to_worker_r, from_worker_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.errors: list[str] = []
        hello = self._receive(min(limits.startup_s, self.deadline - time.monotonic()),
                              "running your notebook", 2**20)
        if not isinstance(hello, dict) or not hello.get("ready"):
            error = hello.get("error") if isinstance(hello, dict) else None
            raise Remote(str(error or "the notebook could not be run")[:500])
        self.errors = [str(e)[:400] for e in list(hello.get("errors", []))[:20]]
        self.notes = [str(n)[:200] for n in list(hello.get("notes", []))[:5]]

    def _receive(self, timeout: float, doing: str, max_bytes: int):
        if timeout <= 0 or not select.select([self._from_worker], [], [], timeout)[0]:
            self.kill()
            raise Remote(f"time limit reached while {doing} (over {self.limits.call_s:g} s for a "
                         f"call, {self.limits.startup_s:g} s to run the notebook or "
                         f"{self.limits.total_s:g} s in all); is there an infinite loop?")
        try:
            return read_message(self._from_worker, max_bytes)
        except MessageTooLarge as exc:
            self.kill()
            raise StudentError(f"ValueError: your output is too large ({exc})") from None
        except Exception as exc:  # EOF, a truncated or forged message
            try:  # give an exiting process a moment, to report how it ended
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            self.kill()
            if code is None:
                code = self.proc.returncode
            self._raise_for_exit(code)
            raise Remote(f"your notebook's process stopped while {doing}{self._how(code)}"
                         + ("" if isinstance(exc, EOFError) else f" ({type(exc).__name__})")) from None

    def _raise_for_exit(self, code):
        entries = self.plan["entries"]
        if code is not None and BORROW_EXIT <= code < BORROW_EXIT + len(entries):
            raise Borrowed(entries[code - BORROW_EXIT])
        if code == TAMPER_EXIT:
            raise Borrowed(None)

    @staticmethod
    def _how(code) -> str:
        if code is None:
            return ""
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory?)" if -code in (signal.SIGKILL, signal.SIGSEGV) else ""
            return f": killed by {name}{hint}"
        return f": it exited with code {code} (os._exit or sys.exit at top level?)"

    def call(self, question: int, case: Case, expected):
        try:
            write_message(self._to_worker, {"question": question, "case": dataclasses.asdict(case)})
        except OSError:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            self.kill()
            self._raise_for_exit(code if code is not None else self.proc.returncode)
            raise Remote(f"your notebook's process is gone{self._how(self.proc.returncode)}") from None
        budget = _reply_budget(case, expected)
        timeout = min(self.limits.call_s, self.deadline - time.monotonic())
        reply = self._receive(timeout, "calling your code", 64 * budget + 2**16)
        if not isinstance(reply, dict) or "ok" not in reply:
            raise Remote("the reply from your notebook's process was not understood")
        if reply["ok"]:
            value = reply.get("value")
            _check_size(value, budget)
            return value
        raise StudentError(str(reply.get("error", "an error")))

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()

    def close(self):
        for fd in (self._to_worker, self._from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        self.kill()
        shutil.rmtree(self.work, ignore_errors=True)


class _Session:
    """One submission's worker: started when first needed, started again after a crash or a
    timeout (the rest of that question's cases fail), never again if the notebook itself
    cannot run."""

    def __init__(self, notebook: Path, plan: dict, sandbox: Sandbox, slot: int, limits: Limits,
                 deadline: float):
        self.args = (notebook, plan, sandbox, slot, limits, deadline)
        self.worker: Worker | None = None
        self.startup_error: str | None = None
        self.notes: list[str] = []  # errors of the notebook's own cells

    def call(self, question: int, case: Case, expected):
        if self.startup_error is not None:
            raise Remote(self.startup_error)
        if self.worker is None:
            try:
                self.worker = Worker(*self.args)
            except Remote as exc:
                self.startup_error = str(exc)
                raise
            except Borrowed:
                self.startup_error = "your notebook interfered with the grader's checks"
                raise Remote(self.startup_error) from None
            self.notes.extend(e for e in self.worker.errors if e not in self.notes)
        try:
            return self.worker.call(question, case, expected)
        except (Remote, Borrowed):
            self.close()
            raise

    def close(self):
        if self.worker is not None:
            self.worker.close()
            self.worker = None


# --- grading one submission --------------------------------------------------------------------

def _tests_for(sheet_q, result) -> list[dict]:
    """Two Gradescope tests per question: the public cases (visible) and the hidden ones
    (shown after the grades are published, without their inputs)."""
    outcomes = result.outcomes
    split = len(outcomes) - result.hidden
    public, hidden = outcomes[:split], outcomes[split:]
    total = len(outcomes)
    tests = []
    for part, visibility, items in (("public cases", "visible", public),
                                    ("hidden cases", "after_published", hidden)):
        if not items:
            continue
        passed = sum(o.passed for o in items)
        max_score = round(sheet_q.points * len(items) / total, 4)
        score = round(sheet_q.points * passed / total, 4)
        first = next((o for o in items if not o.passed), None)
        if first is None:
            output = f"All {len(items)} {part} passed."
        else:
            output = (f"{passed} of {len(items)} {part} passed.\nFirst failing case: {first.label}\n"
                      f"{first.message}")
        tests.append({"name": f"{sheet_q.otter_name}: {result.title} ({part})", "score": score,
                      "max_score": max_score, "output": output, "visibility": visibility,
                      "extra_data": {"qid": result.qid, "part": part, "passed": passed,
                                     "total": len(items),
                                     "mistakes": sorted({o.mistake for o in items if o.mistake})}})
    return tests


def plan_for(sheet: Sheet) -> dict:
    questions = []
    for q in sheet.questions:
        question = get_question(q.qid)
        questions.append({"name": q.name, "kind": question.kind, "forbidden": list(question.forbidden)})
    entries = sorted({n for q in questions for n in q["forbidden"]})
    return {"questions": questions, "entries": entries}


def grade_submission(notebook: str | Path, sheet: Sheet, seed: int, sandbox: Sandbox,
                     limits: Limits | None = None, slot: int = 0) -> dict:
    """Grade one notebook against a sheet; returns a Gradescope ``results.json`` dict."""
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a busy machine
    limits = limits or Limits()
    start = time.monotonic()
    plan = {**plan_for(sheet), "own_processes": sandbox.own_processes}
    session = _Session(Path(notebook), plan, sandbox, slot, limits, start + limits.total_s)
    tests = []
    try:
        for index, sheet_q in enumerate(sheet.questions):
            borrowed: list[str] = []

            def call(case, expected, index=index, borrowed=borrowed):
                try:
                    return session.call(index, case, expected)
                except Borrowed as exc:
                    name = exc.args[0]
                    borrowed.append(
                        f"Score 0: your answer called {display_name(name)}, which this question "
                        "does not allow (see the rule above the answer cell)." if name else
                        "Score 0: your code interfered with the grader's checks (it changed the "
                        "profiler, the course's code objects or used ctypes while being graded).")
                    raise Remote(borrowed[0]) from None

            result = run_question(sheet_q.qid, call, seed)
            if borrowed:  # a broken rule costs every case of the question
                result.outcomes = [Outcome(o.label, False, borrowed[0]) for o in result.outcomes]
            tests.extend(_tests_for(sheet_q, result))
    finally:
        session.close()
    score = round(sum(t["score"] for t in tests), 4)
    output = f"Score {score:g} / {sheet.max_score:g} on {sheet.slug}."
    if session.notes:
        output += ("\nWhile running your notebook (messages from your own code, trimmed): "
                   + "; ".join(session.notes[:5]))
    return {"score": score, "execution_time": round(time.monotonic() - start, 2), "output": output,
            "tests": tests, "extra_data": {"sheet": sheet.slug, "max_score": sheet.max_score,
                                           "sandbox": sandbox.mode, "notes": sandbox.notes}}


# --- tamper evidence ----------------------------------------------------------------------------

def _grading_files(sources: Path, package: Path = PACKAGE) -> list[Path]:
    files = sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    files += sorted(Path(sources).glob("*.ipynb"))
    return files


def code_digest(sources: Path, package: Path = PACKAGE) -> str:
    """sha256 over every file of the ``qkvcourse`` package and the sheet sources."""
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
            changed.append(str(path.relative_to(PACKAGE.parent)) if PACKAGE.parent in path.parents
                           else path.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.chmod(0o644)
            path.write_bytes(data)
    for path in set(_grading_files(sources)) - set(snapshot):  # files dropped into the package
        changed.append(path.name)
        path.unlink()
    return changed


# --- batch -----------------------------------------------------------------------------------------

def _failure(sheet: Sheet | None, reason: str) -> dict:
    tests = [] if sheet is None else [
        {"name": f"{q.otter_name}: {get_question(q.qid).title}", "score": 0.0, "max_score": q.points,
         "output": reason, "visibility": "visible"} for q in sheet.questions]
    return {"score": 0.0, "output": reason, "tests": tests,
            "extra_data": {"sheet": sheet.slug if sheet else None,
                           "max_score": sheet.max_score if sheet else 0.0, "error": reason}}


GRADER_BOOT = ("import sys; sys.path[:0] = {paths!r}; "
               "from qkvcourse.grading.instructor.cli import main; sys.exit(main(sys.argv[1:]))")


def grader_command(args: list[str]) -> list[str]:
    """An isolated Python running this package's command line."""
    return isolated_python(GRADER_BOOT.format(paths=python_paths([str(REPO)])), args)


def _grade_in_subprocess(notebook: Path, sheet: Sheet, limits: Limits, digest: str, seed_file: Path,
                         sandbox_args: list[str], slot: int, sources: Path) -> tuple[dict | None, str]:
    """Run ``grade-one`` in its own process; return (results, problem)."""
    with tempfile.TemporaryDirectory(prefix="qkv-grader-") as tmp:
        out = Path(tmp) / "results.json"
        cmd = grader_command(
            ["grade-one", str(notebook), "--sheet", str(sheet.path), "--out", str(out),
             "--expect-digest", digest, "--sources", str(sources), "--seed-file", str(seed_file),
             "--slot", str(slot), "--timeout", str(limits.total_s),
             "--call-timeout", str(limits.call_s), "--memory-mb", str(limits.memory_mb),
             "--grader-memory-mb", str(limits.grader_memory_mb),
             "--startup-timeout", str(limits.startup_s), *sandbox_args])
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=limits.total_s + 60,
                                  start_new_session=True, env={"PATH": os.environ.get("PATH", ""),
                                                               "HOME": os.environ.get("HOME", "/")})
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


def student_key(rel: Path) -> str:
    """The student a submission belongs to: its folder, or the file's stem at the top level."""
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem if rel.suffix == ".ipynb" else rel.name


def _safe(name: str) -> str:
    """A folder name no student name can collide with: percent-encode all but [A-Za-z0-9_-]."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "_-") else
                   "".join(f"%{b:02X}" for b in c.encode()) for c in name) or "%"


def results_folder(out_dir: Path, student: str) -> Path:
    return Path(out_dir) / "students" / _safe(student)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def grade_folder(submissions: str | Path, out_dir: str | Path, sheet: str, seed_file: str | Path,
                 sources: str | Path | None = None, jobs: int = 2, limits: Limits | None = None,
                 sandbox: str = "auto", allow_same_user: bool = False) -> list[dict]:
    """Grade every file under ``submissions`` against the sheet the instructor names.

    Every file gets a row of ``out_dir/summary.csv``; each student's results are written to
    ``out_dir/students/<student>/results.json``. Returns the summary rows.
    """
    from ..sheets import default_sources
    from .registry import read_seed
    from .sandbox import make_sandbox

    submissions, out_dir = Path(submissions), Path(out_dir)
    sources = Path(sources) if sources is not None else default_sources()
    limits = limits or Limits()
    chosen = read_sheet(Path(sheet) if Path(sheet).suffix == ".ipynb" else sources / f"{sheet}.ipynb")
    read_seed(seed_file)  # fails early on a missing or exposed seed file
    make_sandbox(sandbox, allow_same_user, [submissions, out_dir, Path(seed_file)]).close()
    sandbox_args = ["--sandbox", sandbox] + (["--allow-same-user"] if allow_same_user else [])
    snapshot = _snapshot(sources)
    digest = code_digest(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in submissions.rglob("*")
                   if p.is_file() and ".ipynb_checkpoints" not in p.parts)
    rels = [p.relative_to(submissions) for p in files]
    notebooks: dict[str, list[Path]] = {}
    for rel in rels:
        if rel.suffix == ".ipynb":
            notebooks.setdefault(student_key(rel), []).append(rel)
    tamper_log: list[str] = []
    lock = threading.Lock()
    slots: queue.Queue[int] = queue.Queue()
    for s in range(max(1, jobs)):
        slots.put(s)

    def grade(rel: Path) -> dict:
        student = student_key(rel)
        start = time.monotonic()
        note = ""
        if rel.suffix != ".ipynb":
            results = _failure(None, f"{rel} is not a notebook (.ipynb)")
            note = "not a notebook"
        elif len(notebooks[student]) > 1:
            others = ", ".join(str(r) for r in notebooks[student])
            note = f"refused: {student} has {len(notebooks[student])} notebooks ({others}); keep one"
            results = _failure(chosen, note)
        else:
            slot = slots.get()
            try:
                results, problem = None, ""
                for _ in range(3):
                    results, problem = _grade_in_subprocess(
                        submissions / rel, chosen, limits, digest, Path(seed_file), sandbox_args,
                        slot, sources)
                    during = code_digest(sources) != digest  # changed while this one ran
                    if problem != "tampered" and not during:
                        break
                    with lock:  # restore, log, grade again
                        changed = _restore(snapshot, sources)
                        when = "changed while grading" if during else "had changed before"
                        tamper_log.append(f"grading files {when} {rel}: "
                                          f"{', '.join(changed) or 'restored by another job'}")
                    problem = "tampered"
            finally:
                slots.put(slot)
            if results is None:
                results = _failure(chosen, f"Not graded: {problem}")
            note = results.get("extra_data", {}).get("error", "")
        results.setdefault("execution_time", round(time.monotonic() - start, 2))
        if rel.suffix == ".ipynb":
            target = results_folder(out_dir, student) / "results.json"
            if len(notebooks[student]) > 1:
                target = results_folder(out_dir, student) / "refused.json"
            _write_atomic(target, json.dumps(results, indent=2))
        return {"student": student, "file": str(rel), "results": results, "note": note}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        graded = list(pool.map(grade, rels))
    changed = _restore(snapshot, sources)
    if changed:
        tamper_log.append(f"grading files changed during the run and were restored: {', '.join(changed)}")

    rows = []
    qnames = [q.otter_name for q in chosen.questions]
    for g in graded:
        r = g["results"]
        by_q: dict[str, float] = {}
        for t in r["tests"]:
            q = t["name"].split(":")[0]
            by_q[q] = round(by_q.get(q, 0.0) + t["score"], 4)
        rows.append({"student": g["student"], "file": g["file"], "sheet": chosen.slug,
                     **{q: by_q.get(q, "") for q in qnames}, "score": r["score"],
                     "max_score": chosen.max_score, "seconds": r.get("execution_time"),
                     "note": g["note"]})
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".tmp-")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["student", "file", "sheet", *qnames, "score",
                                               "max_score", "seconds", "note"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out_dir / "summary.csv")
    if tamper_log:
        _write_atomic(out_dir / "tampering.log", "\n".join(tamper_log) + "\n")
    return rows
