"""One repository URL: ``_config.yml``'s ``repository`` and what ``book/links.py`` makes of it."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import book_links

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ["README.md", "book/setup.md", "pyproject.toml"]
links = book_links()


def _notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob("*.ipynb")) + sorted((root / "notebooks" / "exercises").glob("*.ipynb"))


def _copy_generated(tmp: Path, url: str, branch: str) -> Path:
    """What links.py rewrites, copied to ``tmp``, with another repository in the config."""
    for path in _notebooks(ROOT) + [ROOT / rel for rel in GENERATED]:
        target = tmp / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    config = (ROOT / "_config.yml").read_text(encoding="utf-8")
    config, n = re.subn(r"(?m)^(repository:\n  url: ).*\n  branch: .*$", rf"\g<1>{url}\n  branch: {branch}", config)
    assert n == 1
    (tmp / "_config.yml").write_text(config, encoding="utf-8")
    return tmp


def test_everything_names_the_configured_repository():
    problems = links.check(ROOT)
    assert not problems, "run `make links`:\n" + "\n".join(problems)


def test_the_url_is_written_by_hand_only_in_the_config():
    """Any other file that spells the repository out would not follow a move."""
    url = links.repository(ROOT).url
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    generated = {p.relative_to(ROOT).as_posix() for p in _notebooks(ROOT)} | set(GENERATED) | {"_config.yml"}
    spelled_out = []
    for rel in files:
        path = ROOT / rel
        if rel in generated or not path.is_file() or path.suffix in {".pt", ".png", ".svg", ".pdf"}:
            continue
        try:
            if url in path.read_text(encoding="utf-8"):
                spelled_out.append(rel)
        except UnicodeDecodeError:
            continue
    assert not spelled_out, f"{url} written out by hand in {spelled_out}: read it from _config.yml"


def test_moving_the_repository_is_one_edit_and_one_command(tmp_path):
    root = _copy_generated(tmp_path, "https://github.com/someone/attention-course", "trunk")
    stale = links.check(root)
    assert len(stale) == len(_notebooks(ROOT)) + len(GENERATED), stale
    assert sorted(links.write(root)) == sorted([p.relative_to(ROOT).as_posix() for p in _notebooks(ROOT)] + GENERATED)
    assert links.check(root) == []

    chapter = "notebooks/05_multihead_attention.ipynb"
    before = json.loads((ROOT / chapter).read_text(encoding="utf-8"))
    after = json.loads((root / chapter).read_text(encoding="utf-8"))
    first, install = "".join(after["cells"][0]["source"]), "".join(after["cells"][1]["source"])
    assert f"[Open in Colab](https://colab.research.google.com/github/someone/attention-course/blob/trunk/{chapter})" in first
    assert '"qkvcourse @ git+https://github.com/someone/attention-course"' in install
    # only the source of those two cells changed: ids, tags, outputs and the rest are kept
    for cell in before["cells"][:2]:
        cell.pop("source")
    for cell in after["cells"][:2]:
        cell.pop("source")
    assert before == after

    sheet = "notebooks/exercises/ch03_scoring_functions.ipynb"
    cells = json.loads((root / sheet).read_text(encoding="utf-8"))["cells"]
    assert f"github/someone/attention-course/blob/trunk/{sheet})" in "".join(cells[0]["source"])
    setup = (root / "book/setup.md").read_text(encoding="utf-8")
    assert "git clone https://github.com/someone/attention-course\ncd attention-course\n" in setup
    assert '"qkvcourse @ git+https://github.com/someone/attention-course"' in setup
    assert '"qkvcourse @ git+https://github.com/someone/attention-course"' in (root / "README.md").read_text()
    assert 'Homepage = "https://github.com/someone/attention-course"' in (root / "pyproject.toml").read_text()
    assert "qkvcourse/qkvcourse" not in "".join(p.read_text(encoding="utf-8") for p in root.rglob("*.*")
                                               if p.name != "_config.yml")


def test_a_place_that_lost_its_link_is_reported(tmp_path):
    root = _copy_generated(tmp_path, links.repository(ROOT).url, links.repository(ROOT).branch)
    assert links.check(root) == []
    path = root / "notebooks" / "02_attention_pooling.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb["cells"][0]["source"] = [line for line in nb["cells"][0]["source"] if "Open in Colab" not in line]
    path.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    assert links.check(root) == ["notebooks/02_attention_pooling.ipynb cell 0: no "
                                 f"{links.COLAB_LINK.pattern!r} to generate"]


def test_the_config_must_name_a_github_repository(tmp_path):
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://gitlab.com/a/b\n  branch: main\n")
    with pytest.raises(ValueError, match="github.com/OWNER/NAME"):
        links.repository(tmp_path)
