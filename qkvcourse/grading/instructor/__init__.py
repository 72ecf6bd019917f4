"""Instructor tools: the graded questions (references, hidden cases, known mistakes, rules),
the sandboxed autograder, the student-edition generator and the Gradescope bundle.

This package is left out of the ``qkvcourse`` that students install; it is used from a clone of
the course repository (``make grade``, ``make student``) and inside the Gradescope bundle.
"""
