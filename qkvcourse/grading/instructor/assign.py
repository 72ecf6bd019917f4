"""Student editions of the graded sheets, generated with ``otter assign``.

``otter assign`` strips the solutions and the hidden tests from each source sheet. We then
make the edition work anywhere, Colab included: a title with an "Open in Colab" link, a first
code cell that installs the course package on Colab, and ``grader =
qkvcourse.grading.Notebook(...)`` in place of otter's own initialisation (whose tests live in
the notebook file, which Colab does not provide). The question list each edition needs is
written to ``qkvcourse/grading/sheets.json``.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from ..core import PUBLIC_CASES
from ..notebook import MANIFEST
from ..sheets import default_sources, read_sheets
from .registry import display_name, get_question, make_cases, questions

__all__ = ["student_edition", "write_student_editions", "manifest_for", "public_cases_for",
           "rule_text"]

INSTALL_CELL = '''# On Colab, install the course package (Colab's own torch is kept). Elsewhere this does nothing.
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "{requirement}"], check=True)'''
INIT_CELL = '''# The checker: after each answer, run its grader.check cell.
import qkvcourse.grading

grader = qkvcourse.grading.Notebook("{slug}")'''


@functools.lru_cache(maxsize=None)
def _repository():
    """The course repository, from the clone's ``_config.yml`` (its one source: ``book/links.py``,
    which also rewrites the chapters' links; the instructor tools only run from a clone)."""
    path = Path(__file__).resolve().parents[3] / "book" / "links.py"
    spec = importlib.util.spec_from_file_location("qkvcourse_book_links", path)
    links = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = links  # its dataclass looks itself up there
    spec.loader.exec_module(links)
    return links.repository(path.parent.parent)


