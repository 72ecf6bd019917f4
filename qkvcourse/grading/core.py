"""Cases, comparison and feedback: the part of grading that ships with the student package.

A graded question asks the student to define a function or an ``nn.Module`` class. Checking
it runs the question's cases, compares each output with the expected one and, on the first
failure, explains what differs and names the known mistake (softmax over the wrong axis,
missing 1/sqrt(d), ...) whose output the student's matches.

This module holds no reference solution, no case generator and no hidden case. The *public*
cases that ``grader.check`` runs are stored, with their expected outputs and the outputs of
the known mistakes, in ``public_cases.pt``, written by ``make student`` from the instructor's
questions (``qkvcourse.grading.instructor``, which the student package does not contain).
The autograder uses the same comparison and feedback, with outputs it computes itself and
the hidden cases added.
"""
from __future__ import annotations

import functools
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

__all__ = ["Case", "Outcome", "QuestionResult", "check", "call_object", "compare", "describe",
           "judge_case", "public_questions", "PUBLIC_CASES"]

PUBLIC_CASES = Path(__file__).with_name("public_cases.pt")
STUDENT_TEXT_LIMIT = 300  # characters of text that a submission controls, shown in feedback


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



# --- judging one case ----------------------------------------------------------------------

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
    title: str
    outcomes: list[Outcome]
    hidden: int = 0  # the last ``hidden`` outcomes are hidden cases

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
        if self.passed == self.total:
            return f"{self.title}: all {self.total} cases passed."
        first = next(o for o in self.outcomes if not o.passed)
        return (f"{self.title}: {self.passed} of {self.total} cases passed.\n"
                f"First failing case: {first.label}\n{first.message}")


class Remote(Exception):
    """Raised by a remote caller when the student's process failed (crash, timeout...)."""


class StudentError(Exception):
    """The student's code raised in another process; the message is its description."""


def trim_student_text(text: str, limit: int = STUDENT_TEXT_LIMIT) -> str:
    """Text that a submission controls (its error messages), cut to ``limit`` characters."""
    text = str(text).replace("\x00", "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, StudentError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    student = [f for f in frames if not f.filename.endswith(("core.py", "worker.py"))]
    where = f" (line {student[-1].lineno}: {student[-1].line})" if student and student[-1].line else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _category(problem: str) -> str:
    """What kind of difference ``compare`` found, without any value."""
    for words, category in (("contains NaN", "NaN in the output"), ("has shape", "wrong shape"),
                            ("should be a", "wrong type of output"), ("has dtype", "wrong dtype"),
                            ("differs", "wrong values"), (" is ", "wrong value")):
        if words in problem:
            return category
    return "wrong output"


MistakeOutputs = Callable[[], "list[tuple[str, str, Any]]"]


def judge_case(case: Case, index: int, hidden: bool, received: Any, error: str | None,
               expected: Any = None, mistakes: MistakeOutputs = lambda: [],
               judge: Callable | None = None, atol: float = 1e-5, rtol: float = 1e-4) -> Outcome:
    """Compare one received output (or error) with the expected one.

    ``mistakes()`` gives ``(label, explanation, output)`` of the known wrong answers on this
    case (computed only when the case fails). A *hidden* case's feedback names the case by
    its number and the kind of problem only: never its input, the expected values or the
    text of an error, so that feedback cannot carry hidden inputs back to a student.
    """
    label = f"hidden case {index}" if hidden else case.label
    if hidden:
        inputs = ""
    else:
        names = list(case.arg_names) or [f"arg{i}" for i in range(len(case.args))]
        inputs = "\n".join(f"  {n} = {describe(v)}" for n, v in zip(names, case.args))
        inputs += "".join(f"\n  {k} = {describe(v)}" for k, v in case.kwargs.items())
        if case.init:
            inputs = f"  built with {case.init}\n" + inputs
        inputs = f"Input:\n{inputs}\n"
    if error is not None:
        kind = error.split(":")[0].strip()
        text = error[len(kind) + 1:].strip()
        shown = kind if hidden or not text else \
            f"{kind} (your code's own message, trimmed): {trim_student_text(text)}"
    if case.raises is not None:
        if error is not None and kind == case.raises:
            return Outcome(label, True)
        got = f"it raised {shown}" if error is not None else "it returned a value"
        if not hidden and error is None:
            got = f"it returned {describe(received)}"
        return Outcome(label, False, f"{inputs}Problem: this input must raise {case.raises}, but {got}")
    if error is not None:
        return Outcome(label, False, f"{inputs}Your code raised {shown}")
    if judge is not None:
        try:
            problem = judge(case, received)
        except Exception as exc:  # noqa: BLE001  (an output so odd that the checks fail)
            problem = f"the output could not be checked ({type(exc).__name__})"
        if problem is None:
            return Outcome(label, True)
        mistake = None
        if isinstance(problem, tuple):  # (message, (mistake label, explanation))
            problem, (mistake, explanation) = problem
        text = "the output does not have the properties asked for" if hidden else problem
        message = f"{inputs}Problem: {text}"
        if mistake is not None:
            message += f"\nLikely mistake: {mistake}. {explanation}"
        return Outcome(label, False, message, mistake)
    problem = compare(expected, received, atol, rtol)
    if problem is None:
        return Outcome(label, True)
    if hidden:
        message = f"Problem: {_category(problem)}"
    else:
        message = (f"{inputs}Problem: {problem}\n"
                   f"  expected: {describe(expected)}\n  received: {describe(received)}")
    for mistake, explanation, wrong in mistakes():
        if wrong is not None and compare(wrong, received, atol, rtol) is None:
            return Outcome(label, False, message + f"\nLikely mistake: {mistake}. {explanation}",
                           mistake)
    return Outcome(label, False, message)


# --- the public cases, for grader.check ----------------------------------------------------

@functools.lru_cache(maxsize=1)
def public_questions() -> dict:
    """``{qid: {"title", "name", "kind", "atol", "rtol", "judge", "cases": [...]}}``.

    Each case is ``{"case": Case fields, "expected": output, "mistakes": [(label,
    explanation, output or None), ...]}``.
    """
    if not PUBLIC_CASES.exists():
        raise FileNotFoundError(f"{PUBLIC_CASES} is missing: run `make student` in the course repository")
    return torch.load(PUBLIC_CASES, weights_only=True)


def check(qid: str, obj: Any) -> QuestionResult:
    """Check a student's function or class on a question's public cases, in this process
    (what ``grader.check`` runs).

    Raises ``AssertionError`` with feedback on the first failing case; prints a short
    confirmation otherwise.
    """
    from .judges import JUDGES

    info = public_questions().get(qid)
    if info is None:
        raise KeyError(f"no graded question {qid!r}; known: {sorted(public_questions())}")
    if obj is Ellipsis or obj is None:
        raise AssertionError(f"{info['title']}: `{info['name']}` is not defined yet.")
    judge = JUDGES[info["judge"]] if info["judge"] else None
    outcomes = []
    with torch.random.fork_rng(devices=[]):  # the cases reseed torch; keep the student's stream
        for i, entry in enumerate(info["cases"], 1):
            case = Case(**entry["case"])
            try:
                received, error = call_object(obj, info["kind"], case), None
            except Exception as exc:  # the student's code raised
                received, error = None, _error_text(exc)
            outcomes.append(judge_case(case, i, False, received, error, entry["expected"],
                                       lambda entry=entry: entry["mistakes"], judge,
                                       info["atol"], info["rtol"]))
    result = QuestionResult(qid, info["title"], outcomes)
    if result.passed < result.total:
        raise AssertionError(result.feedback())
    print("Passed. " + result.feedback())
    return result
