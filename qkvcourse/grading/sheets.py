"""Reading graded sheets: the authored sources and the students' notebooks.

A sheet's *source* is a notebook in otter-grader's assign format (``# BEGIN QUESTION`` ...
raw cells, solutions between ``# BEGIN SOLUTION`` / ``# END SOLUTION``, exception-based test
cells that call :func:`qkvcourse.grading.check`). From it we read, for each question, the
otter name (``q1``), its points, the object the student defines and the ``qid`` of the
:class:`~qkvcourse.grading.core.Question` that grades it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SheetQuestion", "Sheet", "read_sheet", "read_sheets", "code_cells", "default_sources"]

_CHECK = re.compile(r"""check\(\s*['"]([\w.]+)['"]\s*,\s*(\w+)""")


def default_sources() -> Path:
    """``notebooks/exercises/sources`` of the repository this package lives in."""
    return Path(__file__).resolve().parents[2] / "notebooks" / "exercises" / "sources"


@dataclass(frozen=True)
class SheetQuestion:
    otter_name: str  # "q1"
    points: float
    qid: str  # "ch03.masked_softmax_lens"
    name: str  # the object the student defines


@dataclass
class Sheet:
    slug: str  # file stem, e.g. "ch03_scoring_functions"
    path: Path
    questions: list[SheetQuestion]
    notebook: dict

    @property
    def max_score(self) -> float:
        return sum(q.points for q in self.questions)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _config_value(text: str, key: str) -> str | None:
    m = re.search(rf"^{key}:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else None


def read_sheet(path: str | Path) -> Sheet:
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    questions: list[SheetQuestion] = []
    current: dict | None = None
    for cell in nb["cells"]:
        text = _source(cell)
        if cell["cell_type"] == "raw" and text.startswith("# BEGIN QUESTION"):
            current = {"name": _config_value(text, "name"),
                       "points": float(_config_value(text, "points") or 1), "checks": []}
        elif cell["cell_type"] == "raw" and text.startswith("# END QUESTION"):
            if current is None or not current["checks"]:
                raise ValueError(f"{path.name}: question {current and current['name']} has no check() test")
            qids = {c[0] for c in current["checks"]}
            objs = {c[1] for c in current["checks"]}
            if len(qids) != 1 or len(objs) != 1:
                raise ValueError(f"{path.name}: question {current['name']} checks several questions {qids}")
            questions.append(SheetQuestion(current["name"], current["points"], qids.pop(), objs.pop()))
            current = None
        elif cell["cell_type"] == "code" and current is not None:
            current["checks"].extend(_CHECK.findall(text))
    if not questions:
        raise ValueError(f"{path.name}: no graded questions found")
    return Sheet(path.stem, path, questions, nb)


def read_sheets(sources: str | Path | None = None) -> dict[str, Sheet]:
    sources = Path(sources) if sources is not None else default_sources()
    return {p.stem: read_sheet(p) for p in sorted(sources.glob("*.ipynb"))}


def code_cells(nb: dict, solutions: bool = False) -> list[str]:
    """The code a student's notebook runs, in order.

    For a source sheet with ``solutions=True``: setup and solution cells, without the test
    cells (those between ``# BEGIN TESTS`` and ``# END TESTS``).
    """
    cells, in_tests = [], False
    for cell in nb.get("cells", []):
        text = _source(cell)
        if cell.get("cell_type") == "raw":
            if text.startswith("# BEGIN TESTS"):
                in_tests = True
            elif text.startswith("# END TESTS"):
                in_tests = False
            continue
        if cell.get("cell_type") == "code" and not (solutions and in_tests):
            cells.append(text)
    return cells