def _otter_assign(source: Path, dist: Path) -> Path:
    proc = subprocess.run([sys.executable, "-m", "otter", "assign", "--no-run-tests", "--no-pdfs",
                           str(source), str(dist)], capture_output=True, text=True)
    student = dist / "student" / source.name
    if proc.returncode != 0 or not student.exists():
        raise RuntimeError(f"otter assign failed on {source.name}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return student


def _chapter_link(source: Path) -> str:
    """A line that links a sheet back to its chapter: sheet ``chNN_name`` goes with ``NN_name``."""
    chapter = source.parent.parent.parent / f"{source.stem[2:]}.ipynb"  # notebooks/NN_name.ipynb
    if not chapter.exists():
        return ""
    first = nbformat.read(chapter, as_version=4).cells[0].source.splitlines()[0]
    title = first.lstrip("# ").strip()  # "9. GPT: decoder-only pretraining"
    return f" · This sheet goes with chapter [{title}](../{chapter.name})."


def student_edition(source: Path) -> nbformat.NotebookNode:
    """The student edition of one source sheet, as a notebook object."""
    with tempfile.TemporaryDirectory(prefix="qkv-assign-") as tmp:
        nb = nbformat.read(_otter_assign(source, Path(tmp) / "dist"), as_version=4)
    slug = source.stem
    cells = [c for c in nb.cells if not (c.cell_type == "code" and c.source.startswith("# Initialize Otter"))]
    title = next(i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("# "))
    head = cells.pop(title)
    repo = _repository()
    colab = repo.colab_url(f"notebooks/exercises/{slug}.ipynb")
    head.source = head.source.rstrip() + f"\n\n[Open in Colab]({colab})" + _chapter_link(source)
    cells = [head, nbformat.v4.new_code_cell(INSTALL_CELL.format(requirement=repo.pip_requirement)),
             nbformat.v4.new_code_cell(INIT_CELL.format(slug=slug))] + cells
    for q in read_sheets(source.parent)[slug].questions:
        at = next(i for i, c in enumerate(cells) if c.cell_type == "code"
                  and re.search(rf"^(def|class) {q.name}\b", c.source, re.M))
        cells.insert(at, nbformat.v4.new_markdown_cell(rule_text(get_question(q.qid))))
    for cell in cells:
        cell.pop("id", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    out = nbformat.v4.new_notebook()
    out.cells = cells
    out.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                    "language_info": {"name": "python"},
                    "otter": {"assignment_name": slug}}
    out.nbformat, out.nbformat_minor = 4, 4
    return out


def _text(nb) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def rule_text(question) -> str:
    """The line a student edition shows before an answer cell."""
    if not question.forbidden:
        return (f"*Rule for `{question.name}`: any building block of PyTorch or of the course "
                "package may be used.*")
    names = ", ".join(display_name(n) for n in question.forbidden)
    return (f"*Rule for `{question.name}`: write it yourself. The answer may not call {names}. "
            "The autograder checks this while it runs your code, and an answer that calls one of "
            "them scores 0 on this question.*")


def public_cases_for(sources: Path) -> dict:
    """What ``grader.check`` needs for every question of the sheets: see
    :func:`qkvcourse.grading.core.public_questions`."""
    import torch

    used = {q.qid for sheet in read_sheets(sources).values() for q in sheet.questions}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same bits on every machine (matrix products split by threads)
    try:
        return _public_cases(used)
    finally:
        torch.set_num_threads(threads)


def _public_cases(used: set) -> dict:
    import dataclasses

    from ..core import call_object

    out = {}
    for qid, question in sorted(questions().items()):
        if qid not in used:
            continue
        cases = []
        for case, _ in make_cases(question):
            expected = None
            if question.judge is None and case.raises is None:
                expected = call_object(question.reference, question.kind, case)
            mistakes = [] if question.judge else [tuple(m) for m in question.mistake_outputs(case)]
            cases.append({"case": dataclasses.asdict(case), "expected": expected, "mistakes": mistakes})
        out[qid] = {"title": question.title, "name": question.name, "kind": question.kind,
                    "atol": question.atol, "rtol": question.rtol, "judge": question.judge,
                    "forbidden": list(question.forbidden), "cases": cases}
    return out


def same_values(a, b) -> bool:
    """Structural equality with exact tensor comparison (for the up-to-date check)."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape):
            return False
        if a.is_floating_point():  # matrix products differ in the last bits with the thread count
            return bool(torch.allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True))
        return bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def manifest_for(sources: Path) -> dict:
    return {slug: {q.otter_name: {"qid": q.qid, "name": q.name, "points": q.points}
                   for q in sheet.questions}
            for slug, sheet in read_sheets(sources).items()}


def write_student_editions(sources: str | Path | None = None, out_dir: str | Path | None = None,
                           check: bool = False) -> list[str]:
    """Write (or, with ``check``, compare) every student edition and the manifest.

    Returns the files that were out of date (with ``check``) or written.
    """
    sources = Path(sources) if sources is not None else default_sources()
    out_dir = Path(out_dir) if out_dir is not None else sources.parent
    expected = {out_dir / f"{src.stem}.ipynb": _text(student_edition(src))
                for src in sorted(sources.glob("*.ipynb"))}
    # The package's question list is written only for the course's own sheets; other sources
    # (a private set, a preview) get theirs beside the editions.
    manifest = MANIFEST if sources.resolve() == default_sources().resolve() else out_dir / "sheets.json"
    expected[manifest] = json.dumps(manifest_for(sources), indent=1, sort_keys=True) + "\n"
    stale = [str(p) for p, text in expected.items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    public = PUBLIC_CASES if manifest == MANIFEST else out_dir / PUBLIC_CASES.name
    import torch

    cases = public_cases_for(sources)
    if not public.exists() or not same_values(torch.load(public, weights_only=True), cases):
        stale.append(str(public))
    orphans = sorted(str(p) for p in set(out_dir.glob("*.ipynb")) - set(expected))
    if check:
        return stale + [f"{p} (no source)" for p in orphans]
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in map(Path, stale):
        if path == public:
            torch.save(cases, path)
        else:
            path.write_text(expected[path], encoding="utf-8")
    return stale
