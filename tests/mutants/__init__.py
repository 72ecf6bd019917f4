"""Known-wrong answers to the graded questions, one module per chapter.

Each :class:`Mutant` replaces the solution of one question of a sheet with wrong code. The
tests check that it loses points and that its feedback names the expected diagnosis.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    sheet: str  # source sheet stem, e.g. "ch03_scoring_functions"
    question: str  # otter name, e.g. "q1"
    label: str  # short id, unique within the sheet
    code: str  # replaces the question's solution cell
    diagnosis: str  # text the feedback must contain (a Mistake's label, or a Problem phrase)


def all_mutants() -> list[Mutant]:
    mutants = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        mutants.extend(getattr(module, "MUTANTS", []))
    return mutants
