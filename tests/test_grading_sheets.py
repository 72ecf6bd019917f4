"""Every graded sheet: its solutions pass, its mutants fail with the right diagnosis.

These run in this process (fast); tests/test_autograde.py runs the same submissions through
the isolated autograder.
"""
from __future__ import annotations

import pytest

from mutants import all_mutants
from qkvcourse.grading.instructor.registry import check_in_process, questions
from qkvcourse.grading.sheets import code_cells, read_sheets
from qkvcourse.grading.worker import run_cells

HIDDEN_SEED = 20261207  # any seed: the hidden cases must pass for the solutions whatever it is

SHEETS = read_sheets()
MUTANTS = all_mutants()
pytestmark = pytest.mark.usefixtures("one_thread")


def solution_namespace(sheet):
    namespace, errors = run_cells(code_cells(sheet.notebook, solutions=True))
    assert not errors, errors
    return namespace


def grade_in_process(namespace, question):
    return check_in_process(question.qid, namespace[question.name], HIDDEN_SEED)


def test_every_chapter_has_a_sheet_with_two_graded_questions():
    chapters = {slug[:4] for slug in SHEETS}
    assert chapters == {f"ch{n:02d}" for n in range(1, 11)}, sorted(chapters)
    for slug, sheet in SHEETS.items():
        assert len(sheet.questions) >= 2, slug


def test_every_registered_question_is_used_by_a_sheet():
    used = {q.qid for sheet in SHEETS.values() for q in sheet.questions}
    assert used == set(questions())


@pytest.mark.parametrize("slug", sorted(SHEETS))
def test_solutions_pass_every_case(slug):
    sheet = SHEETS[slug]
    namespace = solution_namespace(sheet)
    for question in sheet.questions:
        result = grade_in_process(namespace, question)
        assert result.passed == result.total, result.feedback()
        assert result.total >= 3, f"{question.qid} has only {result.total} cases"


def test_there_are_at_least_25_mutants_across_the_chapters():
    assert len(MUTANTS) >= 25
    assert len({m.sheet for m in MUTANTS}) >= 8


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: f"{m.sheet[:4]}-{m.question}-{m.label}")
def test_mutant_loses_points_with_the_right_diagnosis(mutant):
    sheet = SHEETS[mutant.sheet]
    question = next(q for q in sheet.questions if q.otter_name == mutant.question)
    namespace = solution_namespace(sheet)
    del namespace[question.name]
    _, errors = run_cells([mutant.code], namespace)
    assert not errors, errors
    result = grade_in_process(namespace, question)
    assert result.passed < result.total, f"mutant {mutant.label} passes every case"
    feedback = result.feedback()
    assert mutant.diagnosis in feedback, feedback


def test_student_editions_are_in_sync_with_their_sources():
    """`make student` was run after the last change to a source sheet (uses otter assign)."""
    from qkvcourse.grading.instructor.assign import write_student_editions

    stale = write_student_editions(check=True)
    assert stale == [], "out of date (run `make student`): " + ", ".join(stale)


def test_manifest_matches_the_sources():
    import json

    from qkvcourse.grading.instructor.assign import manifest_for
    from qkvcourse.grading.notebook import MANIFEST
    from qkvcourse.grading.sheets import default_sources

    assert json.loads(MANIFEST.read_text()) == json.loads(json.dumps(manifest_for(default_sources())))


def test_check_leaves_the_students_random_stream_alone():
    import torch

    from qkvcourse.grading import check
    from qkvcourse.grading.instructor.questions.ch03 import _sdpa

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check("ch03.sdpa", _sdpa)
    assert torch.equal(torch.rand(3), expected)
