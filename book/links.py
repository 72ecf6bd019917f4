"""One repository URL for the whole course.

``_config.yml``'s ``repository.url`` and ``repository.branch`` are the only place where the
course's repository is written by hand. The book's launch, repository and issue buttons read them
directly; everything else that names the repository is generated from them by this script:

- the "Open in Colab" link (first cell) and the Colab install cell (second cell) of every chapter
  (``notebooks/*.ipynb``) and of every student edition of a graded sheet
  (``notebooks/exercises/*.ipynb``; ``make student`` writes the same links through
  ``qkvcourse/grading/instructor/assign.py``, which imports this file);
- the install command in ``README.md`` and ``book/setup.md``, and the ``git clone`` in the latter;
- ``[project.urls]`` in ``pyproject.toml``.

``python book/links.py`` (``make links``) rewrites them; ``python book/links.py --check`` lists
the places that disagree with ``_config.yml`` and exits 1 (``tests/test_links.py``). Notebooks are
edited as JSON, only in the source of those two cells: ids, tags and outputs are kept.

Publishing under another name: edit ``repository`` in ``_config.yml``, run ``make links``.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COLAB = "https://colab.research.google.com/github"

# What each generated place looks like, whatever repository it names today.
COLAB_LINK = re.compile(r"\[Open in Colab\]\(https://colab\.research\.google\.com/github/[^)\s]*\)")
PIP_LINE = re.compile(r'"qkvcourse @ git\+[^"\s]*"')
GIT_CLONE = re.compile(r"^git clone \S+\ncd \S+$", re.M)
HOMEPAGE = re.compile(r'^Homepage = "[^"]*"$', re.M)


@dataclass(frozen=True)
class Repository:
    url: str     # https://github.com/owner/name
    branch: str  # main

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    def colab_url(self, path: str) -> str:
        """Colab's link to open ``path`` (relative to the repository root) from GitHub."""
        return f"{COLAB}/{self.url.removeprefix('https://github.com/')}/blob/{self.branch}/{path}"

    @property
    def pip_requirement(self) -> str:
        return f"qkvcourse @ git+{self.url}"


def repository(root: Path = ROOT) -> Repository:
    """The repository named in ``root/_config.yml``."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))["repository"]
    url = str(config["url"]).rstrip("/").removesuffix(".git")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"_config.yml: repository.url must be https://github.com/OWNER/NAME "
                         f"(Colab opens notebooks from GitHub), not {url!r}")
    return Repository(url=url, branch=str(config.get("branch", "main")))


def _replace(pattern: re.Pattern, new: str, text: str, where: str, problems: list[str]) -> str:
    """``text`` with every match of ``pattern`` replaced by ``new``; a place without one is a problem."""
    out, count = pattern.subn(lambda _: new, text)
    if count == 0:
        problems.append(f"{where}: no {pattern.pattern!r} to generate")
    return out


def _notebook(path: Path, repo: Repository, root: Path, problems: list[str]) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    rel = path.relative_to(root).as_posix()
    cells = nb["cells"]
    for index, pattern, new in ((0, COLAB_LINK, f"[Open in Colab]({repo.colab_url(rel)})"),
                                (1, PIP_LINE, f'"{repo.pip_requirement}"')):
        cell = cells[index] if len(cells) > index else {"source": ""}
        source = "".join(cell["source"])
        changed = _replace(pattern, new, source, f"{rel} cell {index}", problems)
        if changed != source:
            cell["source"] = changed.splitlines(keepends=True)
    # nbformat's own layout, so that an unchanged notebook is rewritten byte for byte
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files(root: Path = ROOT) -> tuple[dict[Path, str], list[str]]:
    """Every generated file as it should read, and the places that could not be generated."""
    repo = repository(root)
    problems: list[str] = []
    out: dict[Path, str] = {}
    notebooks = sorted((root / "notebooks").glob("*.ipynb")) + \
        sorted((root / "notebooks" / "exercises").glob("*.ipynb"))
    for path in notebooks:
        out[path] = _notebook(path, repo, root, problems)
    texts = {
        "README.md": [(PIP_LINE, f'"{repo.pip_requirement}"')],
        "book/setup.md": [(PIP_LINE, f'"{repo.pip_requirement}"'),
                          (GIT_CLONE, f"git clone {repo.url}\ncd {repo.name}")],
        "pyproject.toml": [(HOMEPAGE, f'Homepage = "{repo.url}"')],
    }
    for rel, edits in texts.items():
        text = (root / rel).read_text(encoding="utf-8")
        for pattern, new in edits:
            text = _replace(pattern, new, text, rel, problems)
        out[root / rel] = text
    return out, problems


def check(root: Path = ROOT) -> list[str]:
    """The places that disagree with ``_config.yml`` (empty when all agree)."""
    expected, problems = expected_files(root)
    stale = [f"{p.relative_to(root).as_posix()}: names another repository than _config.yml"
             for p, text in expected.items() if p.read_text(encoding="utf-8") != text]
    return problems + stale


def write(root: Path = ROOT) -> list[str]:
    """Rewrite every generated place from ``_config.yml``; returns the files changed."""
    expected, problems = expected_files(root)
    if problems:
        raise SystemExit("cannot generate:\n  " + "\n  ".join(problems))
    changed = []
    for path, text in expected.items():
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path.relative_to(root).as_posix())
    return changed


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        problems = check()
        print("\n".join(problems) or f"every link names {repository().url}")
        return 1 if problems else 0
    if argv:
        print(__doc__)
        return 2
    changed = write()
    print(f"{repository().url}: " + (", ".join(changed) + " rewritten" if changed else "all up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
