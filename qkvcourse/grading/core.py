"""Questions, cases and feedback: the part of grading that students see.

A graded question is a :class:`Question`: the name of the object the student defines (a
function or an ``nn.Module`` class), a reference implementation, a list of deterministic
:class:`Case` inputs, and a list of :class:`Mistake` implementations, each a plausible wrong
answer (softmax over the wrong axis, missing 1/sqrt(d), ...). Checking a student's object runs
every case, compares the result with the reference and, on the first failure, shows the small
input, the expected and the received values, and names the mistake whose output the student's
matches. The reference's code is never shown.

The same questions are used in two ways:

- ``check(qid, obj)`` runs in the student's notebook (``grader.check`` calls it) and raises
  ``AssertionError`` with the feedback;
- the autograder (:mod:`qkvcourse.grading.autograde`) runs the student's code in a separate,
  limited process and asks it only for outputs; the comparison happens in the grader's own
  process, so a submission that patches this module gains nothing.

Every case is a plain description (tensors, numbers, strings, lists and dicts), so it can be
sent to another process; :func:`call_object` is the one function that turns a case into a call.
"""
from __future__ import annotations

import math
import os
import random
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

__all__ = ["Case", "Mistake", "Question", "Outcome", "QuestionResult", "register", "get_question",
           "questions", "check", "run_question", "call_object", "describe", "grading_seed"]

_REGISTRY: dict[str, "Question"] = {}
PUBLIC_SEED = 0
DEFAULT_HIDDEN_SEED = 20261121


def grading_seed() -> int:
    """The seed of the hidden cases: ``QKVCOURSE_GRADING_SEED`` if set (keep it private)."""
    value = os.environ.get("QKVCOURSE_GRADING_SEED")
    return int(value) if value else DEFAULT_HIDDEN_SEED


