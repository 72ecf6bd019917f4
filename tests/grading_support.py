"""Building submissions for the grader's tests: filled-in student editions, mutants, hostile ones."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from qkvcourse.grading.sheets import Sheet, _source, read_sheets

ROOT = Path(__file__).resolve().parents[1]
EDITIONS = ROOT / "notebooks" / "exercises"


def solutions(sheet: Sheet) -> dict[str, str]:
    """{object name: solution code} from a source sheet (marker lines removed)."""
    found, inside = {}, False
    for cell in sheet.notebook["cells"]:
        text = _source(cell)
        if cell["cell_type"] == "raw":
            inside = text.startswith("# BEGIN SOLUTION") or (inside and not text.startswith("# END SOLUTION"))
            continue
        if inside and cell["cell_type"] == "code":
            code = "\n".join(l for l in text.splitlines()
                             if l.strip() not in ("# BEGIN SOLUTION", "# END SOLUTION"))
            for q in sheet.questions:
                if re.search(rf"^(def|class) {q.name}\b", code, re.M):
                    found[q.name] = code
    missing = {q.name for q in sheet.questions} - set(found)
    assert not missing, f"{sheet.slug}: no solution cell for {missing}"
    return found


def edition(slug: str) -> dict:
    return json.loads((EDITIONS / f"{slug}.ipynb").read_text(encoding="utf-8"))


def fill(slug: str, answers: dict[str, str]) -> dict:
    """The student edition of ``slug`` with the cells defining ``answers``' names replaced."""
    nb = copy.deepcopy(edition(slug))
    left = dict(answers)
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        text = _source(cell)
        for name in list(left):
            if re.search(rf"^(def|class) {name}\b", text, re.M):
                cell["source"] = left.pop(name)
    assert not left, f"{slug}: no cell defines {sorted(left)}"
    return nb


def solved(sheet: Sheet) -> dict:
    return fill(sheet.slug, solutions(sheet))


def write(nb: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def with_cell(nb: dict, code: str, at: int | None = None) -> dict:
    """A copy of ``nb`` with one more code cell (at the end by default)."""
    nb = copy.deepcopy(nb)
    cell = {"cell_type": "code", "metadata": {}, "source": code, "outputs": [], "execution_count": None}
    nb["cells"].insert(len(nb["cells"]) if at is None else at, cell)
    return nb


__all__ = ["solutions", "edition", "fill", "solved", "write", "with_cell", "read_sheets"]
