"""``grader.check`` for students: instant feedback inside a sheet, on Colab or locally.

The student edition of a sheet starts with ``grader = qkvcourse.grading.Notebook("<sheet>")``
and has a ``grader.check("q1")`` cell after each answer. The check runs the question's public
cases on the object the student defined (found in the notebook's globals) and prints either a
confirmation or the first failing case with the likely mistake. Hidden cases are run only by
the autograder.

(otter-grader's own ``otter.Notebook`` reads its tests from the notebook file on disk, which
Colab does not provide; this class reads the question list and the public cases from the
installed package. Each question's rule, what the answer may not call, is stated in the sheet
and enforced by the autograder.)
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

from .core import check, public_questions

__all__ = ["Notebook", "manifest"]

MANIFEST = Path(__file__).with_name("sheets.json")


def manifest() -> dict:
    """``{sheet: {"q1": {"qid", "name", "points"}, ...}}``, written by the student-edition generator."""
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


class Notebook:
    def __init__(self, sheet: str):
        sheets = manifest()
        if sheet not in sheets:
            raise ValueError(f"unknown sheet {sheet!r}; this version of qkvcourse has {sorted(sheets)}")
        self.sheet, self.questions = sheet, sheets[sheet]

    def check(self, question: str, global_env: dict | None = None):
        """Check one question (``"q1"``); prints the feedback and returns the result or None."""
        if os.environ.get("QKVCOURSE_GRADING_WORKER"):
            return None  # inside the autograder: it runs the checks itself, from outside
        if question not in self.questions:
            raise ValueError(f"{self.sheet} has questions {sorted(self.questions)}, not {question!r}")
        info = self.questions[question]
        if global_env is None:
            global_env = inspect.currentframe().f_back.f_globals
        obj = global_env.get(info["name"])
        title = public_questions()[info["qid"]]["title"]
        if obj is None:
            print(f"{question} ({title}): `{info['name']}` is not defined yet; run its cell first.")
            return None
        try:
            result = check(info["qid"], obj)
        except AssertionError as exc:
            print(f"{question} — not yet.\n{exc}")
            return None
        return result

    def check_all(self, global_env: dict | None = None):
        env = global_env if global_env is not None else inspect.currentframe().f_back.f_globals
        return {q: self.check(q, env) for q in self.questions}