@dataclass
class Case:
    """One input for a question.

    For a function question, the student's function is called as ``fn(*args, **kwargs)``.
    For a module question, the student's class is built as ``cls(**init)``, given the
    reference's parameters with ``load_state_dict(state)`` (so the parameter names asked for
    in the exercise matter), put in eval mode and called as ``module(*args, **kwargs)``.
    ``seed`` seeds torch before the call, for questions whose answer is random.
    """

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    init: dict | None = None
    state: dict | None = None
    seed: int = 0
    arg_names: Sequence[str] = ()  # names shown in feedback, one per positional argument
    raises: str | None = None  # e.g. "ValueError": the call must raise this exception


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
    public cases and then ``hidden=True`` cases built from a private seed.

    ``judge(case, received)`` may replace the comparison with the reference, for questions
    whose answer is random: it returns None when the output is acceptable, a message, or
    ``(message, (mistake label, explanation))`` when it recognises a known mistake.
    """

    qid: str
    name: str
    kind: str  # "function" or "module"
    title: str
    reference: Callable
    cases: Callable[[random.Random, bool], list[Case]]
    mistakes: list[Mistake] = field(default_factory=list)
    judge: Callable[[Case, Any], str | None] | None = None
    atol: float = 1e-5
    rtol: float = 1e-4

    def __post_init__(self):
        if self.kind not in ("function", "module"):
            raise ValueError(f"kind must be 'function' or 'module', got {self.kind!r}")


def register(question: Question) -> Question:
    if question.qid in _REGISTRY:
        raise ValueError(f"question {question.qid!r} is registered twice")
    _REGISTRY[question.qid] = question
    return question


def _load_all() -> None:
    import importlib

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


def make_cases(question: Question, hidden: bool) -> list[Case]:
    """Public cases, followed by the hidden ones when ``hidden``."""
    cases = []
    for is_hidden, seed in ((False, PUBLIC_SEED), (True, grading_seed())):
        if is_hidden and not hidden:
            break
        torch.manual_seed(seed)
        cases.extend(question.cases(random.Random(seed), is_hidden))
    return cases


# --- calling -----------------------------------------------------------------------------

def call_object(obj: Any, kind: str, case: Case) -> Any:
    """Call a student's (or a reference's) function or module on a case."""
    torch.manual_seed(case.seed)
    args = _clone(case.args)
    kwargs = _clone(case.kwargs)
    if kind == "function":
        if not callable(obj):
            raise TypeError(f"expected a function, got {type(obj).__name__}")
        with torch.no_grad():
            return obj(*args, **kwargs)
    if not isinstance(obj, type):
        raise TypeError(f"expected a class (an nn.Module subclass), got {type(obj).__name__}")
    module = obj(**(case.init or {}))
    if case.state is not None:
        _load_state(module, case.state)
    module.eval()
    torch.manual_seed(case.seed)
    with torch.no_grad():
        return module(*args, **kwargs)


def _load_state(module, state: dict) -> None:
    if not hasattr(module, "state_dict"):
        raise TypeError(f"{type(module).__name__} is not an nn.Module")
    mine = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    wanted = {k: tuple(v.shape) for k, v in state.items()}
    if mine != wanted:
        missing = sorted(set(wanted) - set(mine))
        extra = sorted(set(mine) - set(wanted))
        shapes = sorted(k for k in set(mine) & set(wanted) if mine[k] != wanted[k])
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f"{k} {wanted[k]}" for k in missing))
        if extra:
            parts.append("unexpected " + ", ".join(f"{k} {mine[k]}" for k in extra))
        if shapes:
            parts.append("wrong shape " + ", ".join(f"{k}: {mine[k]} instead of {wanted[k]}"
                                                    for k in shapes))
        raise ValueError("the module's parameters are not the ones the exercise names: "
                         + "; ".join(parts))
    module.load_state_dict(state)


def _clone(value):
    if isinstance(value, Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


# --- comparing ---------------------------------------------------------------------------

def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def compare(expected: Any, received: Any, atol: float, rtol: float, where: str = "output") -> str | None:
    """None if ``received`` matches ``expected``; otherwise what differs, in words."""
    if isinstance(expected, Tensor):
        if not isinstance(received, Tensor):
            return f"{where} should be a tensor of shape {_shape(expected)}, got {type(received).__name__}"
        if received.shape != expected.shape:
            return f"{where} has shape {tuple(received.shape)}, expected {tuple(expected.shape)}"
        if expected.dtype == torch.bool or received.dtype == torch.bool:
            if received.dtype != expected.dtype:
                return f"{where} has dtype {received.dtype}, expected {expected.dtype}"
            if not torch.equal(received, expected):
                return f"{where} differs in {(received != expected).sum().item()} entries"
            return None
        if not expected.is_floating_point():
            if received.is_floating_point() or not torch.equal(received.to(expected.dtype), expected):
                return f"{where} differs from the expected integers"
            return None
        if not received.is_floating_point():
            return f"{where} has dtype {received.dtype}, expected a floating-point tensor"
        r = received.detach().to("cpu", torch.float64)
        e = expected.detach().to("cpu", torch.float64)
        if torch.isnan(r).any() and not torch.isnan(e).any():
            return f"{where} contains NaN"
        if not torch.allclose(r, e, atol=atol, rtol=rtol, equal_nan=True):
            diff = (r - e).abs().nan_to_num(float("inf")).max().item()
            return f"{where} differs from the expected values (largest difference {diff:.3g})"
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(received, (tuple, list)) or len(received) != len(expected):
            n = len(received) if isinstance(received, (tuple, list)) else None
            got = f"{type(received).__name__} of length {n}" if n is not None else type(received).__name__
            return f"{where} should be a {type(expected).__name__} of {len(expected)} items, got {got}"
        for i, (e, r) in enumerate(zip(expected, received)):
            problem = compare(e, r, atol, rtol, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(expected, float):
        if not isinstance(received, (int, float)) or isinstance(received, bool) or \
                not math.isclose(received, expected, rel_tol=rtol, abs_tol=atol):
            return f"{where} is {received!r}, expected {expected!r}"
        return None
    if type(received) is not type(expected) and not (isinstance(expected, int) and isinstance(received, int)):
        return f"{where} should be a {type(expected).__name__}, got {type(received).__name__}"
    if received != expected:
        return f"{where} is {received!r}, expected {expected!r}"
    return None


def _fmt(values) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_fmt(v) for v in values) + "]"
    if isinstance(values, float):
        return f"{values:.3f}"
    return repr(values)


def describe(value: Any, limit: int = 600) -> str:
    """A compact printout of an input or output for feedback."""
    if isinstance(value, Tensor):
        with torch.no_grad():
            flat = value.detach().cpu()
            if flat.numel() <= 64:
                text = _fmt(flat.tolist())
            else:
                text = "<" + str(flat.numel()) + " values, first " + _fmt(flat.flatten()[:6].tolist()) + " ...>"
        text = f"tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')} {text}"
    elif isinstance(value, (tuple, list)) and any(isinstance(v, Tensor) for v in value):
        text = type(value).__name__ + " of " + "; ".join(describe(v, limit // 2) for v in value)
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- running a question ------------------------------------------------------------------

@dataclass
class Outcome:
    """The result of one case: passed, or a message (and the matched mistake, if any)."""

    label: str
    passed: bool
    message: str = ""
    mistake: str | None = None


@dataclass
class QuestionResult:
    qid: str
    outcomes: list[Outcome]

    @property
    def passed(self) -> int:
        return sum(o.passed for o in self.outcomes)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def mistakes(self) -> list[str]:
        return sorted({o.mistake for o in self.outcomes if o.mistake})

    def feedback(self) -> str:
        question = get_question(self.qid)
        if self.passed == self.total:
            return f"{question.title}: all {self.total} cases passed."
        first = next(o for o in self.outcomes if not o.passed)
        return (f"{question.title}: {self.passed} of {self.total} cases passed.\n"
                f"First failing case: {first.label}\n{first.message}")


class Remote(Exception):
    """Raised by a remote caller when the student's process failed (crash, timeout...)."""


