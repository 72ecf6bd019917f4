"""The graded questions, as the grader sees them: references, case generators, mistakes, rules.

A :class:`Question` names the object the student defines, a reference implementation, a
generator of deterministic :class:`~qkvcourse.grading.core.Case` inputs (public ones, and
hidden ones drawn from the instructor's private seed), :class:`Mistake` implementations
(plausible wrong answers) and the implementations the answer may not call (``forbidden``).

This module and everything under ``qkvcourse.grading.instructor`` is left out of the package
that students install (see ``pyproject.toml``); only the grader and ``make student`` use it.
"""
from __future__ import annotations

import importlib
import os
import random
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..core import (Case, Outcome, QuestionResult, Remote, _error_text, call_object, judge_case)
from ..judges import JUDGES

__all__ = ["Mistake", "Question", "register", "get_question", "questions", "make_cases",
           "run_question", "check_in_process", "display_name", "PUBLIC_SEED", "read_seed", "new_seed_file", "DEFAULT_SEED_FILE"]

_REGISTRY: dict[str, "Question"] = {}
PUBLIC_SEED = 0
DEFAULT_SEED_FILE = Path.home() / ".config" / "qkvcourse" / "grading-seed"


@dataclass
class Mistake:
    """A known wrong answer: same signature as the reference, and what it means."""

    label: str
    explanation: str
    impl: Callable


@dataclass
class Question:
    """A graded question. ``qid`` is ``"chNN.short_name"``; ``name`` is what students define.

    ``cases(rng, hidden)`` returns the cases; ``rng`` is a seeded ``random.Random`` and torch is
    seeded with the same seed before the call, so cases are deterministic. Public cases
    (``hidden=False``) are what a student's ``grader.check`` runs; the autograder runs the
    public cases and then ``hidden=True`` cases built from the private seed.

    ``judge`` names a function of :mod:`qkvcourse.grading.judges` that replaces the comparison
    with the reference, for questions whose answer is random.

    ``forbidden`` lists what the answer may not call, as dotted names: functions and classes of
    ``qkvcourse`` (``"qkvcourse.masking.masked_softmax"``) and of ``torch``
    (``"torch.nn.functional.scaled_dot_product_attention"``), or ``"aten::<substring>"`` for
    any PyTorch operator whose name contains the substring. The grader enforces it at run time
    and ``make student`` states it in the sheet.
    """

    qid: str
    name: str
    kind: str  # "function" or "module"
    title: str
    reference: Callable
    cases: Callable[[random.Random, bool], list[Case]]
    mistakes: list[Mistake] = field(default_factory=list)
    judge: str | None = None
    atol: float = 1e-5
    rtol: float = 1e-4
    forbidden: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in ("function", "module"):
            raise ValueError(f"kind must be 'function' or 'module', got {self.kind!r}")
        if self.judge is not None and self.judge not in JUDGES:
            raise ValueError(f"judge {self.judge!r} is not in qkvcourse.grading.judges.JUDGES")

    def mistake_outputs(self, case: Case) -> list[tuple[str, str, Any]]:
        out = []
        for mistake in self.mistakes:
            try:
                wrong = call_object(mistake.impl, self.kind, case)
            except Exception:  # noqa: BLE001  (a mistake that cannot run on this case)
                wrong = None
            out.append((mistake.label, mistake.explanation, wrong))
        return out


def display_name(name: str) -> str:
    """How a rule's entry is written for students."""
    if name.startswith("aten::"):
        return f"PyTorch's `{name[6:]}` operator (by any route)"
    return f"`{name}`"


def register(question: Question) -> Question:
    if question.qid in _REGISTRY:
        raise ValueError(f"question {question.qid!r} is registered twice")
    _REGISTRY[question.qid] = question
    return question


def _load_all() -> None:
    importlib.import_module(f"{__package__}.questions")  # registers every chapter's questions


def get_question(qid: str) -> Question:
    _load_all()
    try:
        return _REGISTRY[qid]
    except KeyError:
        raise KeyError(f"no graded question {qid!r}; known: {sorted(_REGISTRY)}") from None


def questions() -> dict[str, Question]:
    _load_all()
    return dict(_REGISTRY)


# --- the private seed ------------------------------------------------------------------------

def new_seed_file(path: str | Path) -> int:
    """Write a random seed to ``path``, readable by its owner only; returns the seed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = secrets.randbelow(2**31 - 1) + 1
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{seed}\n")
    return seed


def read_seed(path: str | Path) -> int:
    """The hidden cases' seed, from a file that only its owner may read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"no seed file at {path}; create one with "
                                f"`python -m qkvcourse.grading seed {path}`") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"the seed file {path} is readable by others (mode "
                              f"{stat.S_IMODE(mode):o}); run `chmod 600 {path}`")
    text = path.read_text().strip()
    if not text.isdigit():
        raise ValueError(f"the seed file {path} must hold one non-negative integer, got {text[:20]!r}")
    return int(text)


def make_cases(question: Question, hidden_seed: int | None = None) -> list[tuple[Case, bool]]:
    """Public cases, followed by the hidden ones when a seed is given: ``(case, is_hidden)``."""
    cases = []
    for is_hidden, seed in ((False, PUBLIC_SEED), (True, hidden_seed)):
        if seed is None:
            break
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            cases.extend((c, is_hidden) for c in question.cases(random.Random(seed), is_hidden))
    return cases


def run_question(qid: str, call: Callable[[Case, Any], Any],
                 hidden_seed: int | None = None) -> QuestionResult:
    """Run every case of a question; ``call(case, expected)`` returns the student's output
    (``expected`` is the reference's output, None for judged questions, to size the reply).

    ``call`` may raise :class:`Remote` when the student's process is gone, which fails the
    remaining cases with that message.
    """
    question = get_question(qid)
    judge = JUDGES[question.judge] if question.judge else None
    outcomes = []
    gone: str | None = None
    counts = {False: 0, True: 0}
    for case, hidden in make_cases(question, hidden_seed):
        counts[hidden] += 1
        label = f"hidden case {counts[True]}" if hidden else case.label
        if gone is not None:
            outcomes.append(Outcome(label, False, gone))
            continue
        expected = None if judge is not None or case.raises is not None else \
            call_object(question.reference, question.kind, case)
        try:
            received, error = call(case, expected), None
        except Remote as exc:
            gone = str(exc)
            outcomes.append(Outcome(label, False, gone))
            continue
        except Exception as exc:  # the student's code raised
            received, error = None, _error_text(exc)
        outcomes.append(judge_case(case, counts[hidden], hidden, received, error, expected,
                                   lambda case=case: question.mistake_outputs(case), judge,
                                   question.atol, question.rtol))
    return QuestionResult(qid, question.title, outcomes, hidden=counts[True])


def check_in_process(qid: str, obj: Any, hidden_seed: int | None = None) -> QuestionResult:
    """Run a question's cases on an object of this process (the course's own tests)."""
    question = get_question(qid)
    with torch.random.fork_rng(devices=[]):
        return run_question(qid, lambda case, expected: call_object(obj, question.kind, case),
                            hidden_seed)
