"""Graded exercises, the students' side: ``grader.check`` gives instant feedback on the public cases.

Students call ``grader.check("q1")`` in a sheet (:class:`Notebook`), which runs :func:`check` on
the cases stored in ``public_cases.pt``. The autograder, the hidden cases and the reference
solutions are instructor tools (``qkvcourse.grading.instructor``, in the course repository and
the Gradescope bundle, not in the installed package); see ``book/grading.md``.
"""
from .core import Case, Outcome, QuestionResult, check, public_questions
from .notebook import Notebook

__all__ = ["Case", "Notebook", "Outcome", "QuestionResult", "check", "public_questions"]