class StudentError(Exception):
    """The student's code raised in another process; the message is its description."""


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, StudentError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    student = [f for f in frames if not f.filename.endswith(("core.py", "worker.py"))]
    where = f" (line {student[-1].lineno}: {student[-1].line})" if student and student[-1].line else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _diagnose(question: Question, case: Case, received: Any) -> Mistake | None:
    for mistake in question.mistakes:
        try:
            wrong = call_object(mistake.impl, question.kind, case)
        except Exception:
            continue
        if compare(wrong, received, question.atol, question.rtol) is None:
            return mistake
    return None


def judge_case(question: Question, case: Case, received: Any, error: str | None) -> Outcome:
    """Compare one received output (or error) with the reference, in the grader's process."""
    names = list(case.arg_names) or [f"arg{i}" for i in range(len(case.args))]
    inputs = "\n".join(f"  {n} = {describe(v)}" for n, v in zip(names, case.args))
    inputs += "".join(f"\n  {k} = {describe(v)}" for k, v in case.kwargs.items())
    if case.init:
        inputs = f"  built with {case.init}\n" + inputs
    if case.raises is not None:
        if error is not None and error.split(":")[0] == case.raises:
            return Outcome(case.label, True)
        got = f"it raised {error}" if error is not None else f"it returned {describe(received)}"
        return Outcome(case.label, False, f"Input:\n{inputs}\nProblem: this input must raise "
                                          f"{case.raises}, but {got}")
    if error is not None:
        return Outcome(case.label, False, f"Input:\n{inputs}\nYour code raised {error}")
    if question.judge is not None:
        problem = question.judge(case, received)
        if problem is None:
            return Outcome(case.label, True)
        label = None
        if isinstance(problem, tuple):  # (message, (mistake label, explanation))
            problem, (label, explanation) = problem
            problem = f"{problem}\nLikely mistake: {label}. {explanation}"
        return Outcome(case.label, False, f"Input:\n{inputs}\nProblem: {problem}", label)
    expected = call_object(question.reference, question.kind, case)
    problem = compare(expected, received, question.atol, question.rtol)
    if problem is None:
        return Outcome(case.label, True)
    message = (f"Input:\n{inputs}\nProblem: {problem}\n"
               f"  expected: {describe(expected)}\n  received: {describe(received)}")
    mistake = _diagnose(question, case, received)
    if mistake is not None:
        message += f"\nLikely mistake: {mistake.label}. {mistake.explanation}"
    return Outcome(case.label, False, message, mistake.label if mistake else None)


def run_question(qid: str, call: Callable[[Case], Any], hidden: bool = False) -> QuestionResult:
    """Run every case of a question; ``call(case)`` returns the student's output.

    ``call`` may raise :class:`Remote` when the student's process is gone, which fails the
    remaining cases with that message.
    """
    question = get_question(qid)
    outcomes = []
    gone: str | None = None
    for case in make_cases(question, hidden):
        if gone is not None:
            outcomes.append(Outcome(case.label, False, gone))
            continue
        try:
            received, error = call(case), None
        except Remote as exc:
            gone = str(exc)
            outcomes.append(Outcome(case.label, False, gone))
            continue
        except Exception as exc:  # the student's code raised
            received, error = None, _error_text(exc)
        outcomes.append(judge_case(question, case, received, error))
    return QuestionResult(qid, outcomes)


def check(qid: str, obj: Any, hidden: bool = False) -> QuestionResult:
    """Check a student's function or class in this process (what ``grader.check`` runs).

    Raises ``AssertionError`` with feedback on the first failing case; prints a short
    confirmation otherwise.
    """
    question = get_question(qid)
    if obj is Ellipsis or obj is None:
        raise AssertionError(f"{question.title}: `{question.name}` is not defined yet.")
    with torch.random.fork_rng(devices=[]):  # the cases reseed torch; keep the student's stream
        result = run_question(qid, lambda case: call_object(obj, question.kind, case), hidden)
    if result.passed < result.total:
        raise AssertionError(result.feedback())
    print("Passed. " + result.feedback())
    return result
