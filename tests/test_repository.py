"""Static checks of the notebooks, the table of contents and the packaging.

nbval re-executes every notebook; these tests check what nbval does not: that the
committed notebooks (which the book renders as they are) are complete, clean and
consistent with the book's configuration.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import book_links

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SHEETS = sorted((ROOT / "notebooks" / "exercises").glob("*.ipynb"))  # student editions
REPO = book_links().repository(ROOT)  # the repository named in _config.yml
COLAB_PREFIX = REPO.colab_url("notebooks/")
LOCAL_PATH = re.compile(r"(/work/|/home/|/root/|/tmp/|/Users/|[A-Z]:\\\\Users|site-packages)")


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def toc_files() -> list[str]:
    return re.findall(r"file:\s*(\S+)", (ROOT / "_toc.yml").read_text())


def bib_keys() -> set[str]:
    return set(re.findall(r"@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text()))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5


def test_every_notebook_is_in_the_toc_and_every_toc_entry_exists():
    entries = toc_files()
    listed = {e for e in entries if e.startswith("notebooks/") and not e.startswith("notebooks/exercises/")}
    assert listed == {f"notebooks/{p.stem}" for p in NOTEBOOKS}
    sheets = {e for e in entries if e.startswith("notebooks/exercises/")}
    assert sheets == {f"notebooks/exercises/{p.stem}" for p in SHEETS}
    for entry in entries:
        candidates = [ROOT / f"{entry}{ext}" for ext in (".md", ".ipynb")]
        assert any(c.exists() for c in candidates), f"_toc.yml lists {entry}, which does not exist"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
class TestNotebook:
    def test_executed_with_outputs_and_no_errors(self, path):
        nb = load(path)
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code, "no code cells"
        for i, cell in enumerate(code):
            assert cell.get("execution_count") is not None, f"code cell {i} was not executed"
            for out in cell.get("outputs", []):
                assert out["output_type"] != "error", f"code cell {i} stores an error"
                if out["output_type"] == "stream" and out["name"] == "stderr":
                    text = "".join(out["text"])
                    assert "Warning" not in text and "Traceback" not in text, \
                        f"code cell {i} stores a warning on stderr: {text[:200]}"
        counts = [c["execution_count"] for c in code]
        assert counts == list(range(1, len(code) + 1)), "cells were not executed top to bottom"

    def test_no_local_paths_in_outputs(self, path):
        for cell in load(path)["cells"]:
            for out in cell.get("outputs", []):
                text = json.dumps({k: v for k, v in out.items() if k != "data"}) + \
                    json.dumps(out.get("data", {}).get("text/plain", ""))
                match = LOCAL_PATH.search(text)
                assert match is None, f"an output contains a local path: {match.group(0)}"

    def test_first_cells_title_colab_link_and_install(self, path):
        cells = load(path)["cells"]
        first = "".join(cells[0]["source"])
        assert cells[0]["cell_type"] == "markdown" and first.startswith("# ")
        assert COLAB_PREFIX + path.name in first, "the Colab link must point at this notebook"
        install = "".join(cells[1]["source"])
        assert cells[1]["cell_type"] == "code" and '"google.colab" in sys.modules' in install
        assert f'"{REPO.pip_requirement}"' in install
        assert "torch" not in install.split("qkvcourse @")[0].split("pip")[-1], \
            "the Colab cell must not install torch"

    def test_one_title_and_no_skipped_heading_levels(self, path):
        levels = []
        for cell in load(path)["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            in_fence = False
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("```"):
                    in_fence = not in_fence
                m = re.match(r"^(#+)\s", line)
                if m and not in_fence:
                    levels.append(len(m.group(1)))
        assert levels.count(1) == 1 and levels[0] == 1
        for a, b in zip(levels, levels[1:]):
            assert b <= a + 1, f"heading level jumps from {a} to {b}"

    def test_has_exercises_and_checked_outputs(self, path):
        cells = load(path)["cells"]
        markdown = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        assert re.search(r"^## Exercises", markdown, re.M)
        checked = [c for c in cells if "nbval-check-output" in c.get("metadata", {}).get("tags", [])]
        assert checked, "no cell is tagged nbval-check-output"
        for c in checked:
            assert c["outputs"], "a checked cell has no output to compare"

    def test_citations_exist_in_bibliography(self, path):
        keys = bib_keys()
        for cell in load(path)["cells"]:
            if cell["cell_type"] == "markdown":
                for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", "".join(cell["source"])):
                    for key in group.split(","):
                        assert key.strip() in keys, f"unknown citation key {key.strip()}"

    def test_no_volatile_execution_metadata(self, path):
        for cell in load(path)["cells"]:
            assert "execution" not in cell.get("metadata", {}), \
                "execution timestamps stored: run `make notebooks` (it cleans them)"

    def test_size(self, path):
        assert path.stat().st_size < 2_000_000


def test_runtime_dependencies_keep_colab_torch():
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
    names = re.findall(r'"([A-Za-z0-9_-]+)', deps)
    assert sorted(names) == ["matplotlib", "numpy", "torch", "tqdm"]
    torch_spec = re.search(r'"torch([^"]*)"', deps).group(1)
    assert torch_spec.startswith(">=") and "<" not in torch_spec and "," not in torch_spec, \
        "torch must be a lower bound only, so that Colab's torch satisfies it"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make book" in readme
    assert re.search(r"^make test$", ci, re.M)


@pytest.mark.parametrize("path", SHEETS, ids=lambda p: p.name)
def test_student_edition_opens_in_colab_and_hides_solutions(path):
    nb = load(path)
    cells = nb["cells"]
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and first.startswith("# ")
    assert f"{COLAB_PREFIX}exercises/{path.name}" in first
    install = "".join(cells[1]["source"])
    assert '"google.colab" in sys.modules' in install and "torch" not in install.split("qkvcourse @")[0].split("pip")[-1]
    assert "qkvcourse.grading.Notebook" in "".join(cells[2]["source"])
    text = json.dumps(nb)
    assert "BEGIN SOLUTION" not in text and "hidden=True" not in text and "BEGIN TESTS" not in text
    assert all(c["cell_type"] != "raw" for c in cells)
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")
