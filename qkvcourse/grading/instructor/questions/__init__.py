"""The graded questions of every chapter; importing this package registers them and applies
each question's rule (:mod:`.rules`)."""
from . import ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10  # noqa: F401
from ..registry import _REGISTRY
from .rules import RULES

for _qid, _question in _REGISTRY.items():
    _question.forbidden = RULES[_qid]
