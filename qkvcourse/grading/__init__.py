"""Graded exercises: questions with feedback, student editions and an isolated autograder.

Students call ``grader.check("q1")`` in a sheet, which runs :func:`check`; instructors use
``python -m qkvcourse.grading`` (see ``book/grading.md``).
"""
from .core import Case, Mistake, Question, QuestionResult, check, get_question, questions
from .notebook import Notebook

__all__ = ["Case", "Mistake", "Notebook", "Question", "QuestionResult", "check", "get_question",
           "questions"]
